"""
Step 14: The KV cache

Step 12's loop runs the model over the whole sequence for every new token:
token 100 costs a pass over 100 tokens, token 200 over 200. Yet almost all
of that work is repeated. Token i attends only to tokens <= i, so the key
and value that layer l computes for token i are the same at every later
step. Keep them: that is the KV cache. Then each new token needs only its
own query, key and value, and attends over the cached keys and values
plus its own.

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
10 and 11 and only change __call__), so step 12's load_hf_weights fills
them as before.

The cache (KVCache) is two numpy buffers of a fixed size,
    keys, values: [n_layer, batch, n_head, capacity, head_dim]   float32
and length, the number of positions filled. append(keys, values) writes
the new tokens' keys and values, [n_layer, batch, n_head, seq, head_dim],
at positions length .. length+seq-1 and advances length by seq.

How it is compiled (tools/kv_engine.py, given; read it if you like):
compile_cached_model(model) traces the model ONCE with every size symbolic
(batch, new tokens, cached tokens, capacity), so one graph serves the
prefill and every decode step, whatever the lengths: no graph per token.
The graph takes the whole cache buffers and the length, and reads
cache[..., :length, :] itself, so the buffers are never copied. It does
not use Module.compile: in MAX 25.7 every Tensor a compiled module returns
stays referenced until the process ends, and a cache handed back at every
step would pile up in memory. The engine's own model, called with
max.driver tensors, does not do that: memory stays flat.

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

    def __call__(self, hidden_states: Tensor, past_key: Tensor, past_value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns the output [batch, seq, n_embd] and the new tokens' key and value."""
        # TODO: Query, key and value of the new tokens, split into heads (as in step 07)
        # Hint: qkv = self.c_attn(hidden_states)
        # Hint: query, key, value = F.split(qkv, [self.embed_dim] * 3, axis=-1)
        # Hint: query = self._split_heads(query)  # [batch, n_head, seq, head_dim]
        # Hint: key = self._split_heads(key)
        # Hint: value = self._split_heads(value)
        query, key, value = None, None, None

        # TODO: The new keys and values go after the cached ones
        # Hint: all_keys = F.concat([past_key, key], axis=2)  # [batch, n_head, past+seq, head_dim]
        # Hint: all_values = F.concat([past_value, value], axis=2)
        all_keys, all_values = None, None

        # TODO: Scores of the new queries against all keys, scaled
        # Hint: scores = query @ all_keys.transpose(-1, -2) / math.sqrt(self.head_dim)  # [batch, n_head, seq, past+seq]
        scores = None

        # TODO: The mask: each new token sees every cached token and the new ones up to itself
        # Hint: past_length, seq_length = past_key.shape[-2], query.shape[-2]
        # Hint: mask = causal_mask(seq_length, past_length, dtype=scores.dtype, device=scores.device)  # [seq, past+seq]
        mask = None

        # TODO: Softmax, mix the values, merge the heads, project
        # Hint: weights = F.softmax(scores + mask)
        # Hint: output = self.c_proj(self._merge_heads(weights @ all_values))  # [batch, seq, n_embd]
        output = None

        # TODO: Return the output and the NEW tokens' key and value (the loop caches them)
        # Hint: return output, key, value
        return None


class CachedGPT2Block(GPT2Block):
    """A transformer block whose attention reads the cache."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.attn = CachedGPT2Attention(config)

    def __call__(self, hidden_states: Tensor, past_key: Tensor, past_value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[batch, seq, n_embd] -> the same shape, and the new tokens' key and value."""
        # TODO: Attention with a residual; it also returns the new key and value
        # Hint: attn_output, key, value = self.attn(self.ln_1(hidden_states), past_key, past_value)
        # Hint: hidden_states = hidden_states + attn_output
        pass

        # TODO: The MLP with its residual, as in step 09
        # Hint: hidden_states = pre_norm_residual(hidden_states, self.ln_2, self.mlp)
        # Hint: return hidden_states, key, value
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
        # Hint: past_length, seq_length = past_keys.shape[-2], input_ids.shape[-1]
        # Hint: positions = Tensor.arange(
        # Hint:     past_length, past_length + seq_length, dtype=input_ids.dtype, device=input_ids.device
        # Hint: )  # [seq]: past, past+1, ...
        positions = None

        # TODO: Token plus position embeddings
        # Hint: hidden_states = self.wte(input_ids) + self.wpe(positions)  # [batch, seq, n_embd]
        hidden_states = None

        # TODO: Each block gets its layer's cache; collect the new keys and values
        # Hint: keys, values = [], []
        # Hint: for i, block in enumerate(self.h):
        # Hint:     hidden_states, key, value = block(hidden_states, past_keys[i], past_values[i])
        # Hint:     keys.append(key)
        # Hint:     values.append(value)
        pass

        # TODO: The final norm, and the new keys and values stacked over the layers
        # Hint: return self.ln_f(hidden_states), F.stack(keys), F.stack(values)
        return None


