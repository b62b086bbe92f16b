"""
Solution for Step 15: Many sequences at once

A decode step reads every weight once, whether it serves one sequence or
eight. Give the cache one length per row, and the rows of one batch can
hold sequences of any lengths: a mask built from the lengths keeps each
row to its own tokens, and a finished row's slot takes the next prompt
while the others go on (continuous batching).
"""

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.graph import DimLike

from solutions.solution_01 import GPT2Config
from solutions.solution_02 import causal_mask
from solutions.solution_12 import as_token_array
from solutions.solution_13 import check_generation_settings, choose_next_token
from solutions.solution_14 import CachedGPT2LMHeadModel, CachedGPT2Model


def batched_causal_mask(lengths: Tensor, past_length: DimLike, num_tokens: DimLike, *, dtype, device) -> Tensor:
    """lengths [batch]: how many of the past_length cached positions each row holds.

    Returns the additive mask [batch, 1, num_tokens, past_length + num_tokens]:
    step 02's causal mask, plus -inf where a cached position is past the row's length.
    """
    causal = causal_mask(num_tokens, past_length, dtype=dtype, device=device)  # [seq, past+seq]
    keys = Tensor.arange(causal.shape[-1], dtype=lengths.dtype, device=device)  # [past+seq]
    unfilled = (F.unsqueeze(keys, 0) >= F.unsqueeze(lengths, 1)) & (F.unsqueeze(keys, 0) < past_length)  # [batch, past+seq]
    blocked = Tensor.constant(float("-inf"), dtype=dtype, device=device)
    allowed = Tensor.constant(0.0, dtype=dtype, device=device)
    padding = F.where(unfilled, blocked, allowed)  # [batch, past+seq]
    return causal + F.unsqueeze(F.unsqueeze(padding, 1), 1)  # [batch, 1, seq, past+seq]


class BatchedGPT2Model(CachedGPT2Model):
    """Lesson 14's cached model for rows that hold different numbers of tokens."""

    def __call__(self, input_ids: Tensor, past_keys: Tensor, past_values: Tensor, lengths: Tensor):
        """input_ids [batch, seq]; past_keys, past_values [n_layer, batch, n_head, past, head_dim];
        lengths [batch]: row b's cache holds its first lengths[b] positions.

        Returns hidden states [batch, seq, n_embd] and the new tokens' keys
        and values, [n_layer, batch, n_head, seq, head_dim] each.
        """
        past_length, seq_length = past_keys.shape[-2], input_ids.shape[-1]
        steps = Tensor.arange(seq_length, dtype=input_ids.dtype, device=input_ids.device)  # [seq]
        positions = F.unsqueeze(lengths, 1) + F.unsqueeze(steps, 0)  # [batch, seq]: each row from its own length
        hidden_states = self.wte(input_ids) + self.wpe(positions)  # [batch, seq, n_embd]
        mask = batched_causal_mask(lengths, past_length, seq_length, dtype=hidden_states.dtype, device=input_ids.device)
        keys, values = [], []
        for i, block in enumerate(self.h):
            hidden_states, key, value = block(hidden_states, past_keys[i], past_values[i], mask)
            keys.append(key)
            values.append(value)
        return self.ln_f(hidden_states), F.stack(keys), F.stack(values)


class BatchedGPT2LMHeadModel(CachedGPT2LMHeadModel):
    """GPT-2 over a cache with one length per row: next-token logits, new keys and values."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = BatchedGPT2Model(config)

    def __call__(self, input_ids: Tensor, past_keys: Tensor, past_values: Tensor, lengths: Tensor):
        """Returns logits [batch, vocab_size] of the last new token, keys, values."""
        hidden_states, keys, values = self.transformer(input_ids, past_keys, past_values, lengths)
        logits = self.lm_head(hidden_states[:, -1, :])  # [batch, vocab_size]
        return logits, keys, values


class BatchedKVCache:
    """Room for max_batch_size sequences (slots) of up to capacity tokens, one length per slot."""

    def __init__(self, config: GPT2Config, max_batch_size: int, capacity: int):
        shape = (config.n_layer, max_batch_size, config.n_head, capacity, config.n_embd // config.n_head)
        self.keys = np.zeros(shape, dtype=np.float32)  # [n_layer, slot, n_head, capacity, head_dim]
        self.values = np.zeros(shape, dtype=np.float32)
        self.lengths = np.zeros(max_batch_size, dtype=np.int64)  # positions filled, per slot
        self.in_use = np.zeros(max_batch_size, dtype=bool)

    def take(self) -> int:
        """A free slot, now in use and empty."""
        free = np.flatnonzero(~self.in_use)
        if free.size == 0:
            raise RuntimeError(f"all {self.in_use.size} slots of the cache are in use")
        slot = int(free[0])
        self.in_use[slot], self.lengths[slot] = True, 0
        return slot

    def free(self, slot: int) -> None:
        """The slot's sequence is done; its positions are never read again (the mask hides them)."""
        self.in_use[slot], self.lengths[slot] = False, 0

    def append(self, keys: np.ndarray, values: np.ndarray, rows: Sequence[int]) -> None:
        """keys/values [n_layer, len(rows), n_head, seq, head_dim]: row i's go to slot rows[i], after its own."""
        seq_length = keys.shape[-2]
        for i, slot in enumerate(rows):
            start = self.lengths[slot]
            self.keys[:, slot, :, start : start + seq_length] = keys[:, i]
            self.values[:, slot, :, start : start + seq_length] = values[:, i]
            self.lengths[slot] += seq_length


