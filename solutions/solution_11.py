"""
Solution for Step 11: Language model head

MaxGPT2LMHeadModel adds the final projection from hidden states to one
score (logit) per vocabulary token.
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Linear, Module

from solutions.solution_01 import GPT2Config
from solutions.solution_10 import GPT2Model


class MaxGPT2LMHeadModel(Module):
    """Complete GPT-2 model with a language modeling head."""

    def __init__(self, config: GPT2Config):
        """Initialize the transformer and the LM head."""
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)

    def __call__(self, input_ids: Tensor) -> Tensor:
        """[batch, seq] token ids -> [batch, seq, vocab_size] logits."""
        hidden_states = self.transformer(input_ids)
        return self.lm_head(hidden_states)
