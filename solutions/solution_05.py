"""
Solution for Step 05: Token embeddings

The token embedding table (wte) turns each token id into a learned vector
of n_embd numbers: row i of the table is the vector of token i.
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Embedding, Module

from solutions.solution_01 import GPT2Config


class GPT2Embeddings(Module):
    """Token embeddings: token ids -> vectors."""

    def __init__(self, config: GPT2Config):
        """Initialize the token embedding table of shape [vocab_size, n_embd]."""
        self.wte = Embedding(config.vocab_size, dim=config.n_embd)

    def __call__(self, input_ids: Tensor) -> Tensor:
        """[batch, seq] token ids -> [batch, seq, n_embd] vectors."""
        return self.wte(input_ids)
