"""How far a model's next-token distributions are from a reference's on the
same tokens: lesson 17's check and bench.py's quantized formats measure
with these.

    logits = logits_along(compiled, cache, path, prompt_tokens)  # lesson 15's engine, teacher-forced
    kl = next_token_kl(reference_logits, logits)                  # nats, per step
    agreement = greedy_agreement(reference_logits, logits)        # share of steps with the same argmax
"""

from __future__ import annotations

from typing import Any

import numpy as np


def next_token_kl(reference_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """KL(reference || other) of the softmax distributions, per row, in nats (float64)."""

    def log_softmax(a):
        a = a.astype(np.float64) - a.max(-1, keepdims=True)
        return a - np.log(np.exp(a).sum(-1, keepdims=True))

    p, q = log_softmax(reference_logits), log_softmax(logits)
    return (np.exp(p) * (p - q)).sum(-1)


def greedy_agreement(reference_logits: np.ndarray, logits: np.ndarray) -> float:
    """The share of rows whose most likely token is the reference's."""
    return float(np.mean(np.argmax(logits, -1) == np.argmax(reference_logits, -1)))


def logits_along(compiled: Any, cache: Any, path: np.ndarray, prompt_tokens: int) -> np.ndarray:
    """Lesson 15's engine fed path [1, prompt_tokens + steps] token by token in one
    slot of cache: a prefill of the prompt, then one decode step per further token
    but the last. The logits of each step, [steps, vocab]: row i predicts path[0, prompt_tokens + i]."""
    slot, rows = cache.take(), []
    ends = range(prompt_tokens, path.shape[1])
    for start, end in zip([0, *ends], ends):
        logits, keys, values = compiled(path[:, start:end], cache, [slot])
        cache.append(keys, values, [slot])
        rows.append(logits[0])
    cache.free(slot)
    return np.stack(rows)
