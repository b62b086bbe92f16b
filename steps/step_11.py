"""
Step 11: Language model head

GPT2Model (step 10) gives one 768-wide vector per position. To predict text
the model needs, for every position, one score for each of the 50257 tokens
of the vocabulary. The language model head is a single linear layer that
does this:

    input_ids                 [batch, seq]
    transformer(input_ids)    [batch, seq, 768]      hidden states
    lm_head(hidden_states)    [batch, seq, 50257]    logits

Logits are raw scores: any real number, not probabilities. A higher logit
means the model finds that token more likely to come next. Softmax over the
last axis turns a row of logits into a probability distribution (step 12
does that, with a temperature). logits[:, i, :] predicts the token at
position i + 1, from tokens 0..i only (the causal mask in attention sees to
that). Every position is predicted at once, which is what training uses;
generation only needs the last position.

lm_head = Linear(n_embd, vocab_size, bias=False): 768 x 50257 = 38,597,376
parameters (38.6M). There is no bias because GPT-2 was trained without one:
HuggingFace's lm_head has only a weight, so a bias here would have no
weights to load. Linear stores its weight as [out, in] = [50257, 768]: the
same shape as the token table wte.

Weight tying. In HuggingFace's GPT2LMHeadModel, lm_head.weight IS
transformer.wte.weight: one tensor used twice, to read tokens in and to score
them out. The logit of token t is then the dot product of the final hidden
state with t's own embedding. So HuggingFace's model has 124,439,808
distinct parameters, the same as GPT2Model alone. Our MaxGPT2LMHeadModel
keeps lm_head.weight as its own tensor: 163,037,184 stored parameters. The
loader in step 12 fills it with a copy of wte's weight, so the outputs are
identical; the copy only costs memory.

Names: self.transformer and self.lm_head give parameter names such as
transformer.wte.weight, transformer.h.0.attn.c_attn.weight and
lm_head.weight: the keys of HuggingFace's GPT2LMHeadModel state dict.
self.config is kept so that step 12 can check token ids against vocab_size
and sequence lengths against n_positions.

MAX classes:
  - Linear(in_dim, out_dim, bias=False), Module from max.nn.module_v3
  - GPT2Model from solutions.solution_10 (build on the solution, not on your
    own step 10)

Tasks:
  1. Import Linear and GPT2Model (the first TODO)
  2. Create transformer and lm_head
  3. In __call__: hidden states from the transformer, then logits from lm_head

Run: pixi run s11
"""

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Module

from solutions.solution_01 import GPT2Config

# TODO: Import what your code below uses (the lines above are given)
# Hint: from max.nn.module_v3 import Linear
# Hint: from solutions.solution_10 import GPT2Model


class MaxGPT2LMHeadModel(Module):
    """Complete GPT-2 model with a language modeling head."""

    def __init__(self, config: GPT2Config):
        """Initialize the transformer and the LM head."""
        # Kept for step 12, which reads vocab_size and n_positions from it.
        self.config = config

        # TODO: Create the transformer (embeddings, blocks, final norm)
        # Hint: step 10's GPT2Model, built from the same config, stored as transformer (HuggingFace's name)
        self.transformer = None

        # TODO: Create the LM head: n_embd -> vocab_size, without a bias
        # Hint: a Linear from n_embd to vocab_size, without bias
        self.lm_head = None

    def __call__(self, input_ids: Tensor) -> Tensor:
        """[batch, seq] token ids -> [batch, seq, vocab_size] logits."""
        # TODO: Get the hidden states: [batch, seq, n_embd]
        # Hint: call the transformer on the ids
        hidden_states = None

        # TODO: Project them to one logit per vocabulary token and return them
        # Hint: call the head on the hidden states and return its output: [batch, seq, vocab_size]
        return None
