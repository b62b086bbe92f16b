"""
Step 14: The KV cache

Step 12's loop runs the model over the whole sequence for every new token:
token 100 costs a pass over 100 tokens, token 200 over 200. Yet almost all
of that work is repeated. Token i attends only to tokens <= i, so the key
and value that layer l computes for token i are the same at every later
step. Keep them: that is the KV cache. Then each new token needs only its
own query, key and value, and attends over the cached keys and values
plus its own.

Why the cached numbers are the same numbers: the embeddings, LayerNorm
and the MLP act on each position alone, attention is causal (token i
reads only tokens <= i), and a token's position never shifts. So
everything layer l computes for token i, its key and value included, is
fixed once token i is there; a later token changes none of it. Queries
are not cached: a token's query is used once, by that token, at the
step it arrives; later tokens ask with queries of their own.

Why it is fast: prefill multiplies a [prompt, 768] matrix by each
weight, matrix-matrix work that uses each weight many times. A decode
step multiplies ONE row by each weight: it must read all the float32
weights (about 495 MB at 124M, the tied head counted once) to do about
0.25 GFLOP, two FLOPs per weight, so half a FLOP per byte read. A CPU
core does far more FLOPs per byte than its memory delivers, so a decode
step is bound by reading the weights, not by arithmetic (lesson 15 puts
several sequences through one read).

What it costs: 2 (keys, values) x 12 layers x 768 x 4 bytes = 73728
bytes = 72 KiB per token at 124M, 72 MiB for a sequence of 1024 tokens.

Generation becomes two kinds of call of the same model:
  prefill  the whole prompt, with an empty cache (0 cached tokens);
  decode   one new token per sequence, with everything before it cached.
Each call returns the next token's logits and the keys and values of the
tokens it was fed, which the loop appends to the cache.

What changes in the model, with past = the number of cached tokens and
seq = the number of new tokens:
  - attention: the new keys go AFTER the cached ones,
        all_keys = F.concat([past_key, key], axis=2)   # [batch, n_head, past+seq, head_dim]
    (the same for values), so the scores are [batch, n_head, seq, past+seq];
  - the mask: new token i sees every cached token and the new tokens up to
    i. That is causal_mask(seq, past) from step 02, [seq, past+seq], with
    num_tokens > 0 at last:
        causal_mask(2, 3)    keys:  c c c n n      (c cached, n new)
                 new token 0:       0 0 0 0 -inf
                 new token 1:       0 0 0 0 0
  - positions: the new tokens sit at past, past+1, ..., past+seq-1, not
    at 0, 1, ...: Tensor.arange(past_length, past_length + seq_length);
  - the LM head runs on the last position only: the next token is all the
    loop needs, and the head is the largest matrix of the model.
Every parameter keeps its name (the cached classes subclass steps 07, 09,
10 and 11, override __call__, and override __init__ to put the cached
sub-module in place of the plain one under the same name: attn, h,
transformer), so step 12's load_hf_weights fills them as before. Attention and the block also take an optional mask: None
builds the causal mask above; lesson 15 passes its own, for rows of
different lengths.

The cache (KVCache) is two numpy buffers of a fixed size,
    keys, values: [n_layer, batch, n_head, capacity, head_dim]   float32
and length, the number of positions filled. append(keys, values) writes
the new tokens' keys and values, [n_layer, batch, n_head, seq, head_dim],
at positions length .. length+seq-1 and advances length by seq.

How it is compiled (tools/kv_engine.py, given; read it if you like):
compile_cached_model(model) traces the model ONCE with every size symbolic
(batch, new tokens, cached tokens, capacity), so one graph serves the
prefill and every decode step, whatever the lengths: no graph per token.
The graph takes the whole cache buffers and the length, and slices
cache[..., :length, :] itself, so numpy never copies the cache to hand it
over; inside the graph, each layer's attention still concatenates the
filled part with the new keys and values at every step (a copy of
past+seq positions). Why it calls MAX's engine directly rather than
Module.compile is told in tools/kv_engine.py (a MAX 25.7 memory issue).

    compiled = compile_cached_model(model)
    logits, keys, values = compiled(input_ids, cache)   # [batch, vocab], new keys/values
    cache.append(keys, values)

Tasks:
  1. Import what your code uses (the first TODO)
  2. CachedGPT2Attention: attend over the cached and the new keys/values
  3. CachedGPT2Block: step 09's block, passing the cache through
  4. CachedGPT2Model: offset positions, and the new keys/values of every layer
  5. CachedGPT2LMHeadModel: logits of the last position only
  6. KVCache: the buffers, and append
  7. generate_tokens_cached: prefill, then one token at a time

Run: pixi run s14

Measure it: `python bench.py --new-tokens 32 128 256 --repeats 1` times
greedy generation of 32, 128 and 256 new tokens with and without the cache
(and HuggingFace's), checks that all three write the same tokens, and
prints decode ms per token at each length (without the cache it grows with
the context, with it hardly), the largest logit difference between the two
paths over the longest run (float32 rounding, about 1e-5), and the floor of
a decode step (the weights' bytes over the memory bandwidth it measures).
"""

