"""
Solution for Step 14: The KV cache

Token i attends only to tokens <= i, so the keys and values of earlier
tokens never change. Keep them (the KV cache), and for each new token
compute only its own query, key and value. Generation becomes a prefill
pass over the prompt and then one-token decode steps.
"""

import math
from typing import Any

import numpy as np
from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.nn.module_v3 import Sequential

from solutions.solution_01 import GPT2Config
from solutions.solution_02 import causal_mask
from solutions.solution_07 import GPT2MultiHeadAttention
from solutions.solution_08 import pre_norm_residual
from solutions.solution_09 import GPT2Block
from solutions.solution_10 import GPT2Model
from solutions.solution_11 import MaxGPT2LMHeadModel
from solutions.solution_12 import as_token_array
from solutions.solution_13 import check_generation_settings, choose_next_token, pad_finished


class CachedGPT2Attention(GPT2MultiHeadAttention):
    """Attention of the new tokens over the cached keys/values and their own."""

    def __call__(
        self, hidden_states: Tensor, past_key: Tensor, past_value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns the output [batch, seq, n_embd] and the new tokens' key and value.

        mask: added to the scores; None builds the causal mask for a cache
        that holds past_key.shape[-2] tokens in every row (lesson 15 passes
        a mask of its own, for rows of different lengths)."""
        qkv = self.c_attn(hidden_states)
        query, key, value = F.split(qkv, [self.embed_dim] * 3, axis=-1)
        query = self._split_heads(query)  # [batch, n_head, seq, head_dim]
        key = self._split_heads(key)
        value = self._split_heads(value)

        all_keys = F.concat([past_key, key], axis=2)  # [batch, n_head, past+seq, head_dim]
        all_values = F.concat([past_value, value], axis=2)
        scores = query @ all_keys.transpose(-1, -2) / math.sqrt(self.head_dim)  # [batch, n_head, seq, past+seq]
        if mask is None:
            past_length, seq_length = past_key.shape[-2], query.shape[-2]
            mask = causal_mask(seq_length, past_length, dtype=scores.dtype, device=scores.device)  # [seq, past+seq]
        weights = F.softmax(scores + mask)
        output = self.c_proj(self._merge_heads(weights @ all_values))  # [batch, seq, n_embd]
        return output, key, value


class CachedGPT2Block(GPT2Block):
    """A transformer block whose attention reads the cache."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.attn = CachedGPT2Attention(config)

    def __call__(
        self, hidden_states: Tensor, past_key: Tensor, past_value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """[batch, seq, n_embd] -> the same shape, and the new tokens' key and value."""
        attn_output, key, value = self.attn(self.ln_1(hidden_states), past_key, past_value, mask)
        hidden_states = hidden_states + attn_output
        hidden_states = pre_norm_residual(hidden_states, self.ln_2, self.mlp)
        return hidden_states, key, value


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
        past_length, seq_length = past_keys.shape[-2], input_ids.shape[-1]
        positions = Tensor.arange(
            past_length, past_length + seq_length, dtype=input_ids.dtype, device=input_ids.device
        )  # [seq]: past, past+1, ...
        hidden_states = self.wte(input_ids) + self.wpe(positions)  # [batch, seq, n_embd]
        keys, values = [], []
        for i, block in enumerate(self.h):
            hidden_states, key, value = block(hidden_states, past_keys[i], past_values[i])
            keys.append(key)
            values.append(value)
        return self.ln_f(hidden_states), F.stack(keys), F.stack(values)


class CachedGPT2LMHeadModel(MaxGPT2LMHeadModel):
    """GPT-2 with a cache: the next token's logits, and the new keys and values."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = CachedGPT2Model(config)

    def __call__(self, input_ids: Tensor, past_keys: Tensor, past_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns logits [batch, vocab_size] of the last new token, keys, values."""
        hidden_states, keys, values = self.transformer(input_ids, past_keys, past_values)
        logits = self.lm_head(hidden_states[:, -1, :])  # [batch, vocab_size]
        return logits, keys, values


class KVCache:
    """Every layer's keys and values so far, in buffers of a fixed size."""

    def __init__(self, config: GPT2Config, batch_size: int, capacity: int):
        shape = (config.n_layer, batch_size, config.n_head, capacity, config.n_embd // config.n_head)
        self.keys = np.zeros(shape, dtype=np.float32)  # [n_layer, batch, n_head, capacity, head_dim]
        self.values = np.zeros(shape, dtype=np.float32)
        self.length = 0  # positions filled

    def append(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Write the new tokens' keys/values [n_layer, batch, n_head, seq, head_dim] after the cached ones."""
        seq_length = keys.shape[-2]
        self.keys[:, :, :, self.length : self.length + seq_length] = keys
        self.values[:, :, :, self.length : self.length + seq_length] = values
        self.length += seq_length


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
    check_generation_settings(max_new_tokens, temperature, do_sample, top_k, top_p)
    ids = as_token_array(input_ids, model)
    batch_size, prompt_length = ids.shape
    if prompt_length + max_new_tokens > model.config.n_positions:
        raise ValueError(
            f"{prompt_length} prompt tokens + {max_new_tokens} new tokens > n_positions={model.config.n_positions}"
        )
    rng = np.random.default_rng(seed)
    cache = KVCache(model.config, batch_size, capacity=prompt_length + max_new_tokens)
    finished = np.zeros(batch_size, dtype=bool)
    new_ids = ids  # prefill: the whole prompt
    for _ in range(max_new_tokens):
        logits, keys, values = model(new_ids, cache)
        cache.append(keys, values)
        next_token = choose_next_token(logits, temperature, do_sample, top_k=top_k, top_p=top_p, rng=rng)
        next_token, finished = pad_finished(next_token, finished, eos_token_id)
        ids = np.concatenate([ids, next_token[:, None]], axis=1)
        if finished.all():
            break
        new_ids = next_token[:, None]  # decode: one new token per sequence
    return ids
