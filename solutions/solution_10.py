"""
Solution for Step 10: The stacked model

GPT2Model turns token ids into contextual vectors: token embeddings plus
position embeddings, n_layer blocks in sequence, and a final LayerNorm.
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Embedding, Module, Sequential

from solutions.solution_01 import GPT2Config
from solutions.solution_03 import LayerNorm
from solutions.solution_06 import position_ids
from solutions.solution_09 import GPT2Block


class GPT2Model(Module):
    """The GPT-2 transformer: embeddings, blocks, final norm."""

    def __init__(self, config: GPT2Config):
        """Initialize wte, wpe, the blocks h.0 ... h.{n_layer-1}, and ln_f."""
        self.wte = Embedding(config.vocab_size, dim=config.n_embd)
        self.wpe = Embedding(config.n_positions, dim=config.n_embd)
        self.h = Sequential(*(GPT2Block(config) for _ in range(config.n_layer)))
        self.ln_f = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def __call__(self, input_ids: Tensor) -> Tensor:
        """[batch, seq] token ids -> [batch, seq, n_embd] hidden states."""
        tok_embeds = self.wte(input_ids)
        pos_embeds = self.wpe(position_ids(input_ids))
        hidden_states = tok_embeds + pos_embeds
        hidden_states = self.h(hidden_states)
        return self.ln_f(hidden_states)
