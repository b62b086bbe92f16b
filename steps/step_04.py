"""
Step 04: Feed-forward network (MLP)

Attention (step 07) lets tokens exchange information. The MLP then
processes every position on its own: the same small two-layer network is
applied to each token vector, with no mixing between positions. Most of a
block's parameters live here.

The MLP does three things:

1. c_fc: a Linear layer that expands n_embd = 768 to intermediate_size,
   which is 4 * n_embd = 3072 in GPT-2 (config.n_inner = None means this).
2. GELU: a smooth non-linearity. Without it the two Linear layers would
   collapse into a single linear map.
3. c_proj: a Linear layer that projects back from 3072 to 768, so the
   result can be added to the block's input (the residual, step 08).

Shapes: [batch, seq_length, n_embd] -> [batch, seq_length, 3072]
-> [batch, seq_length, n_embd].

GELU, tanh approximation: GPT-2 was trained with

    gelu(x) = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))

The exact GELU (with erf) gives slightly different numbers, and the
pretrained weights expect the tanh version, so pass approximate="tanh".

Parameters in GPT-2 124M:
- c_fc: 768 x 3072 + 3072 = 2,362,368
- c_proj: 3072 x 768 + 768 = 2,360,064
- MLP total: 4,722,432, about twice the attention's 2,362,368, and
  most of one block's 7,087,872.

Weight layout: MAX's Linear(in_dim, out_dim) stores weight as [out, in],
so c_fc.weight is [3072, 768]. HuggingFace GPT-2 uses Conv1D layers that
store weights as [in, out] ([768, 3072]). The loader in step 12 transposes
them. The names c_fc, c_proj, weight and bias are HuggingFace's, so the
weights load by name (e.g. h.0.mlp.c_fc.weight).

MAX operations and classes:
- Linear(in_dim, out_dim, bias=True) from max.nn.module_v3.
- F.gelu(x, approximate="tanh").
- GPT2Config from solutions.solution_01: steps always build on the
  reference solutions of earlier steps, not on your own files.

Tasks:
1. Import F and Linear (the first TODO).
2. In __init__, create c_fc (n_embd -> intermediate_size) and c_proj
   (intermediate_size -> n_embd), both with bias.
3. In __call__, apply c_fc, then GELU (tanh), then c_proj.

Run: pixi run s04
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Module

from solutions.solution_01 import GPT2Config

# TODO: Import what your code below uses (the lines above are given)
# Hint: from max.experimental import functional as F
# Hint: from max.nn.module_v3 import Linear


class GPT2MLP(Module):
    """GPT-2's position-wise feed-forward network."""

    def __init__(self, intermediate_size: int, config: GPT2Config):
        """Initialize the MLP.

        Args:
            intermediate_size: Width of the hidden layer (usually 4 * n_embd).
            config: GPT2Config with n_embd.
        """
        # TODO: Read the embedding width from the config
        # Hint: the width of every token vector is a field of GPT2Config (step 01)
        embed_dim = None

        # TODO: Create the expanding layer n_embd -> intermediate_size
        # Hint: a Linear from embed_dim to intermediate_size, with a bias (HuggingFace's c_fc has one)
        self.c_fc = None

        # TODO: Create the projecting layer intermediate_size -> n_embd
        # Hint: a Linear the other way round, intermediate_size to embed_dim, with a bias
        self.c_proj = None

    def __call__(self, hidden_states: Tensor) -> Tensor:
        """[batch, seq, n_embd] -> [batch, seq, n_embd]."""
        # TODO: Expand to intermediate_size
        # Hint: a Module is called like a function: pass hidden_states through c_fc, keeping the name
        pass

        # TODO: Apply GELU with the tanh approximation
        # Hint: F.gelu with the tanh approximation (approximate="tanh"): the pretrained weights expect it
        pass

        # TODO: Project back to n_embd
        # Hint: pass hidden_states through c_proj, keeping the name
        pass

        # TODO: Return the result
        # Hint: after c_proj, hidden_states has the input's shape again: it is the MLP's output
        return None
