"""Step 13: top-k and top-p (nucleus) filtering against HuggingFace's own
TopKLogitsWarper, TopPLogitsWarper and TemperatureLogitsWarper on the same
logits; sampling against the warped distribution; stopping at end-of-text
against HuggingFace generate().

Ties: top-k keeps every logit equal to the k-th largest, as HuggingFace
does, so the kept tokens must be exactly the same. Top-p sorts with
torch.sort, which does not keep equal logits in index order: when equal
logits straddle the top-p cut, which of them HuggingFace keeps is an
accident of that sort. There the check asks for the same number of them;
equal logits have equal probabilities, so the distribution is the same.
"""

import inspect

import numpy as np
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from tests.loading import LessonFailure, fail
from tests.loops import (SAMPLING, Spy, check_loop, check_settings, end_of_text_for_the_test, logits_problem,
                         stand_in_prompt, stand_in_table)
from tests.parity import compile_lm, fits
from tests.twins import CONFIGS, Case, FixedLogits, hf_generate, lm_twins

STEP = 13
SMALL = Case("n_embd=64, n_head=4", CONFIGS["n_embd=64, n_head=4"])


def huggingface(warpers, logits: np.ndarray) -> np.ndarray:
    """HuggingFace's warpers applied to float64 logits (the lesson works in float64)."""
    with torch.no_grad():
        return LogitsProcessorList(warpers)(None, torch.from_numpy(np.asarray(logits, np.float64))).numpy()


def softmax(x: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(x, np.float64)), dim=-1).numpy()


def logits_rows(seed: int, rows: int, vocab: int, scale: float = 2.0, ties: bool = False) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0, scale, size=(rows, vocab))
    return np.round(x) if ties else x


# --- what known mistakes keep ---------------------------------------------------


def keep(logits, mask):
    return np.where(mask, logits, -np.inf)


def top_k_mistakes(x, k):
    k = min(k, x.shape[-1])
    descending = np.sort(x, axis=-1)[:, ::-1]

    def at_least(n):  # every logit >= the n-th largest
        return keep(x, x >= descending[:, n - 1 : n]) if 1 <= n <= x.shape[-1] else None

    exactly_k = np.zeros(x.shape, bool)
    np.put_along_axis(exactly_k, np.argsort(-x, axis=-1, kind="stable")[:, :k], True, axis=-1)
    return {
        "top_k is off by one: keep the k largest logits, compare with the k-th largest (sorted[..., -k]).":
            [at_least(k + 1), at_least(k - 1)],
        "the k smallest logits are kept: np.sort sorts ascending, so the k-th largest is sorted[..., -k].":
            [keep(x, x <= np.sort(x, axis=-1)[:, k - 1 : k])],
        "ties at the cut are dropped: HuggingFace keeps every logit equal to the k-th largest; compare "
        "each logit with that value instead of keeping exactly k indices.": [keep(x, exactly_k)],
    }


