"""
Step 08: Residual connections and pre-norm

A transformer block does not replace its input; it adds to it. Each sublayer
(attention or MLP) computes an update, and the update is added to the vector
that came in:

    x = x + sublayer(x)

The running sum is called the residual stream. It gives the signal, and its
gradient during training, a direct path around every sublayer: if a sublayer
has nothing useful to add, the block can pass x through almost unchanged.
GPT-2 124M stacks 12 blocks of 2 sublayers each, 24 additions on the way
from the embeddings to the output; without these shortcuts a stack that deep
is much harder to train.

Pre-norm vs post-norm. The original Transformer normalized AFTER the sum
(post-norm): LayerNorm(x + sublayer(x)). GPT-2 normalizes BEFORE the sublayer
(pre-norm) and adds the result to the UNNORMALIZED stream:

    x = x + sublayer(LayerNorm(x))

Only the copy fed into the sublayer is normalized; the stream itself is
never normalized inside a block. (That is why GPT-2 needs one more LayerNorm,
ln_f, after the last block: step 10.) Pre-norm keeps deep stacks stable.

Common mistakes, all of which give the right shape and the wrong numbers:
  - adding to the normalized tensor: norm(x) + sublayer(norm(x))
  - normalizing after the sum (post-norm): norm(x + sublayer(x))
  - forgetting the residual: sublayer(norm(x))
Only a comparison with HuggingFace's numbers catches them, which is what the
test does.

Shapes: x is [batch, seq, n_embd]; norm and sublayer both return
[batch, seq, n_embd]; so does the sum. The addition itself has no parameters;
each LayerNorm(768) it uses has 1,536 (a weight and a bias of 768 each).

norm and sublayer are plain callables: a MAX Module is called like a
function, so step 09 can pass (self.ln_1, self.attn) and (self.ln_2,
self.mlp) to this one helper, and a test can pass simple functions.

MAX operations: none beyond `+` on two Tensors (elementwise addition), so
there is nothing to import: the imports below are given.

Tasks:
  1. Normalize x with norm
  2. Run sublayer on the normalized tensor
  3. Add the sublayer's output to the original x and return the sum

Run: pixi run s08
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
    # TODO: Normalize the input
    # Hint: norm is a callable (a LayerNorm): call it on x
    normalized = None

    # TODO: Run the sublayer on the normalized tensor
    # Hint: call sublayer on the normalized copy, not on x
    update = None

    # TODO: Add the update to the ORIGINAL x (not to normalized) and return it
    # Hint: the residual: the unnormalized stream plus the update
    return None
