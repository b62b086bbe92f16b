"""
Step 06: Position embeddings

Attention compares every token with every other token, but on its own it
does not know their order: "dog bites man" and "man bites dog" would look
the same. GPT-2 fixes this with learned position embeddings: a second table,
wpe ("word position embeddings"), holds one vector per position
0, 1, 2, ..., and the vector of position i is added to the vector of the
token at position i (step 10 does the addition).

Two pieces:

1. position_ids(input_ids): the positions 0, 1, ..., seq_length - 1 of a
   [batch, seq_length] input, as a 1-D tensor of shape [seq_length].
   Positions always start at 0, and they depend only on the length of the
   sequence, never on the token ids themselves.
2. GPT2PositionEmbeddings: looks those positions up in wpe.

Shapes: input_ids [batch, seq_length] -> position_ids [seq_length]
-> position vectors [seq_length, n_embd]. There is no batch axis: every
sequence in the batch uses the same positions. When step 10 adds them to
the token vectors [batch, seq_length, n_embd], the [seq_length, n_embd]
tensor broadcasts over the batch.

Size in GPT-2 124M: wpe is [n_positions, n_embd] = 1024 x 768 = 786,432
parameters. n_positions = 1024 is also why GPT-2 cannot read more than
1024 tokens at once: there is no row for position 1024 or beyond.

The attribute must be called wpe, HuggingFace's name (wpe.weight), so the
pretrained weights load by name. Step 10 uses position_ids and a wpe table
built exactly like this one.

Symbolic shapes: the test harness compiles your module once for ANY batch
size and sequence length, then runs it on several shapes. So
input_ids.shape[-1] may be a symbolic Dim, not a Python int. Never call
int() on it; pass it as it is to Tensor.arange, which accepts it.

MAX operations and classes:
- input_ids.shape[-1]: the sequence length (last axis).
- Tensor.arange(n, dtype=..., device=...): the values 0, 1, ..., n - 1.
  Use input_ids.dtype (int64) and input_ids.device so the positions are
  valid ids for the table and live on the same device.
- Embedding(n_positions, dim=n_embd) and Module from max.nn.module_v3.
- GPT2Config from solutions.solution_01.

Tasks:
1. Import Embedding (the first TODO).
2. Implement position_ids with input_ids.shape[-1] and Tensor.arange.
3. In __init__, create self.wpe with config.n_positions rows of size
   config.n_embd.
4. In __call__, return self.wpe applied to position_ids(input_ids).

Run: pixi run s06
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Module

from solutions.solution_01 import GPT2Config

# TODO: Import what your code below uses (the lines above are given)
# Hint: from max.nn.module_v3 import Embedding


def position_ids(input_ids: Tensor) -> Tensor:
    """The positions 0, 1, ..., seq_length - 1 of a [batch, seq_length] input."""
    # TODO: Read the sequence length from the last axis of input_ids
    # Hint: the size of the last axis, from input_ids.shape
    # Hint: Keep it as it is (it may be a symbolic Dim); do not call int() on it
    seq_length = None

    # TODO: Return the positions 0, 1, ..., seq_length - 1
    # Hint: Tensor.arange up to seq_length, with the dtype and the device of input_ids
    return None


class GPT2PositionEmbeddings(Module):
    """Learned position embeddings: one vector per position."""

    def __init__(self, config: GPT2Config):
        """Initialize the position table of shape [n_positions, n_embd]."""
        # TODO: Create the position embedding table
        # Hint: an Embedding with config.n_positions rows, each config.n_embd wide (its dim keyword)
        self.wpe = None

    def __call__(self, input_ids: Tensor) -> Tensor:
        """[batch, seq] token ids -> [seq, n_embd] position vectors.

        Only the length of input_ids matters: position i gets row i of wpe.
        The result broadcasts over the batch when added to the token vectors.
        """
        # TODO: Look up the vector of every position 0 ... seq_length - 1
        # Hint: call wpe on the positions that position_ids gives for input_ids (not on the token ids)
        return None
