"""
Solution for Step 04: Feed-forward network (MLP)

Each position goes through the same two-layer network: expand to
intermediate_size (4 x n_embd), apply GELU (tanh approximation), project back.
"""

from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.nn.module_v3 import Linear, Module

from solutions.solution_01 import GPT2Config


class GPT2MLP(Module):
    """GPT-2's position-wise feed-forward network."""

    def __init__(self, intermediate_size: int, config: GPT2Config):
        """Initialize the MLP.

        Args:
            intermediate_size: Width of the hidden layer (usually 4 * n_embd).
            config: GPT2Config with n_embd.
        """
        embed_dim = config.n_embd
        self.c_fc = Linear(embed_dim, intermediate_size, bias=True)
        self.c_proj = Linear(intermediate_size, embed_dim, bias=True)

    def __call__(self, hidden_states: Tensor) -> Tensor:
        """[batch, seq, n_embd] -> [batch, seq, n_embd]."""
        hidden_states = self.c_fc(hidden_states)
        hidden_states = F.gelu(hidden_states, approximate="tanh")
        hidden_states = self.c_proj(hidden_states)
        return hidden_states
