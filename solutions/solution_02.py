"""
Solution for Step 02: Causal mask

The causal mask stops each position from attending to positions after it.
It is added to the attention scores before softmax: 0 where attention is
allowed, -inf where it is not, so those positions get probability 0.
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
    mask = Tensor.constant(float("-inf"), dtype=dtype, device=device)
    mask = F.broadcast_to(mask, shape=(sequence_length, total_length))
    # Zero the band on and below the shifted diagonal; keep -inf above it.
    return F.band_part(mask, num_lower=None, num_upper=num_tokens, exclude=True)