class CachedGPT2LMHeadModel(MaxGPT2LMHeadModel):
    """GPT-2 with a cache: the next token's logits, and the new keys and values."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = CachedGPT2Model(config)

    def __call__(self, input_ids: Tensor, past_keys: Tensor, past_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns logits [batch, vocab_size] of the last new token, keys, values."""
        # TODO: Run the transformer, then the LM head on the LAST position only
        # Hint: hidden_states, keys, values = self.transformer(input_ids, past_keys, past_values)
        # Hint: logits = self.lm_head(hidden_states[:, -1, :])  # [batch, vocab_size]
        # Hint: return logits, keys, values
        return None


class KVCache:
    """Every layer's keys and values so far, in buffers of a fixed size."""

    def __init__(self, config: GPT2Config, batch_size: int, capacity: int):
        # TODO: Two float32 buffers [n_layer, batch, n_head, capacity, head_dim], and nothing filled yet
        # Hint: shape = (config.n_layer, batch_size, config.n_head, capacity, config.n_embd // config.n_head)
        # Hint: self.keys = np.zeros(shape, dtype=np.float32)  # [n_layer, batch, n_head, capacity, head_dim]
        # Hint: self.values = np.zeros(shape, dtype=np.float32)
        # Hint: self.length = 0  # positions filled
        self.keys = None
        self.values = None
        self.length = None

    def append(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Write the new tokens' keys/values [n_layer, batch, n_head, seq, head_dim] after the cached ones."""
        # TODO: Write them at positions length .. length+seq-1, then advance length
        # Hint: seq_length = keys.shape[-2]
        # Hint: self.keys[:, :, :, self.length : self.length + seq_length] = keys
        # Hint: self.values[:, :, :, self.length : self.length + seq_length] = values
        # Hint: self.length += seq_length
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
    # Hint: ids = as_token_array(input_ids, model)
    # Hint: batch_size, prompt_length = ids.shape
    # Hint: if prompt_length + max_new_tokens > model.config.n_positions:
    # Hint:     raise ValueError(
    # Hint:         f"{prompt_length} prompt tokens + {max_new_tokens} new tokens > n_positions={model.config.n_positions}"
    # Hint:     )
    ids = None

    # TODO: ONE generator, a cache with room for every token, no sequence finished yet
    # Hint: rng = np.random.default_rng(seed)
    # Hint: cache = KVCache(model.config, batch_size, capacity=prompt_length + max_new_tokens)
    # Hint: finished = np.zeros(batch_size, dtype=bool)
    # Hint: new_ids = ids  # prefill: the whole prompt
    pass

    # TODO: Loop: run the model on the new tokens, cache their keys and values,
    # TODO: choose, pad, append; from then on feed only the token just chosen
    # Hint: for _ in range(max_new_tokens):
    # Hint:     logits, keys, values = model(new_ids, cache)
    # Hint:     cache.append(keys, values)
    # Hint:     next_token = choose_next_token(logits, temperature, do_sample, top_k=top_k, top_p=top_p, rng=rng)
    # Hint:     next_token, finished = pad_finished(next_token, finished, eos_token_id)
    # Hint:     ids = np.concatenate([ids, next_token[:, None]], axis=1)
    # Hint:     if finished.all():
    # Hint:         break
    # Hint:     new_ids = next_token[:, None]  # decode: one new token per sequence
    pass

    # TODO: Return the prompt followed by the new tokens
    # Hint: return ids
    return None