def top_p_mistakes(x, p):
    probs = softmax(x)
    order = np.argsort(-x, axis=-1, kind="stable")  # most likely first
    desc = np.take_along_axis(probs, order, axis=-1)
    asc = np.sort(probs, axis=-1)
    in_vocab_order = np.cumsum(probs, axis=-1)

    def unsort(mask_sorted, sorting):
        mask = np.empty_like(mask_sorted)
        np.put_along_axis(mask, sorting, mask_sorted, axis=-1)
        return mask

    crossing_dropped = np.cumsum(desc, axis=-1) <= p
    crossing_dropped[:, 0] = True
    least_likely = np.cumsum(asc, axis=-1) - asc < p  # "keep until the sum reaches p", ascending
    most_likely_dropped = np.cumsum(desc, axis=-1) > 1 - p  # HuggingFace's rule on a descending sort
    most_likely_dropped[:, -1] = True
    ascending = np.argsort(x, axis=-1, kind="stable")
    running = np.cumsum(np.take_along_axis(probs, ascending, axis=-1), axis=-1)
    strict, rule = running < 1 - p, running <= 1 - p  # drop marks in ascending order
    strict[:, -1] = rule[:, -1] = False
    return {
        "every token is dropped: always keep the most likely one (HuggingFace's one-token minimum).":
            [np.full(x.shape, -np.inf)],
        "the token whose running sum crosses top_p is dropped: HuggingFace keeps it (it drops a token "
        "only when the ascending running sum up to it is <= 1 - top_p).": [keep(x, unsort(crossing_dropped, order))],
        "the least likely tokens are kept: sort ascending and DROP the tokens whose running sum is "
        "<= 1 - top_p (or sort descending and keep tokens until the sum reaches top_p).":
            [keep(x, unsort(least_likely, np.argsort(x, axis=-1, kind="stable"))),
             keep(x, unsort(most_likely_dropped, order))],
        "the running sum is taken in vocabulary order: sort the probabilities first "
        "(order = np.argsort(logits, axis=-1)).":
            [keep(x, in_vocab_order > 1 - p), keep(x, in_vocab_order - probs < p)],
        "no token is dropped: take softmax of the sorted logits, a running sum, and drop where it is "
        "<= 1 - top_p.": [x] if p < 1 else [],
        "a token whose running sum is exactly 1 - top_p is kept: HuggingFace drops it (<=, not <).":
            [keep(x, ~unsort(strict, ascending))],
        "the drop marks are not put back into vocabulary order: np.put_along_axis(drop, order, drop_sorted, "
        "axis=-1) undoes the sort (np.take_along_axis applies it again).":
            [keep(x, ~rule), keep(x, ~np.take_along_axis(rule, ascending, axis=-1))],
    }


def same_kept(ours: np.ndarray, reference: np.ndarray) -> bool:
    """Same logits kept in every row, counting equal logits as interchangeable,
    and the kept ones unchanged."""
    if ours.shape != reference.shape:
        return False
    for mine, theirs in zip(ours, reference):
        if not np.array_equal(np.sort(mine[np.isfinite(mine)]), np.sort(theirs[np.isfinite(theirs)])):
            return False
    return True


def compare_filtered(lesson, what: str, ours, reference, mistakes: dict) -> None:
    ours = np.asarray(ours, dtype=np.float64)
    if same_kept(ours, reference):
        return
    if ours.shape != reference.shape:
        fail(f"{what} returned shape {list(ours.shape)}; the logits have shape {list(reference.shape)}: keep the shape.")
    row = next(i for i in range(len(ours)) if not same_kept(ours[i : i + 1], reference[i : i + 1]))
    cause = next(
        (f"\nLikely cause: {hint}" for hint, candidates in mistakes.items()
         if any(c is not None and same_kept(ours, c) for c in candidates)),
        "",
    )
    fail(
        f"{what} does not keep the tokens HuggingFace keeps (row {row}).\n"
        f"  yours keeps       {np.flatnonzero(np.isfinite(ours[row])).tolist()}\n"
        f"  HuggingFace keeps {np.flatnonzero(np.isfinite(reference[row])).tolist()}{cause}"
    )


# --- filtering ----------------------------------------------------------------------

TOP_K_CASES = {
    "random logits, top_k=5": (logits_rows(1, 4, 30), 5),
    "random logits, top_k=1": (logits_rows(2, 4, 30), 1),
    "logits with ties at the cut, top_k=4": (logits_rows(3, 6, 30, ties=True), 4),
    "top_k larger than the vocabulary (top_k=50, 12 tokens)": (logits_rows(4, 3, 12), 50),
    "top_k equal to the vocabulary": (logits_rows(5, 3, 12), 12),
}

TOP_P_CASES = {
    "random logits, top_p=0.9": (logits_rows(6, 4, 30), 0.9),
    "random logits, top_p=0.5": (logits_rows(7, 4, 30), 0.5),
    "one dominant token, top_p=0.3": (np.array([[5.0, 0.0, 0.0, -1.0, 0.5, 1.0]]), 0.3),
    "equal logits straddling the cut, top_p=0.5": (np.zeros((2, 8)), 0.5),
    "logits with ties, top_p=0.75": (logits_rows(8, 6, 20, ties=True), 0.75),
    "top_p=1.0 keeps every token": (logits_rows(9, 3, 16), 1.0),
    "a top_p so small that only the one-token minimum is left": (logits_rows(10, 3, 16), 1e-300),
}


