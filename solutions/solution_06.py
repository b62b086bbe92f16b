"""
Solution for Step 06: Position embeddings

Attention alone does not know the order of tokens. GPT-2 adds a learned
vector for each position 0, 1, 2, ... (the table wpe) to the token vectors.
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Embedding, Module

from solutions.solution_01 import GPT2Config


def position_ids(input_ids: Tensor) -> Tensor:
    """The positions 0, 1, ..., seq_length - 1 of a [batch, seq_length] input."""
    seq_length = input_ids.shape[-1]
    return Tensor.arange(seq_length, dtype=input_ids.dtype, device=input_ids.device)


class GPT2PositionEmbeddings(Module):
    """Learned position embeddings: one vector per position."""

    def __init__(self, config: GPT2Config):
        """Initialize the position table of shape [n_positions, n_embd]."""
        self.wpe = Embedding(config.n_positions, dim=config.n_embd)

    def __call__(self, input_ids: Tensor) -> Tensor:
        """[batch, seq] token ids -> [seq, n_embd] position vectors.

        Only the length of input_ids matters: position i gets row i of wpe.
        The result broadcasts over the batch when added to the token vectors.
        """
        return self.wpe(position_ids(input_ids))