from typing import Any

import numpy as np
from max.experimental.tensor import Tensor
from max.nn.module_v3 import Sequential

from solutions.solution_01 import GPT2Config
from solutions.solution_07 import GPT2MultiHeadAttention
from solutions.solution_09 import GPT2Block
from solutions.solution_10 import GPT2Model
from solutions.solution_11 import MaxGPT2LMHeadModel
from solutions.solution_13 import check_generation_settings

# TODO: Import what your code below uses (the lines above are given)
# Hint: import math
# Hint: from max.experimental import functional as F
# Hint: from solutions.solution_02 import causal_mask
# Hint: from solutions.solution_08 import pre_norm_residual
# Hint: from solutions.solution_12 import as_token_array
# Hint: from solutions.solution_13 import choose_next_token, pad_finished


class CachedGPT2Attention(GPT2MultiHeadAttention):
    """Attention of the new tokens over the cached keys/values and their own."""

    def __call__(
        self, hidden_states: Tensor, past_key: Tensor, past_value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns the output [batch, seq, n_embd] and the new tokens' key and value.

        mask: added to the scores; None builds the causal mask for a cache
        that holds past_key.shape[-2] tokens in every row (lesson 15 passes
        a mask of its own, for rows of different lengths)."""
        # TODO: Query, key and value of the new tokens, split into heads (as in step 07)
        # Hint: as in step 07: c_attn, F.split into three pieces of n_embd, then self._split_heads on each
        query, key, value = None, None, None

        # TODO: The new keys and values go after the cached ones
        # Hint: F.concat the cached keys and then the new ones on the sequence axis (2); the same for values
        all_keys, all_values = None, None

        # TODO: Scores of the new queries against all keys, scaled
        # Hint: the new queries times the transposed keys (last two axes), divided by sqrt(head_dim)
        scores = None

        # TODO: When no mask is given: each new token sees every cached token and the new ones up to itself
        # Hint: only when mask is None: read past and seq from the key and query shapes, and build step 02's causal_mask(seq, past) in the scores' dtype and device
        pass

        # TODO: Softmax, mix the values, merge the heads, project
        # Hint: F.softmax of scores plus mask; weights @ all_values, self._merge_heads, then self.c_proj
        output = None

        # TODO: Return the output and the NEW tokens' key and value (the loop caches them)
        # Hint: return three things: the output, and this call's key and value (not the concatenated ones)
        return None


class CachedGPT2Block(GPT2Block):
    """A transformer block whose attention reads the cache."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.attn = CachedGPT2Attention(config)

    def __call__(
        self, hidden_states: Tensor, past_key: Tensor, past_value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """[batch, seq, n_embd] -> the same shape, and the new tokens' key and value."""
        # TODO: Attention (passing the mask on) with a residual; it also returns the new key and value
        # Hint: self.attn on ln_1 of the stream, with the cache and the mask; add its output to the stream
        pass

        # TODO: The MLP with its residual, as in step 09
        # Hint: pre_norm_residual with ln_2 and the MLP, as in step 09; return the stream with the key and value
        return None


class CachedGPT2Model(GPT2Model):
    """GPT2Model for new tokens that come after past_length cached ones."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.h = Sequential(*(CachedGPT2Block(config) for _ in range(config.n_layer)))

    def __call__(self, input_ids: Tensor, past_keys: Tensor, past_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """input_ids [batch, seq]; past_keys, past_values [n_layer, batch, n_head, past, head_dim].

        Returns hidden states [batch, seq, n_embd] and the new tokens' keys
        and values, [n_layer, batch, n_head, seq, head_dim] each.
        """
        # TODO: Positions past, past+1, ..., past+seq-1
        # Hint: past and seq from the shapes, then Tensor.arange from past to past+seq in the ids' dtype and device
        positions = None

        # TODO: Token plus position embeddings
        # Hint: self.wte on the ids plus self.wpe on the positions
        hidden_states = None

        # TODO: Each block gets its layer's cache; collect the new keys and values
        # Hint: loop over self.h with enumerate: block i gets past_keys[i] and past_values[i]; collect each block's key and value in lists
        pass

        # TODO: The final norm, and the new keys and values stacked over the layers
        # Hint: ln_f of the stream, and F.stack of each list (a new first axis: the layers)
        return None


class CachedGPT2LMHeadModel(MaxGPT2LMHeadModel):
    """GPT-2 with a cache: the next token's logits, and the new keys and values."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = CachedGPT2Model(config)

    def __call__(self, input_ids: Tensor, past_keys: Tensor, past_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns logits [batch, vocab_size] of the last new token, keys, values."""
        # TODO: Run the transformer, then the LM head on the LAST position only
        # Hint: self.transformer with the cache; self.lm_head on the last position only ([:, -1, :]); return the logits with the keys and values
        return None


class KVCache:
    """Every layer's keys and values so far, in buffers of a fixed size."""

    def __init__(self, config: GPT2Config, batch_size: int, capacity: int):
        # TODO: Two float32 buffers [n_layer, batch, n_head, capacity, head_dim], and nothing filled yet
        # Hint: one shape tuple (head_dim = n_embd // n_head), np.zeros of it in float32 twice, and length 0
        self.keys = None
        self.values = None
        self.length = None

    def append(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Write the new tokens' keys/values [n_layer, batch, n_head, seq, head_dim] after the cached ones."""
        # TODO: Write them at positions length .. length+seq-1, then advance length
        # Hint: seq from the keys' second-to-last axis; assign into the slice self.length : self.length + seq of axis 3 of both buffers; add seq to length
        pass


def generate_tokens_cached(
    model,
    input_ids: Any,
    max_new_tokens: int = 10,
    temperature: float = 1.0,
    do_sample: bool = True,
    *,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Step 13's generate_tokens with a KV cache: the same tokens, far less work.

    model: a compiled cached model, (input_ids, cache) -> (logits, keys, values).
    Returns [batch, seq + n] int64, n <= max_new_tokens.
    """
    # Given: bad settings stop here, before any model call (step 13).
    check_generation_settings(max_new_tokens, temperature, do_sample, top_k, top_p)

    # TODO: The prompt as ids; refuse a prompt plus new tokens beyond the context
    # Hint: as_token_array, its shape as batch and prompt length, and a ValueError when prompt plus new tokens exceed n_positions
    ids = None

    # TODO: ONE generator, a cache with room for every token, no sequence finished yet
    # Hint: one default_rng from the seed; a KVCache with room for prompt + max_new_tokens; one finished flag per row; the first feed is the whole prompt
    pass

    # TODO: Loop: run the model on the new tokens, cache their keys and values,
    #       choose, pad, append; from then on feed only the token just chosen
    # Hint: each round: the model on new_ids and the cache, cache.append, choose_next_token, pad_finished, concatenate, stop when all are finished, then feed the chosen token as a column
    pass

    # TODO: Return the prompt followed by the new tokens
    # Hint: ids holds the prompt and the new tokens
    return None
