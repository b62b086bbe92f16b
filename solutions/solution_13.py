"""
Solution for Step 13: Top-k and top-p (nucleus) sampling

Sampling from the whole distribution now and then picks a token from the
long tail of unlikely ones, and one bad token derails the text. Top-k keeps
only the k most likely tokens; top-p keeps the smallest set of most likely
tokens whose probabilities add up to p. Both set the other logits to -inf,
so softmax gives them probability 0. HuggingFace applies temperature first,
then top-k, then top-p; so does warp_logits. generate_tokens also stops a
sequence at the end-of-text token.
"""

from typing import Any

import numpy as np
from max.experimental.tensor import Tensor

from solutions.solution_12 import as_token_array, softmax_with_temperature


def top_k_filter(logits: np.ndarray, top_k: int) -> np.ndarray:
    """Keep the top_k largest logits of each row, and any tied with the k-th; -inf elsewhere."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    logits = np.asarray(logits, dtype=np.float64)
    k = min(top_k, logits.shape[-1])
    kth_largest = np.sort(logits, axis=-1)[..., -k, None]  # [batch, 1]
    return np.where(logits < kth_largest, -np.inf, logits)


def top_p_filter(logits: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the most likely tokens until their probabilities add up to top_p; -inf elsewhere.

    HuggingFace's rule: sort each row ascending, add up the probabilities
    from the least likely, and drop every token whose running sum is still
    <= 1 - top_p. The token that crosses the line stays, and so does the most
    likely token, always.
    """
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    logits = np.asarray(logits, dtype=np.float64)
    order = np.argsort(logits, axis=-1, kind="stable")  # ascending, ties in index order
    sorted_probs = softmax_with_temperature(np.take_along_axis(logits, order, axis=-1), 1.0)
    cumulative = np.cumsum(sorted_probs, axis=-1)
    drop_sorted = cumulative <= 1 - top_p
    drop_sorted[..., -1] = False  # keep at least the most likely token
    drop = np.empty_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)  # back to vocabulary order
    return np.where(drop, -np.inf, logits)


def warp_logits(
    logits: np.ndarray,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> np.ndarray:
    """Temperature, then top-k, then top-p, as HuggingFace applies them."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scores = np.asarray(logits, dtype=np.float64) / temperature
    if top_k is not None:
        scores = top_k_filter(scores, top_k)
    if top_p is not None:
        scores = top_p_filter(scores, top_p)
    return scores


def check_generation_settings(
    max_new_tokens: int, temperature: float, do_sample: bool, top_k: int | None, top_p: float | None
) -> None:
    """Refuse bad settings with a ValueError before the model runs (given)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if do_sample:
        warp_logits(np.zeros((1, 1)), temperature, top_k, top_p)  # checks temperature, top_k, top_p


def choose_next_token(
    next_logits: np.ndarray,
    temperature: float = 1.0,
    do_sample: bool = True,
    *,
    top_k: int | None = None,
    top_p: float | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One token per row of next_logits [batch, vocab]: argmax, or a draw from the warped distribution."""
    if not do_sample:
        return np.argmax(next_logits, axis=-1).astype(np.int64)
    probs = softmax_with_temperature(warp_logits(next_logits, temperature, top_k, top_p), 1.0)
    rng = rng if rng is not None else np.random.default_rng()
    return np.array([rng.choice(len(p), p=p) for p in probs], dtype=np.int64)


def generate_next_token(
    model,
    input_ids: Any,
    temperature: float = 1.0,
    do_sample: bool = True,
    *,
    top_k: int | None = None,
    top_p: float | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Choose the next token of each sequence from the model's last-position logits."""
    ids = as_token_array(input_ids, model)
    logits = np.from_dlpack(model(Tensor.from_dlpack(ids)))
    return choose_next_token(logits[:, -1, :], temperature, do_sample, top_k=top_k, top_p=top_p, rng=rng)


def pad_finished(next_token: np.ndarray, finished: np.ndarray, eos_token_id: int | None):
    """Finished sequences get eos_token_id as padding; a sequence that produces
    it is finished from now on. Returns (tokens, finished)."""
    if eos_token_id is None:
        return next_token, finished
    next_token = np.where(finished, eos_token_id, next_token)
    return next_token, finished | (next_token == eos_token_id)


def generate_tokens(
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
    """Extend input_ids by up to max_new_tokens tokens.

    A sequence that produces eos_token_id is finished: it gets eos_token_id
    as padding while the others go on, and generation stops when every
    sequence is finished (HuggingFace's generate() does the same with
    pad_token_id = eos_token_id, GPT-2's convention).

    Returns:
        [batch, seq + n] int64 array, n <= max_new_tokens.
    """
    check_generation_settings(max_new_tokens, temperature, do_sample, top_k, top_p)
    ids = as_token_array(input_ids, model)
    rng = np.random.default_rng(seed)
    finished = np.zeros(len(ids), dtype=bool)
    for _ in range(max_new_tokens):
        next_token = generate_next_token(model, ids, temperature, do_sample, top_k=top_k, top_p=top_p, rng=rng)
        next_token, finished = pad_finished(next_token, finished, eos_token_id)
        ids = np.concatenate([ids, next_token[:, None]], axis=1)
        if finished.all():
            break
    return ids
