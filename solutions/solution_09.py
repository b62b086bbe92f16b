"""
Solution for Step 09: Transformer block

A GPT-2 block is two pre-norm residual sublayers: attention (ln_1, attn),
then the MLP (ln_2, mlp).
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Module

from solutions.solution_01 import GPT2Config
from solutions.solution_03 import LayerNorm
from solutions.solution_04 import GPT2MLP
from solutions.solution_07 import GPT2MultiHeadAttention
from solutions.solution_08 import pre_norm_residual


class GPT2Block(Module):
    """One transformer block: attention and MLP, each with pre-norm and a residual."""

    def __init__(self, config: GPT2Config):
        """Initialize the block's four parts."""
        hidden_size = config.n_embd
        inner_dim = config.n_inner if config.n_inner is not None else 4 * hidden_size
        self.ln_1 = LayerNorm(hidden_size, eps=config.layer_norm_epsilon)
        self.attn = GPT2MultiHeadAttention(config)
        self.ln_2 = LayerNorm(hidden_size, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(inner_dim, config)

    def __call__(self, hidden_states: Tensor) -> Tensor:
        """[batch, seq, n_embd] -> [batch, seq, n_embd]."""
        hidden_states = pre_norm_residual(hidden_states, self.ln_1, self.attn)
        hidden_states = pre_norm_residual(hidden_states, self.ln_2, self.mlp)
        return hidden_states
