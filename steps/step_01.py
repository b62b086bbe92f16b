"""
Step 01: Model configuration

Before building any layer, we need the handful of numbers that decide the
size of every tensor in GPT-2. GPT2Config collects them in one dataclass,
and every later step reads its sizes from it instead of hard-coding them.

The defaults are those of the smallest GPT-2, the 124M model ("gpt2"), and
they equal the defaults of HuggingFace's transformers.GPT2Config. Using the
same field names as HuggingFace keeps the two easy to compare.

The fields:

- vocab_size = 50257: number of different tokens. The token embedding
  table wte has one row per token: 50257 x 768 = 38,597,376 parameters
  (38.6M), by far the biggest tensor in GPT2Model.
- n_positions = 1024: the longest sequence GPT-2 can read. The position
  table wpe has one row per position: 1024 x 768 = 786,432 parameters.
- n_embd = 768: the width of every token vector. Hidden states have shape
  [batch, seq_length, n_embd] all the way through the model.
- n_layer = 12: number of transformer blocks stacked on top of each other.
  One block has 7,087,872 parameters; 12 blocks have 85,054,464.
- n_head = 12: number of attention heads. Each head works on
  head_dim = 768 / 12 = 64 numbers per token.
- n_inner = None: width of the MLP's hidden layer. None is the correct
  default: it means "use 4 * n_embd", which is 4 x 768 = 3072. Keep None
  here (HuggingFace does the same); the block in step 09 turns None into
  4 * n_embd.
- layer_norm_epsilon = 1e-5: the small number LayerNorm adds to the
  variance so it never divides by zero.

Together these give the whole GPT2Model (wte + wpe + 12 blocks + final
LayerNorm) 124,439,808 parameters (124.4M).

Python's @dataclass decorator writes __init__ for us, so
GPT2Config() gives the 124M model and GPT2Config(n_layer=2, n_embd=64)
gives a tiny one with the other defaults unchanged.

Tasks:
1. Give each field its GPT-2 124M default value.
2. Leave n_inner as None (it means 4 * n_embd = 3072).

Run: pixi run s01
"""

from dataclasses import dataclass


@dataclass
class GPT2Config:
    """Hyperparameters of GPT-2 (defaults: the 124M model)."""

    # TODO: Set the vocabulary size (number of distinct tokens)
    # Hint: how many tokens GPT-2's tokenizer knows (the docstring lists it); wte has one row per token
    vocab_size: int = None

    # TODO: Set the maximum sequence length (number of positions)
    # Hint: the longest sequence GPT-2 reads; wpe gets one row per position
    n_positions: int = None

    # TODO: Set the embedding width (size of every token vector)
    # Hint: the width of the 124M model's hidden states
    n_embd: int = None

    # TODO: Set the number of transformer blocks
    # Hint: how many blocks the 124M model stacks (as many as it has heads)
    n_layer: int = None

    # TODO: Set the number of attention heads
    # Hint: how many heads run side by side; each gets n_embd / n_head = 64 numbers
    n_head: int = None

    # TODO: Check the MLP hidden width default
    # Hint: None is already the right value: it means 4 * n_embd = 3072
    # Hint: keep the line below as it is: step 09 turns None into 4 * n_embd
    n_inner: int | None = None

    # TODO: Set the LayerNorm epsilon
    # Hint: a small float that keeps LayerNorm from dividing by zero (the docstring gives it)
    layer_norm_epsilon: float = None
