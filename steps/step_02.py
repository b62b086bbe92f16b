"""
Step 02: Causal mask

GPT-2 predicts the next token, so while reading position i it must not peek
at positions after i. Attention (step 07) computes a score for every pair
(query i, key j); the causal mask removes the pairs where j lies in the
future.

The mask is ADDITIVE: it is added to the attention scores before softmax.

- 0 where query i may see key j: the score is unchanged.
- -inf where it may not: the score becomes -inf, and softmax turns
  exp(-inf) into exactly 0, so that key gets a weight of exactly 0.
  (HuggingFace's attention puts the most negative float32 number,
  torch.finfo(torch.float32).min = -3.40282e+38, in place of blocked scores,
  which gives the same 0 after softmax. This course's mask is added to the
  scores instead; -inf says exactly what is meant, and it is what the check
  expects.)

The diagonal (j == i) is kept: a token always sees itself. That also means
every row has at least one 0, so softmax never sees a row of only -inf
(which would give NaN).

Shapes: causal_mask(sequence_length, num_tokens) returns
[sequence_length, sequence_length + num_tokens]. The rows are the queries
(the new tokens); the columns are the keys. num_tokens is the number of
earlier tokens every query may also see: in steps 07 to 12 it is 0, which
gives a square mask; in step 14 the earlier tokens' keys come from a cache,
and num_tokens is how many there are. For sequence_length=4, num_tokens=0:

    [[  0, -inf, -inf, -inf],
     [  0,    0, -inf, -inf],
     [  0,    0,    0, -inf],
     [  0,    0,    0,    0]]

Think in positions. The keys are the tokens at positions 0, 1, ...,
num_tokens + sequence_length - 1; the queries are the new tokens, the last
sequence_length of them, at positions num_tokens, ..., num_tokens +
sequence_length - 1. A key is in the future of a query when its position
is larger. For sequence_length=2, num_tokens=3:

    key positions       0  1  2  3  4
    query position 3: [ 0, 0, 0, 0, -inf]
    query position 4: [ 0, 0, 0, 0,    0]

Compare a row of key positions, shape [1, keys], with a column of query
positions, shape [queries, 1]: broadcasting gives the whole [queries, keys]
table of "is this key in the future?" at once.

For the full context of 1024 tokens the mask is 1024 x 1024, of which
524,800 entries are 0 (allowed). In step 07 this [seq, seq] mask is added to
scores of shape [batch, n_head, seq, seq] and broadcasts over batch and
heads.

MAX operations:
- Dim(sequence_length) + num_tokens: the number of keys.
- Tensor.arange(start, stop, dtype=..., device=...): start, start + 1, ...,
  stop - 1 (Tensor.arange(stop, ...) starts at 0).
- F.unsqueeze(x, axis): a new axis of size 1 at axis: [n] becomes [1, n]
  (axis 0) or [n, 1] (axis 1).
- a > b on tensors: elementwise comparison, a tensor of booleans; shapes
  [1, n] and [m, 1] broadcast to [m, n].
- Tensor.constant(value, dtype=..., device=...): a scalar tensor.
- F.where(condition, x, y): x where condition is true, y elsewhere.
- @F.functional lets causal_mask run both eagerly and inside a compiled
  graph, and returns a Tensor.

Symbolic shapes: the check compiles the model once for ANY batch size and
sequence length, so sequence_length and num_tokens may arrive as symbolic
Dims, not Python ints. Never call int() on them; pass them on as they are
to Dim and Tensor.arange, which accept them. (F.band_part, which some
tutorials use for this mask, takes only Python ints: it cannot build the
mask for a cache whose length is symbolic, which step 14 needs.)

Tasks:
1. Import Dim (the first TODO).
2. Compute the number of keys.
3. Build the key positions and the query positions with Tensor.arange.
4. Compare them to find the future, and turn that into -inf and 0.

Run: pixi run s02
"""

from max.driver import Device
from max.dtype import DType
from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.graph import DimLike

# TODO: Import what your code below uses (the lines above are given)
# Hint: from max.graph import Dim


@F.functional
def causal_mask(
    sequence_length: DimLike,
    num_tokens: DimLike,
    *,
    dtype: DType,
    device: Device,
) -> Tensor:
    """Builds an additive causal mask of shape [sequence_length, sequence_length + num_tokens].

    Args:
        sequence_length: Number of query positions (the new tokens).
        num_tokens: Number of earlier tokens every query may also see.
        dtype: Data type of the mask (the attention scores' dtype).
        device: Device of the mask.

    Returns:
        0 where query i may attend to key j (j <= i + num_tokens), -inf elsewhere.
    """
    # TODO: Compute the number of keys (earlier tokens + new tokens)
    # Hint: the earlier tokens plus the new ones; make sequence_length a Dim so the sum may stay symbolic
    # Hint: Do not call int() on sequence_length or num_tokens: they may be symbolic
    total_length = None

    # TODO: The position of every key: 0, 1, ..., total_length - 1
    # Hint: Tensor.arange with one bound counts from 0; int64 positions on the given device
    key_positions = None

    # TODO: The position of every query: the new tokens come after the num_tokens earlier ones
    # Hint: Tensor.arange with a start and a stop: the new tokens sit at num_tokens up to total_length - 1
    query_positions = None

    # TODO: A key is in the future of a query when its position is larger: [sequence_length, total_length]
    # Hint: F.unsqueeze the keys into a row [1, total_length] and the queries into a column
    # Hint: [sequence_length, 1], then compare them with >: broadcasting builds the whole table
    future = None

    # TODO: -inf for the future, 0 everywhere else
    # Hint: two scalars from Tensor.constant, -inf and 0.0, in the mask's dtype and on its device;
    # Hint: F.where picks between them with future as the condition
    return None
