"""
Step 03: Layer normalization

As a vector passes through many layers, its values can drift to very large
or very small scales, which makes training unstable. Layer normalization
(LayerNorm) brings every token vector back to a standard scale: it
normalizes each vector on its own, over its last axis (the n_embd = 768
numbers of one token), independently of the other tokens and the batch.

For one vector x of length n_embd:

    mean = sum(x) / n_embd
    var  = sum((x - mean)^2) / n_embd        (biased: divide by n, not n - 1)
    y    = (x - mean) / sqrt(var + eps) * weight + bias

The first part gives mean 0 and variance 1. Then two learned vectors let the
model undo that where it helps: weight scales each of the 768 features and
bias shifts it. They start as ones and zeros, so a fresh LayerNorm only
normalizes. eps = 1e-5 (config.layer_norm_epsilon) keeps the division safe
when the variance is 0.

Shapes: [batch, seq_length, n_embd] in, the same shape out. weight and bias
both have shape [n_embd].

GPT-2 124M uses LayerNorm(768) 25 times: ln_1 and ln_2 in each of the 12
blocks (step 09), and the final ln_f (step 10). Each has 1,536 parameters
(768 weight + 768 bias). The attribute names weight and bias are the ones
HuggingFace uses (e.g. h.0.ln_1.weight), so the pretrained values load by
name in step 12.

MAX operations and classes:
- Module (from max.nn.module_v3): the base class of every layer. Tensors
  stored as attributes (self.weight, self.bias) become the module's
  parameters, named after the attribute.
- Tensor.ones([dim]) and Tensor.zeros([dim]): the initial weight and bias.
- F.layer_norm(x, gamma=weight, beta=bias, epsilon=eps): the whole formula
  above in one operation, over the last axis.

Tasks:
1. Import F (the first TODO).
2. In __init__, store eps and create weight (ones) and bias (zeros) of
   shape [dim].
3. In __call__, return F.layer_norm of x with weight, bias and eps.

Run: pixi run s03
"""

from max.experimental.tensor import Tensor
from max.graph import DimLike
from max.nn.module_v3 import Module

# TODO: Import what your code below uses (the lines above are given)
# Hint: from max.experimental import functional as F


class LayerNorm(Module):
    """Layer normalization over the last axis, with learned weight and bias."""

    def __init__(self, dim: DimLike, *, eps: float = 1e-5):
        """Initialize LayerNorm.

        Args:
            dim: Size of the last axis (n_embd).
            eps: Small constant added to the variance for numerical stability.
        """
        # TODO: Store the epsilon
        # Hint: keep the eps argument on the module: __call__ needs it
        self.eps = None

        # TODO: Create the learned scale, initialized to ones, shape [dim]
        # Hint: Tensor.ones of shape [dim]: a fresh LayerNorm scales every feature by 1
        self.weight = None

        # TODO: Create the learned shift, initialized to zeros, shape [dim]
        # Hint: Tensor.zeros of shape [dim]: a fresh LayerNorm shifts nothing
        self.bias = None

    def __call__(self, x: Tensor) -> Tensor:
        """Normalize x over its last axis, then scale by weight and shift by bias."""
        # TODO: Apply layer normalization with weight, bias and eps
        # Hint: F.layer_norm does the whole formula over the last axis:
        # Hint: weight is its gamma, bias its beta and eps its epsilon
        return None
