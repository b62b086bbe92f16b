"""
Step 05: Token embeddings

A tokenizer turns text into integer token ids, but a neural network works
on vectors. The token embedding table, called wte ("word token
embeddings"), stores one learned vector of n_embd numbers per token: row i
of the table is the vector of token i. Looking up an id just picks its row.
No arithmetic happens, it is a table lookup.

Shapes: input_ids [batch, seq_length] (int64 token ids, each in
0 ... vocab_size - 1) -> [batch, seq_length, n_embd]. Every id gets its
row, so the output has one extra axis of size n_embd. For example a
[1, 3] tensor of ids (one sequence of 3 tokens) becomes [1, 3, 768].

Size in GPT-2 124M: the table is [vocab_size, n_embd] =
50257 x 768 = 38,597,376 parameters (38.6M). That is 31.0% of the whole
GPT2Model's 124,439,808 parameters: one lookup table holds almost a third
of the model.

GPT-2 also reuses this table at the very end: the language model head
(step 11) scores each vocabulary token with the same [50257, 768] matrix.
HuggingFace ties the two, and the loader in step 12 copies wte into
lm_head when the checkpoint stores only one of them.

The attribute must be called wte: HuggingFace names this weight
wte.weight (transformer.wte.weight in the full model), and the pretrained
weights load by name. In step 10, GPT2Model creates its own wte exactly
the same way.

MAX classes:
- Embedding(vocab_size, dim=n_embd) from max.nn.module_v3: a table of
  shape [vocab_size, n_embd] whose weight is named weight. Calling it on a
  tensor of ids returns the rows for those ids.
- Module: the base class of the layer.
- GPT2Config from solutions.solution_01 (always import earlier steps from
  the reference solutions).

Tasks:
1. Import Embedding (the first TODO).
2. In __init__, create self.wte with config.vocab_size rows of size
   config.n_embd.
3. In __call__, look up input_ids in self.wte and return the vectors.

Run: pixi run s05
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Module

from solutions.solution_01 import GPT2Config

# TODO: Import what your code below uses (the lines above are given)
# Hint: from max.nn.module_v3 import Embedding


class GPT2Embeddings(Module):
    """Token embeddings: token ids -> vectors."""

    def __init__(self, config: GPT2Config):
        """Initialize the token embedding table of shape [vocab_size, n_embd]."""
        # TODO: Create the token embedding table
        # Hint: an Embedding with config.vocab_size rows, each config.n_embd wide (its dim keyword)
        self.wte = None

    def __call__(self, input_ids: Tensor) -> Tensor:
        """[batch, seq] token ids -> [batch, seq, n_embd] vectors."""
        # TODO: Look up the vector of every token id
        # Hint: call the table on the ids: each id becomes its row, [batch, seq] -> [batch, seq, n_embd]
        return None
