"""
Solution for Step 07: Multi-head attention

Each position builds a query, a key and a value. Scores q.k / sqrt(head_dim)
say how much each position attends to each earlier one; softmax turns them
into weights that mix the values. n_head heads do this in parallel on
head_dim = n_embd / n_head slices, and c_proj mixes their outputs.
"""

import math

from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.nn.module_v3 import Linear, Module

from solutions.solution_01 import GPT2Config
from solutions.solution_02 import causal_mask


class GPT2MultiHeadAttention(Module):
    """Causal multi-head self-attention with GPT-2's fused c_attn projection."""

    def __init__(self, config: GPT2Config):
        """Initialize the attention projections.

        Args:
            config: GPT2Config with n_embd and n_head.
        """
        self.embed_dim = config.n_embd
        self.num_heads = config.n_head
        self.head_dim = self.embed_dim // self.num_heads
        # One projection makes query, key and value together: n_embd -> 3 * n_embd.
        self.c_attn = Linear(self.embed_dim, 3 * self.embed_dim, bias=True)
        self.c_proj = Linear(self.embed_dim, self.embed_dim, bias=True)

    def _split_heads(self, x: Tensor) -> Tensor:
        """[batch, seq, n_embd] -> [batch, n_head, seq, head_dim]."""
        new_shape = list(x.shape[:-1]) + [self.num_heads, self.head_dim]
        return x.reshape(new_shape).transpose(1, 2)

    def _merge_heads(self, x: Tensor) -> Tensor:
        """[batch, n_head, seq, head_dim] -> [batch, seq, n_embd]."""
        x = x.transpose(1, 2)
        new_shape = list(x.shape[:-2]) + [self.embed_dim]
        return x.reshape(new_shape)

    def _attn(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """Scaled dot-product attention with a causal mask, per head."""
        scores = query @ key.transpose(-1, -2)
        scores = scores / math.sqrt(self.head_dim)
        seq_length = query.shape[-2]
        mask = causal_mask(seq_length, 0, dtype=scores.dtype, device=scores.device)
        weights = F.softmax(scores + mask)
        return weights @ value

    def __call__(self, hidden_states: Tensor) -> Tensor:
        """[batch, seq, n_embd] -> [batch, seq, n_embd]."""
        qkv = self.c_attn(hidden_states)
        query, key, value = F.split(qkv, [self.embed_dim] * 3, axis=-1)
        query = self._split_heads(query)
        key = self._split_heads(key)
        value = self._split_heads(value)
        attn_output = self._attn(query, key, value)
        return self.c_proj(self._merge_heads(attn_output))
