"""Lesson 15's batched cache behind MAX's pipeline: one slot per request.

MAX hands the model a batch of requests at every step. The first time a
request is seen, it takes a free slot of the cache and its prompt runs
through the model alone (prefill); after that its newest token joins the
other requests' in ONE model call per step (decode), so all of them share
one read of the weights. When MAX releases the request (finished,
cancelled because the client went away, or put back in the queue), its
slot is freed for the next one. Both kinds of call go through lesson 15's
run_rows, as generate.py's and bench.py's loop does.
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
    """

    request_id: Hashable
    tokens: np.ndarray
    start: int


class BatchedRunner:
    """compiled: tools/kv_engine.py's compile_batched_model, (input_ids, cache, rows) ->
    (logits, keys, values); cache: lesson 15's BatchedKVCache, one slot per request
    MAX may run at once; run_rows: lesson 15's (model, cache, ids, rows) -> logits."""

    def __init__(self, compiled: Callable, cache: Any, run_rows: Callable):
        self.compiled, self.cache, self.run_rows = compiled, cache, run_rows
        self.slots: dict[Hashable, int] = {}  # request id -> its slot
        self.largest_batch = 0  # the most rows one model call ran (for the tests' trace)

    def next_token_logits(self, steps: list[SequenceStep]) -> np.ndarray:
        """The logits [len(steps), vocab] of the token after each step's tokens."""
        out: list[np.ndarray | None] = [None] * len(steps)
        decode: list[int] = []  # steps with one new token: one call for all of them
        for i, step in enumerate(steps):
            slot = self.slots.get(step.request_id)
            if slot is not None and self.cache.lengths[slot] != step.start:  # restarted by MAX
                self.release(step.request_id)
                slot = None
            if slot is None:
                slot = self.slots[step.request_id] = self.cache.take()
            if len(step.tokens) - self.cache.lengths[slot] == 1:
                decode.append(i)
            else:  # a prefill (or a piece of a prompt MAX split): alone, into its slot
                out[i] = self._run([self._new_tokens(step)], [slot])[0]
        if decode:
            rows = [self.slots[steps[i].request_id] for i in decode]
            for i, logits in zip(decode, self._run([self._new_tokens(steps[i]) for i in decode], rows)):
                out[i] = logits
        return np.stack(out)

    def _new_tokens(self, step: SequenceStep) -> np.ndarray:
        return step.tokens[self.cache.lengths[self.slots[step.request_id]] :]

    def _run(self, new_tokens: list[np.ndarray], rows: list[int]) -> np.ndarray:
        self.largest_batch = max(self.largest_batch, len(rows))
        return self.run_rows(self.compiled, self.cache, np.stack(new_tokens).astype(np.int64), rows)

    def release(self, request_id: Hashable) -> None:
        slot = self.slots.pop(request_id, None)
        if slot is not None:
            self.cache.free(slot)
