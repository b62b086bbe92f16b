"""
Step 10: The stacked model

GPT2Model is the whole transformer without the output layer: it turns token
ids into contextual vectors, one per position.

    input_ids                        [batch, seq]          int64 token ids
    wte(input_ids)                   [batch, seq, 768]     what each token is
  + wpe(position_ids(input_ids))     [seq, 768]            where it stands
  = hidden_states                    [batch, seq, 768]     (wpe broadcasts over batch)
    h: 12 GPT2Blocks in sequence     [batch, seq, 768]
    ln_f: final LayerNorm            [batch, seq, 768]

The parts (HuggingFace's names, so its weights load by name):
  - wte, the token embedding: one row of n_embd numbers per token of the
    vocabulary, 50257 x 768 = 38,597,376 parameters (38.6M), the largest
    single tensor in the model
  - wpe, the position embedding: one row per position, 1024 x 768 = 786,432
    parameters. n_positions = 1024 is the longest sequence GPT-2 can read:
    there is no row for position 1024.
  - h, the blocks: n_layer GPT2Blocks held by a Sequential, each block made
    by a call of its own: 12 blocks of 7,087,872 parameters, 85,054,464 in all
  - ln_f, the final LayerNorm over n_embd, with the config's
    layer_norm_epsilon: 1,536 parameters
  Total: 124,439,808 parameters (124.4M): the "124M" in GPT-2 124M.

Why Sequential: Sequential(*modules) calls its modules in order, each on the
previous one's output, and names them "0", "1", ..., "11". The parameters
are then called h.0.ln_1.weight ... h.11.mlp.c_proj.bias, exactly
HuggingFace's names. A plain Python list is not a Module: MAX would not find
the blocks' parameters, and no weights could be loaded into them. Make a
new GPT2Block for each layer: a list multiplied by 12 would put one block,
with one set of weights, in all 12 places (the check catches it: why would
the numbers differ from HuggingFace's?).

Why ln_f: with pre-norm (step 08) the residual stream is never normalized
inside the blocks, and its scale tends to grow from block to block. ln_f
normalizes it once at the end, before the LM head (step 11) reads it.

position_ids(input_ids) from solutions.solution_06 returns 0, 1, ...,
seq - 1, built from the symbolic sequence length. Do not compute the length
with int(): the test compiles the model once for any batch size and length.

MAX classes:
  - Embedding(num_rows, dim=width), Sequential(*modules), Module from
    max.nn.module_v3
  - LayerNorm (solutions.solution_03), position_ids (solutions.solution_06),
    GPT2Block (solutions.solution_09)

Tasks:
  1. Import Embedding, Sequential and the earlier components (the first TODO)
  2. Create wte, wpe, h and ln_f
  3. In __call__: add token and position embeddings, run the blocks, apply ln_f

Run: pixi run s10
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Module

from solutions.solution_01 import GPT2Config

# TODO: Import what your code below uses (the lines above are given)
# Hint: from max.nn.module_v3 import Embedding, Sequential
# Hint: from solutions.solution_03 import LayerNorm
# Hint: from solutions.solution_06 import position_ids
# Hint: from solutions.solution_09 import GPT2Block


class GPT2Model(Module):
    """The GPT-2 transformer: embeddings, blocks, final norm."""

    def __init__(self, config: GPT2Config):
        """Initialize wte, wpe, the blocks h.0 ... h.{n_layer-1}, and ln_f."""
        # TODO: Create the token embedding table [vocab_size, n_embd]
        # Hint: an Embedding with one row per vocabulary token, each row n_embd wide
        self.wte = None

        # TODO: Create the position embedding table [n_positions, n_embd]
        # Hint: an Embedding with one row per position GPT-2 can read (n_positions), n_embd wide
        self.wpe = None

        # TODO: Create n_layer blocks, each with its own weights, in a Sequential
        # Hint: a Sequential of n_layer separate GPT2Blocks: call GPT2Block(config) once per layer
        self.h = None

        # TODO: Create the final LayerNorm
        # Hint: step 03's LayerNorm over n_embd, with the config's epsilon
        self.ln_f = None

    def __call__(self, input_ids: Tensor) -> Tensor:
        """[batch, seq] token ids -> [batch, seq, n_embd] hidden states."""
        # TODO: Look up the token embeddings: [batch, seq, n_embd]
        # Hint: call the token table on the ids; each id becomes its row
        tok_embeds = None

        # TODO: Look up the position embeddings: [seq, n_embd]
        # Hint: position_ids (step 06) gives 0 .. seq - 1 from the ids' symbolic length; look those up in the position table
        pos_embeds = None

        # TODO: Add them (the positions broadcast over the batch)
        # Hint: a plain +: [batch, seq, n_embd] plus [seq, n_embd] broadcasts over the batch
        hidden_states = None

        # TODO: Run all blocks in order
        # Hint: a Sequential is called like one module: it runs its blocks in order, each on the previous one's output
        pass

        # TODO: Apply the final LayerNorm and return the result
        # Hint: call self.ln_f on the last block's output and return that
        return None