def test_top_k_matches_huggingface(lesson):
    top_k_filter = lesson.get("top_k_filter")
    for label, (x, k) in TOP_K_CASES.items():
        what = f"top_k_filter(logits, {k}) [{label}]"
        try:
            ours = lesson.call(what, top_k_filter, x.copy(), k)
        except LessonFailure as failure:
            if k <= x.shape[-1] or "IndexError" not in str(failure):
                raise
            fail(f"{failure}\nLikely cause: a top_k larger than the vocabulary keeps every token: "
                 "k = min(top_k, logits.shape[-1]).")
        compare_filtered(lesson, what, ours, huggingface([TopKLogitsWarper(k)], x), top_k_mistakes(x, k))


def test_top_p_matches_huggingface(lesson):
    top_p_filter = lesson.get("top_p_filter")
    for label, (x, p) in TOP_P_CASES.items():
        what = f"top_p_filter(logits, {p:g}) [{label}]"
        ours = lesson.call(what, top_p_filter, x.copy(), p)
        compare_filtered(lesson, what, ours, huggingface([TopPLogitsWarper(p)], x), top_p_mistakes(x, p))


def warp_mistakes(x, t, k, p):
    temperature, top_k, top_p = TemperatureLogitsWarper(t), TopKLogitsWarper(k), TopPLogitsWarper(p)
    return {
        "top-p is applied before the temperature: divide by T first, then top-k, then top-p "
        "(HuggingFace's order).": [huggingface([top_k, top_p, temperature], x), huggingface([top_p, top_k, temperature], x)],
        "top-p runs before top-k: HuggingFace applies temperature, then top-k, then top-p.":
            [huggingface([temperature, top_p, top_k], x)],
        "the temperature is ignored: divide the logits by it first.": [huggingface([top_k, top_p], x)],
    }


def test_warp_logits_applies_temperature_then_top_k_then_top_p(lesson):
    warp_logits = lesson.get("warp_logits")
    x = logits_rows(11, 5, 40, scale=1.5)
    for t, k, p in [(0.5, 10, 0.6), (2.0, 12, 0.5), (1.0, 3, 0.9)]:
        what = f"warp_logits(logits, temperature={t}, top_k={k}, top_p={p})"
        ours = lesson.call(what, warp_logits, x.copy(), t, k, p)
        reference = huggingface([TemperatureLogitsWarper(t), TopKLogitsWarper(k), TopPLogitsWarper(p)], x)
        compare_filtered(lesson, what, ours, reference, warp_mistakes(x, t, k, p))


# --- sampling -------------------------------------------------------------------------


def test_generate_next_token_passes_its_settings_on(lesson):
    """generate_next_token on a stand-in model, its choose_next_token call
    watched: the last position's logits, every setting, the generator given."""
    from solutions.solution_13 import choose_next_token

    generate_next_token = lesson.get("generate_next_token")
    table, ids = stand_in_table(), stand_in_prompt()
    rng = np.random.default_rng(2)
    doing = "generate_next_token(model, ids, temperature=1.3, top_k=20, top_p=0.9, rng=rng) on stand-in logits"
    with Spy(lesson, "choose_next_token", choose_next_token, "generate_next_token") as spy:
        lesson.call(doing, generate_next_token, FixedLogits(table), ids, 1.3, True, top_k=20, top_p=0.9, rng=rng)
    if len(spy.calls) != 1:
        fail(f"{doing} called choose_next_token {len(spy.calls)} times: once, with the last position's logits.")
    problem = logits_problem(0, spy.calls[0], ids, table)
    if problem:
        fail(f"{doing}: choose_next_token {problem}")
    defaults = {k: v.default for k, v in inspect.signature(choose_next_token).parameters.items()}
    check_settings(spy.calls, SAMPLING, "generate_next_token", "choose_next_token", defaults)
    if spy.calls[0].rng is not rng:
        fail(f"{doing} passed choose_next_token {'no generator' if spy.calls[0].rng is None else 'another generator'}"
             ", not the rng it was given.\nLikely cause: the generator is not passed on: pass rng=rng.")

