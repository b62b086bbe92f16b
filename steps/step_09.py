"""
Step 09: Transformer block

A GPT-2 block puts the earlier parts together: two pre-norm residual
sublayers (step 08), first attention, then the MLP:

    x = x + attn(ln_1(x))     # positions exchange information
    x = x + mlp(ln_2(x))      # each position is processed on its own

Attention (step 07) is the only part that mixes positions; the MLP (step 04)
then transforms every position's vector independently. A block maps
[batch, seq, n_embd] to [batch, seq, n_embd]: the same shape in and out,
which is what lets step 10 stack 12 of them.

The four parts, with HuggingFace's attribute names (so that weights such as
h.0.ln_1.weight, h.0.attn.c_attn.weight or h.0.mlp.c_fc.bias load by name):
  - ln_1: LayerNorm(n_embd, eps=config.layer_norm_epsilon)   (step 03)
  - attn: GPT2MultiHeadAttention(config)                      (step 07)
  - ln_2: LayerNorm(n_embd, eps=config.layer_norm_epsilon)   (step 03)
  - mlp:  GPT2MLP(inner_dim, config)                          (step 04)

inner_dim is the MLP's hidden width: config.n_inner if it is set, otherwise
4 * n_embd = 3072 (GPT2Config's n_inner defaults to None). Test with
`is not None`, as HuggingFace does. Pass eps=config.layer_norm_epsilon
(1e-5 for GPT-2) rather than relying on LayerNorm's default, so a config
with another epsilon is honoured.

GPT-2 124M, one block:
  - ln_1: 1,536 parameters, ln_2: 1,536
  - attn: 2,362,368 (c_attn 1,771,776, c_proj 590,592)
  - mlp: 4,722,432 (c_fc 2,362,368, c_proj 2,360,064)
  - total: 7,087,872 parameters; 12 blocks hold 85,054,464.

Build on the SOLUTIONS of earlier steps, not on your own step files: import
from solutions.solution_03, _04, _07 and _08. Then a slip in an earlier step
of yours cannot make this step fail.

MAX classes and functions:
  - Module from max.nn.module_v3 (the base class)
  - LayerNorm, GPT2MLP, GPT2MultiHeadAttention, pre_norm_residual from the
    solutions above

Tasks:
  1. Import the four earlier components (the first TODO)
  2. Compute inner_dim
  3. Create ln_1, attn, ln_2 and mlp
  4. In __call__, apply pre_norm_residual twice: (ln_1, attn), then (ln_2, mlp)

Run: pixi run s09
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Module

from solutions.solution_01 import GPT2Config

# TODO: Import what your code below uses (the lines above are given)
# Hint: from solutions.solution_03 import LayerNorm
# Hint: from solutions.solution_04 import GPT2MLP
# Hint: from solutions.solution_07 import GPT2MultiHeadAttention
# Hint: from solutions.solution_08 import pre_norm_residual


class GPT2Block(Module):
    """One transformer block: attention and MLP, each with pre-norm and a residual."""

    def __init__(self, config: GPT2Config):
        """Initialize the block's four parts."""
        hidden_size = config.n_embd

        # TODO: Choose the MLP's hidden width: n_inner if set, else 4 * hidden_size
        # Hint: a conditional expression that tests config.n_inner with `is not None`, as HuggingFace does
        inner_dim = None

        # TODO: Create the LayerNorm before attention
        # Hint: a LayerNorm of hidden_size, with eps from config.layer_norm_epsilon
        self.ln_1 = None

        # TODO: Create the attention sublayer
        # Hint: the attention of step 07, built from the config
        self.attn = None

        # TODO: Create the LayerNorm before the MLP
        # Hint: built like ln_1
        self.ln_2 = None

        # TODO: Create the MLP sublayer
        # Hint: the MLP of step 04, with inner_dim as its hidden width
        self.mlp = None

    def __call__(self, hidden_states: Tensor) -> Tensor:
        """[batch, seq, n_embd] -> [batch, seq, n_embd]."""
        # TODO: Attention sublayer with pre-norm and residual
        # Hint: pre_norm_residual (step 08) with the stream, ln_1 and attn; its result is the new stream
        pass

        # TODO: MLP sublayer with pre-norm and residual
        # Hint: pre_norm_residual again, with ln_2 and mlp
        pass

        # TODO: Return the updated residual stream
        # Hint: the stream after both sublayers, [batch, seq, n_embd]
        return None
