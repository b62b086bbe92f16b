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
earlier tokens every query may also see, for example tokens kept in a cache
from previous calls. Query i may see key j when j <= i + num_tokens. In this
course's attention num_tokens is always 0, which gives a square mask.
For sequence_length=4, num_tokens=0:

    [[  0, -inf, -inf, -inf],
     [  0,    0, -inf, -inf],
     [  0,    0,    0, -inf],
     [  0,    0,    0,    0]]

For the full context of 1024 tokens the mask is 1024 x 1024, of which
524,800 entries are 0 (allowed). In step 07 this [seq, seq] mask is added to
scores of shape [batch, n_head, seq, seq] and broadcasts over batch and
heads.

MAX operations:
- Tensor.constant(float("-inf"), dtype=..., device=...): a scalar tensor.
- F.broadcast_to(x, shape=(rows, cols)): repeat it to the full shape.
- F.band_part(x, num_lower, num_upper, exclude): for each entry (i, j),
  the "band" is where i - j <= num_lower and j - i <= num_upper (None means
  no limit). Normally band_part keeps the band and sets the rest to 0;
  with exclude=True it sets the band to 0 and keeps the rest. With
  num_lower=None and num_upper=num_tokens the band is exactly the allowed
  entries, so they become 0 and the others stay -inf.
- Dim(sequence_length) + num_tokens: the number of columns.
- @F.functional lets causal_mask run both eagerly and inside a compiled
  graph, and returns a Tensor.

Symbolic shapes: the test harness compiles the model once for ANY batch
size and sequence length, so sequence_length may arrive as a symbolic Dim,
not a Python int. Never call int() on it; pass it on as it is to Dim,
F.broadcast_to and F.band_part, which all accept it.

Tasks:
1. Import Dim (the first TODO).
2. Compute the total number of key positions.
3. Build a -inf constant and broadcast it to the mask shape.
4. Use F.band_part to zero the allowed entries, and return the mask.

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
    # TODO: Compute the number of columns (earlier tokens + new tokens)
    # Hint: total_length = Dim(sequence_length) + num_tokens
    # Hint: Do not call int() on sequence_length: it may be symbolic
    total_length = None

    # TODO: Create a scalar -inf constant with the given dtype and device
    # Hint: mask = Tensor.constant(float("-inf"), dtype=dtype, device=device)
    mask = None

    # TODO: Broadcast the constant to [sequence_length, total_length]
    # Hint: mask = F.broadcast_to(mask, shape=(sequence_length, total_length))
    pass

    # TODO: Zero the band on and below the shifted diagonal; keep -inf above it
    # Hint: return F.band_part(mask, num_lower=None, num_upper=num_tokens, exclude=True)
    return None