DRAWS = 20000
SETTINGS = [(0.7, 5, None), (1.3, None, 0.8), (1.0, 8, 0.9)]


def test_sampling_follows_the_warped_distribution(lesson):
    """Draw many next tokens from known logits in one call (one row per
    draw); the frequencies must fit softmax of HuggingFace's warped logits
    (a chi-square test that a correct sampler fails once in a million)."""
    generate_next_token = lesson.get("generate_next_token")
    logits = np.random.default_rng(13).normal(0, 1.5, size=(1, 3, 12))
    model = FixedLogits(np.repeat(logits, DRAWS, axis=0))
    ids = np.zeros((DRAWS, 3), np.int64)
    last = logits[:, -1]
    for t, k, p in SETTINGS:
        doing = f"generate_next_token(model, ids, temperature={t}, top_k={k}, top_p={p})"
        tokens = lesson.call(doing, generate_next_token, model, ids, t, True, top_k=k, top_p=p, rng=np.random.default_rng(1))
        tokens = np.asarray(tokens).reshape(-1)
        warpers = [TemperatureLogitsWarper(t)] + ([TopKLogitsWarper(k)] if k else []) + ([TopPLogitsWarper(p)] if p else [])
        expected = softmax(huggingface(warpers, last))[0]
        if tokens.shape == (DRAWS,) and fits(tokens, expected):
            continue
        if tokens.shape != (DRAWS,):
            fail(f"{doing} returned {tokens.size} tokens for a batch of {DRAWS}: one per row.")
        removed = sorted(set(np.unique(tokens).tolist()) & set(np.flatnonzero(expected == 0).tolist()))
        unwarped = softmax(last / t)[0]
        cause = ""
        if fits(tokens, unwarped):
            cause = "\nLikely cause: top_k and top_p are not used: sample from softmax(warp_logits(logits, T, top_k, top_p))."
        elif fits(tokens, softmax(huggingface(warpers, last) / t)[0]):
            cause = ("\nLikely cause: the temperature is applied twice: warp_logits already divides by it, so take "
                     "softmax_with_temperature(warped, 1.0).")
        elif removed:
            cause = f"\nIt drew tokens {removed}, which top-k / top-p removed: sample from softmax(warp_logits(...))."
        frequencies = np.bincount(tokens, minlength=12)[:12] / DRAWS
        fail(
            f"{doing}: the draws do not follow HuggingFace's warped distribution.\n"
            f"  frequencies over {DRAWS} draws: {np.round(frequencies, 3).tolist()}\n"
            f"  warped distribution:           {np.round(expected, 3).tolist()}{cause}"
        )


def test_generation_loop_passes_its_settings_and_one_generator(lesson):
    """generate_tokens on stand-in logits, each choose_next_token call
    watched: the right logits, every setting, ONE generator made by
    np.random.default_rng(seed), and end-of-text as HuggingFace handles it."""
    from solutions.solution_13 import choose_next_token

    generate_tokens = lesson.get("generate_tokens")
    table = stand_in_table()

    def run(doing, prompt, n, temperature, do_sample, **options):
        return lesson.call(doing, generate_tokens, FixedLogits(table), prompt, n, temperature, do_sample, **options)

    def step(ids, rng, settings):
        return choose_next_token(table[: len(ids), ids.shape[1] - 1], **settings, rng=rng)

    check_loop(lesson, "choose_next_token", choose_next_token, caller="generate_tokens", run=run, step=step,
               inputs=lambda index, call, ids: logits_problem(index, call, ids, table))


