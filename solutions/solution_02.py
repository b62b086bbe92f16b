"""
Solution for Step 02: Causal mask

The causal mask stops each position from attending to positions after it.
It is added to the attention scores before softmax: 0 where attention is
allowed, -inf where it is not, so those positions get probability 0. Built
from positions, it also works when num_tokens (the number of cached earlier
tokens, step 14) is symbolic.
"""

from max.driver import Device
from max.dtype import DType
from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.graph import Dim, DimLike


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
    total_length = Dim(sequence_length) + num_tokens
    # Keys sit at positions 0 .. total-1; the new tokens (queries) are the last ones.
    key_positions = Tensor.arange(total_length, dtype=DType.int64, device=device)  # [total]
    query_positions = Tensor.arange(num_tokens, total_length, dtype=DType.int64, device=device)  # [seq]
    future = F.unsqueeze(key_positions, 0) > F.unsqueeze(query_positions, 1)  # [seq, total]
    blocked = Tensor.constant(float("-inf"), dtype=dtype, device=device)
    allowed = Tensor.constant(0.0, dtype=dtype, device=device)
    return F.where(future, blocked, allowed)
