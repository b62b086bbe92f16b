"""
Solution for Step 08: Residual connections and pre-norm

A residual connection adds a sublayer's output to its input: x + f(x).
GPT-2 normalizes before the sublayer ("pre-norm"): x + f(LayerNorm(x)).
The sum keeps an unchanged path for the signal and its gradient through
every block.
"""

from collections.abc import Callable

from max.experimental.tensor import Tensor


def pre_norm_residual(
    x: Tensor,
    norm: Callable[[Tensor], Tensor],
    sublayer: Callable[[Tensor], Tensor],
) -> Tensor:
    """Apply norm, then sublayer, and add the result to the unnormalized input.

    Args:
        x: The residual stream, [batch, seq, n_embd].
        norm: A LayerNorm.
        sublayer: Attention or MLP.

    Returns:
        x + sublayer(norm(x)), [batch, seq, n_embd].
    """
    normalized = norm(x)
    update = sublayer(normalized)
    return x + update
