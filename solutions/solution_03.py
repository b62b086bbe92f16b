"""
Solution for Step 03: Layer normalization

LayerNorm rescales every vector to mean 0 and variance 1 over its last axis,
then applies a learned scale (weight) and shift (bias).
"""

from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.graph import DimLike
from max.nn.module_v3 import Module


class LayerNorm(Module):
    """Layer normalization over the last axis, with learned weight and bias."""

    def __init__(self, dim: DimLike, *, eps: float = 1e-5):
        """Initialize LayerNorm.

        Args:
            dim: Size of the last axis (n_embd).
            eps: Small constant added to the variance for numerical stability.
        """
        self.eps = eps
        self.weight = Tensor.ones([dim])
        self.bias = Tensor.zeros([dim])

    def __call__(self, x: Tensor) -> Tensor:
        """Normalize x over its last axis, then scale by weight and shift by bias."""
        return F.layer_norm(x, gamma=self.weight, beta=self.bias, epsilon=self.eps)
