"""
Step 07: Multi-head attention

Attention is the only place in GPT-2 where positions exchange information.
Every position makes three vectors from its hidden state: a query (what am I
looking for?), a key (what do I contain?) and a value (what do I pass on?).
The score of query i against key j says how relevant position j is to
position i. Softmax turns row i of the scores into weights that sum to 1, and
the output at position i is the weighted mix of the values.

GPT-2 runs n_head = 12 attentions ("heads") side by side, each on its own
slice of the features: head_dim = 768 / 12 = 64. Each head can learn a
different kind of relationship; c_proj then mixes the heads' outputs.

The pipeline, for hidden_states of shape [batch, seq, n_embd]:
  1. c_attn = Linear(n_embd, 3 * n_embd) makes query, key and value in one
     matmul: [batch, seq, 2304]. F.split cuts the last axis into three
     [batch, seq, 768] pieces, in the order query, key, value (the order
     HuggingFace's weights use).
  2. _split_heads: reshape [batch, seq, 768] -> [batch, seq, 12, 64], then
     transpose(1, 2) -> [batch, 12, seq, 64]. The order matters: the 768
     features are laid out head by head (features 0..63 are head 0), so
     reshape to [n_head, head_dim], never [head_dim, n_head].
  3. _attn: scores = query @ key^T -> [batch, 12, seq, seq], divided by
     sqrt(head_dim) = 8. If the entries of q and k have variance ~1, their
     dot product sums 64 terms and has variance ~64; dividing by sqrt(64)
     brings it back to ~1. Without the scaling the scores are large, softmax
     saturates (nearly all weight on one key) and its gradients vanish.
     Then add causal_mask from step 02 (0 where key j <= query i, -inf
     after), so no position sees the future; apply F.softmax over the last
     axis (the keys); and weights @ value -> [batch, 12, seq, 64].
  4. _merge_heads undoes step 2: transpose(1, 2) -> [batch, seq, 12, 64],
     reshape -> [batch, seq, 768].
  5. c_proj = Linear(n_embd, n_embd) mixes the heads: [batch, seq, 768].

GPT-2 124M, per block: c_attn has 1,771,776 parameters (768 x 2304 + 2304),
c_proj 590,592 (768 x 768 + 768): the attention total is 2,362,368. For 1024
tokens one layer computes 12 x 1024 x 1024 scores per sequence: the cost of
attention grows with the square of the sequence length.

The names c_attn and c_proj are HuggingFace's, so its weights load by name.

Symbolic shapes: the test compiles your module once for ANY batch size and
sequence length, so x.shape[0] and x.shape[1] are symbolic dimensions, not
Python ints. Pass them on as they are (into reshape, causal_mask); never call
int() on them. self.num_heads and self.head_dim are plain ints: fine.

MAX operations:
  - Linear(in_dim, out_dim, bias=True) from max.nn.module_v3
  - F.split(x, [size, size, size], axis=-1), F.softmax(x) (last axis by default)
  - x.reshape(shape), x.transpose(axis_a, axis_b), a @ b (matrix multiply)
  - causal_mask(sequence_length, num_tokens, dtype=..., device=...) from
    solutions.solution_02; math.sqrt

Tasks:
  1. Import math, F, Linear and causal_mask (the first TODO)
  2. Create c_attn and c_proj in __init__
  3. Implement _split_heads and _merge_heads
  4. Implement _attn: scale, mask, softmax, mix the values
  5. Implement __call__: c_attn -> split -> heads -> attention -> merge -> c_proj

Run: pixi run s07
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Module

from solutions.solution_01 import GPT2Config

# TODO: Import what your code below uses (the lines above are given)
# Hint: import math
# Hint: from max.experimental import functional as F
# Hint: from max.nn.module_v3 import Linear
# Hint: from solutions.solution_02 import causal_mask


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

        # TODO: Create the fused query/key/value projection: n_embd -> 3 * n_embd
        # Hint: one Linear from embed_dim to 3 * embed_dim, with a bias: query, key and value in one matmul
        self.c_attn = None

        # TODO: Create the output projection that mixes the heads: n_embd -> n_embd
        # Hint: a Linear from embed_dim to embed_dim, with a bias
        self.c_proj = None

    def _split_heads(self, x: Tensor) -> Tensor:
        """[batch, seq, n_embd] -> [batch, n_head, seq, head_dim]."""
        # TODO: Build the new shape: keep [batch, seq], replace n_embd by [n_head, head_dim]
        # Hint: x.shape without its last axis, as a list, followed by num_heads and head_dim
        new_shape = None

        # TODO: Reshape, then swap the seq and head axes
        # Hint: reshape to new_shape ([batch, seq, n_head, head_dim]), then transpose axes 1 and 2
        return None

    def _merge_heads(self, x: Tensor) -> Tensor:
        """[batch, n_head, seq, head_dim] -> [batch, seq, n_embd]."""
        # TODO: Swap the head and seq axes back: [batch, seq, n_head, head_dim]
        # Hint: the transpose of _split_heads again: axes 1 and 2, keeping the name x
        pass

        # TODO: Join the last two axes into n_embd
        # Hint: x.shape without its last two axes, as a list, followed by embed_dim; reshape to it
        return None

    def _attn(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """Scaled dot-product attention with a causal mask, per head."""
        # TODO: Score every query against every key: [batch, n_head, seq, seq]
        # Hint: matrix-multiply (@) query by key with its last two axes swapped (transpose(-1, -2))
        scores = None

        # TODO: Scale the scores by 1 / sqrt(head_dim)
        # Hint: divide by math.sqrt of head_dim, so the scores keep a variance near 1
        pass

        # TODO: Build the causal mask for this sequence length (keep it symbolic: no int())
        # Hint: the sequence length is the second-to-last axis of query; causal_mask (step 02)
        # Hint: with 0 earlier tokens, in the dtype and on the device of scores
        mask = None

        # TODO: Add the mask and apply softmax over the last axis (the keys)
        # Hint: add mask to scores (it broadcasts over batch and heads), then F.softmax (last axis by default)
        weights = None

        # TODO: Mix the values with the weights: [batch, n_head, seq, head_dim]
        # Hint: a matrix product of the weights [..., seq, seq] and value [..., seq, head_dim]
        return None

    def __call__(self, hidden_states: Tensor) -> Tensor:
        """[batch, seq, n_embd] -> [batch, seq, n_embd]."""
        # TODO: Project to query, key and value at once: [batch, seq, 3 * n_embd]
        # Hint: call c_attn on hidden_states
        qkv = None

        # TODO: Split the last axis into query, key, value (in that order)
        # Hint: F.split the last axis into three pieces of embed_dim each, and unpack them
        query, key, value = None, None, None

        # TODO: Split each of them into heads
        # Hint: pass each of query, key and value through self._split_heads, keeping their names
        pass

        # TODO: Run attention on all heads at once
        # Hint: self._attn on query, key and value
        attn_output = None

        # TODO: Merge the heads and apply the output projection
        # Hint: _merge_heads back to [batch, seq, n_embd], then c_proj mixes the heads
        return None
