"""
Solution for Step 01: Model configuration

GPT2Config holds the hyperparameters that fix the size of every tensor in
GPT-2. The defaults are those of the 124M-parameter model ("gpt2") and equal
HuggingFace's transformers.GPT2Config defaults.
"""

from dataclasses import dataclass


@dataclass
class GPT2Config:
    """Hyperparameters of GPT-2 (defaults: the 124M model)."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    layer_norm_epsilon: float = 1e-5
