"""Lesson 14's KV cache behind MAX's pipeline: one cache per request.

MAX hands the model a batch of requests at every step. The first time a
request is seen, its cache is created (batch 1, room for the prompt and
every token it may still generate) and the prompt runs through the model
once (prefill); after that each step runs only the newest token (decode).
When MAX releases the request, its cache is dropped.

Requests of one batch run one engine call each: their caches hold
different numbers of tokens, and the compiled graph takes one cache length
per call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SequenceStep:
    """One request at one step.

    tokens: every token of the request so far (prompt and generated), int64;
        the runner returns the logits of the token after tokens[-1].
    start: how many of them MAX counts as processed already (0 for a new
        request, and 0 again when MAX's scheduler restarts a request).
    capacity: the most tokens the request can reach (prompt + max_tokens,
        at most the model's n_positions).
    """

    request_id: Hashable
    tokens: np.ndarray
    start: int
    capacity: int


class KVCacheRunner:
    """compiled: (input_ids [1, seq], cache) -> (logits [1, vocab], keys, values), as
    tools/kv_engine.py's compile_cached_model returns; new_cache(capacity): an
    empty KVCache of batch 1 (lesson 14's)."""

    def __init__(self, compiled: Callable, new_cache: Callable[[int], Any]):
        self.compiled = compiled
        self.new_cache = new_cache
        self.caches: dict[Hashable, Any] = {}

    def next_token_logits(self, step: SequenceStep) -> np.ndarray:
        """The logits [vocab] of the token after step.tokens."""
        cache = self.caches.get(step.request_id)
        if cache is None or cache.length != step.start:  # new, or restarted by MAX
            cache = self.caches[step.request_id] = self.new_cache(step.capacity)
        new_tokens = step.tokens[cache.length :]  # the prompt at prefill, then one token
        logits, keys, values = self.compiled(new_tokens[None, :], cache)
        cache.append(keys, values)
        return logits[0]

    def release(self, request_id: Hashable) -> None:
        self.caches.pop(request_id, None)