def run_rows(model, cache: BatchedKVCache, input_ids: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """One model call for the new tokens [len(rows), seq] of the given slots;
    their keys and values go into the cache. Returns logits [len(rows), vocab]."""
    logits, keys, values = model(input_ids, cache, rows)
    cache.append(keys, values, rows)
    return logits


def stream_batched(
    model,
    prompts: Sequence[Any],
    max_new_tokens: int = 10,
    temperature: float = 1.0,
    do_sample: bool = True,
    *,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    seed: int | None = None,
    max_batch_size: int = 8,
) -> Iterator[tuple[int, int]]:
    """Continuous batching: yields (prompt index, new token) as each token is chosen.

    model: a compiled batched model, (input_ids, cache, rows) -> (logits, keys, values).
    Prompt i draws from its own generator, np.random.default_rng(seed + i), so
    its tokens do not depend on the other prompts.
    """
    check_generation_settings(max_new_tokens, temperature, do_sample, top_k, top_p)
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    prompts = [as_token_array(np.reshape(prompt, (1, -1)), model)[0] for prompt in prompts]
    longest = max((len(prompt) for prompt in prompts), default=0)
    if longest + max_new_tokens > model.config.n_positions:
        raise ValueError(f"{longest} prompt tokens + {max_new_tokens} new tokens > n_positions={model.config.n_positions}")
    rngs = [np.random.default_rng(None if seed is None else seed + i) for i in range(len(prompts))]
    cache = BatchedKVCache(model.config, min(max_batch_size, max(len(prompts), 1)), capacity=longest + max_new_tokens)
    waiting = deque(range(len(prompts)))
    running: dict[int, int] = {}  # slot -> prompt index
    made = [0] * len(prompts)  # new tokens per prompt
    logits: dict[int, np.ndarray] = {}  # slot -> logits [vocab] of its next token
    while waiting or running:
        while waiting and not cache.in_use.all():  # a free slot: prefill the next prompt alone into it
            index = waiting.popleft()
            slot = cache.take()
            running[slot] = index
            logits[slot] = run_rows(model, cache, prompts[index][None, :], [slot])[0]
        chosen = {}  # slot -> its new token, for the rows that go on
        for slot, index in list(running.items()):
            token = int(choose_next_token(logits[slot][None, :], temperature, do_sample, top_k=top_k, top_p=top_p,
                                          rng=rngs[index])[0])
            made[index] += 1
            yield index, token
            if token == eos_token_id or made[index] == max_new_tokens:
                cache.free(slot)  # finished: the slot takes the next prompt
                del running[slot]
            else:
                chosen[slot] = token
        if chosen:  # one decode call for every row that goes on
            rows = sorted(chosen)
            new_tokens = np.array([[chosen[slot]] for slot in rows], dtype=np.int64)  # [rows, 1]
            logits = dict(zip(rows, run_rows(model, cache, new_tokens, rows)))


def generate_batched(model, prompts: Sequence[Any], max_new_tokens: int = 10, temperature: float = 1.0,
                     do_sample: bool = True, **options) -> list[np.ndarray]:
    """Each prompt followed by its new tokens (a list: the prompts may differ in length)."""
    outputs = [list(np.reshape(prompt, -1)) for prompt in prompts]
    for index, token in stream_batched(model, prompts, max_new_tokens, temperature, do_sample, **options):
        outputs[index].append(token)
    return [np.array(tokens, dtype=np.int64) for tokens in outputs]