def test_sampling_is_reproducible_with_a_seed(lesson):
    generate_tokens = lesson.get("generate_tokens")
    _, ours = lm_twins(SMALL, seed=13)
    model = compile_lm(lesson, ours)
    prompt = np.random.default_rng(6).integers(0, SMALL.max.vocab_size, (2, 4))
    runs = [
        np.asarray(lesson.call(f"generate_tokens(model, prompt, 12, temperature=1.5, top_k=50, top_p=0.95, seed={seed})",
                               generate_tokens, model, prompt, 12, 1.5, True, top_k=50, top_p=0.95, seed=seed))
        for seed in (7, 7, 8)
    ]
    if not np.array_equal(runs[0], runs[1]):
        x, choose = logits_rows(16, 50, 30), lesson.get("choose_next_token")
        with lesson.learner_code("choose_next_token(logits, rng=np.random.default_rng(3)), twice"):
            same = [np.asarray(choose(x, 1.0, True, rng=np.random.default_rng(3))) for _ in range(2)]
        cause = ("" if np.array_equal(*same) else "\nLikely cause: choose_next_token does not draw with the rng it is "
                 "given: use rng, and a fresh np.random.default_rng() only when rng is None.")
        fail("two runs with seed=7 gave different tokens: make one np.random.default_rng(seed) and use it for every draw." + cause)
    if np.array_equal(runs[0], runs[2]):
        fail("seed=7 and seed=8 gave the same sampled tokens: the seed is not used for sampling.")


# --- stopping at end-of-text -------------------------------------------------------------


def test_generation_stops_at_end_of_text_like_huggingface(lesson):
    generate_tokens = lesson.get("generate_tokens")
    hf, ours = lm_twins(SMALL, seed=13)
    model = compile_lm(lesson, ours)
    prompt = np.random.default_rng(14).integers(0, SMALL.max.vocab_size, (2, 5))
    free = hf_generate(hf, prompt, 16, do_sample=False)
    eos = end_of_text_for_the_test(free, prompt.shape[1])
    for rows in (slice(0, 1), slice(0, 2)):
        p = prompt[rows]
        expected = hf_generate(hf, p, 16, do_sample=False, eos_token_id=eos, pad_token_id=eos)
        doing = f"generate_tokens(model, prompt, 16, do_sample=False, eos_token_id={eos})"
        tokens = np.asarray(lesson.call(doing, generate_tokens, model, p, 16, 1.0, False, eos_token_id=eos))
        if np.array_equal(tokens, expected):
            continue
        hint = ""
        if tokens.shape[1] > expected.shape[1]:
            hint = "\nLikely cause: generation goes on after every sequence has produced eos_token_id: stop then."
        elif tokens.shape == expected.shape:
            hint = ("\nLikely cause: a finished sequence goes on with real tokens: after eos_token_id it "
                    "gets eos_token_id as padding until the others finish.")
        fail(
            f"{doing} for {len(p)} sequence(s) differs from HuggingFace generate(eos_token_id={eos}, "
            f"pad_token_id={eos}):\n  yours       {tokens.tolist()}\n  HuggingFace {expected.tolist()}{hint}"
        )


def test_bad_settings_are_refused(lesson):
    warp_logits = lesson.get("warp_logits")
    x = logits_rows(15, 2, 10)
    for doing, call in {
        "warp_logits(logits, top_k=0)": lambda: warp_logits(x, 1.0, 0, None),
        "warp_logits(logits, top_p=0.0)": lambda: warp_logits(x, 1.0, None, 0.0),
        "warp_logits(logits, top_p=1.5)": lambda: warp_logits(x, 1.0, None, 1.5),
        "warp_logits(logits, temperature=0.0)": lambda: warp_logits(x, 0.0),
        "warp_logits(logits, temperature=nan)": lambda: warp_logits(x, float("nan")),
    }.items():
        try:
            lesson.expect_raises(ValueError, doing, call)
        except LessonFailure as failure:
            name = next((n for n in ("top_k", "top_p") if f"{n}=0" in doing), None)
            if name is None or "did not raise" not in str(failure):
                raise
            fail(f"{failure}\nLikely cause: `if {name}:` skips {name}=0 (0 is falsy): test `{name} is not None`, "
                 f"so that {name}_filter refuses it.")
