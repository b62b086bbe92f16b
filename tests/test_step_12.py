"""Step 12: weight loading, temperature, sampling and greedy generation,
against torch's softmax, transformers' GPT2LMHeadModel and its generate()."""

import numpy as np
import torch
from max.experimental.tensor import Tensor
from transformers import GPT2LMHeadModel

from solutions.solution_11 import MaxGPT2LMHeadModel
from tests.loading import fail
from tests.loops import check_loop, stand_in_table
from tests.parity import assert_close, compile_lm, fits
from tests.twins import CONFIGS, Case, FixedLogits, hf_generate, lm_twins, max_state_from_hf, randomize_, torch_run

STEP = 12
SMALL = Case("n_embd=64, n_head=4", CONFIGS["n_embd=64, n_head=4"])
FULL = Case("gpt2 (defaults)", CONFIGS["gpt2 (defaults)"])


def softmax(x, axis=-1):
    return torch.softmax(torch.from_numpy(np.asarray(x, dtype=np.float64)), dim=axis).numpy()


# --- temperature -------------------------------------------------------------

TEMPERATURES = [0.5, 1.0, 2.0]


def temperature_mistakes(logits, t):
    def without_max(x):
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(np.asarray(x, dtype=np.float64))
            return e / e.sum(axis=-1, keepdims=True)

    return {
        "the temperature is applied after softmax: divide the logits by T, then softmax.":
            lambda: softmax(logits) / t,
        "the logits are multiplied by T: divide them by T.": lambda: softmax(logits * t),
        "the temperature is ignored: softmax(logits / temperature).": lambda: softmax(logits),
        "softmax runs over the wrong axis: normalize over the vocabulary (the last axis).":
            lambda: softmax(logits / t, axis=0),
        "np.exp overflowed: subtract each row's maximum before np.exp (it does not change the "
        "softmax, and exp of a large logit is inf).": lambda: without_max(np.asarray(logits) / t),
    }


def test_softmax_with_temperature(lesson):
    f = lesson.get("softmax_with_temperature")
    logits = np.random.default_rng(12).normal(0, 3, size=(3, 11)).astype(np.float32)
    huge = np.array([[1000.0, 999.0, 0.0]])
    for x, t in [(logits, t) for t in TEMPERATURES] + [(huge, 1.0)]:
        doing = f"softmax_with_temperature({'[[1000, 999, 0]]' if x is huge else 'logits'}, {t})"
        probs = lesson.call(doing, f, x, t)
        assert_close(doing, np.asarray(probs), softmax(x / t), ("row", "token"), temperature_mistakes(x, t),
                     reference="torch.softmax")
    for bad in (0.0, -1.0):
        lesson.expect_raises(ValueError, f"softmax_with_temperature(logits, {bad})", lambda: f(logits, bad))


# --- choosing the next token -------------------------------------------------

DRAWS = 4000


def test_sampling_follows_softmax_of_logits_over_temperature(lesson):
    """Draw many next tokens from known logits in one call (one row per
    draw); the frequencies must fit softmax(last position's logits / T)."""
    generate_next_token = lesson.get("generate_next_token")
    logits = np.random.default_rng(21).normal(0, 1.5, size=(1, 4, 6))
    model = FixedLogits(np.repeat(logits, DRAWS, axis=0))
    ids = np.zeros((DRAWS, 4), np.int64)
    for t in (0.5, 2.0):
        doing = f"generate_next_token(model, ids, temperature={t})"
        tokens = lesson.call(doing, generate_next_token, model, ids, t, True, rng=np.random.default_rng(5))
        tokens = np.asarray(tokens).reshape(-1)
        if tokens.shape != (DRAWS,):
            fail(f"generate_next_token returned {tokens.size} tokens for a batch of {DRAWS}: one per row.")
        expected = softmax(logits[0, -1] / t)
        if fits(tokens, expected):
            continue
        candidates = {
            "the temperature is ignored or applied after softmax: sample from softmax(logits / T).":
                softmax(logits[0, -1]),
            "the logits are multiplied by T: divide them by T.": softmax(logits[0, -1] * t),
            "the first position's logits are used: take the last one, logits[:, -1, :].":
                softmax(logits[0, 0] / t),
        }
        cause = next((f"\nLikely cause: {hint}" for hint, p in candidates.items() if fits(tokens, p)), "")
        frequencies = np.bincount(tokens, minlength=6)[:6] / len(tokens)
        fail(
            f"sampling at temperature {t} does not follow softmax(logits / T).\n"
            f"  frequencies over {DRAWS} draws: {np.round(frequencies, 3).tolist()}\n"
            f"  softmax(logits / T):          {np.round(expected, 3).tolist()}{cause}"
        )


def test_greedy_picks_the_last_positions_argmax(lesson):
    generate_next_token = lesson.get("generate_next_token")
    logits = np.random.default_rng(22).normal(0, 1, size=(2, 5, 9))
    doing = "generate_next_token(model, ids, do_sample=False)"
    chosen = lesson.call(doing, generate_next_token, FixedLogits(logits), np.zeros((2, 5), np.int64), 1.0, False)
    expected = logits[:, -1].argmax(-1)
    chosen = np.asarray(chosen).reshape(-1)
    if np.array_equal(chosen, expected):
        return
    hint = ""
    if np.array_equal(chosen, logits[:, 0].argmax(-1)):
        hint = "\nLikely cause: the first position's logits are used: take logits[:, -1, :]."
    elif np.array_equal(chosen, [logits[:, -1].argmax()]):
        hint = (
            "\nLikely cause: np.argmax without an axis returns one index into the flattened array: "
            "use np.argmax(next_logits, axis=-1), one token per row."
        )
    fail(f"greedy choice is {chosen.tolist()}, the argmax of the last position of each row is {expected.tolist()}.{hint}")


def test_sampling_without_a_generator_is_random(lesson):
    """Called without rng, generate_next_token must draw fresh random tokens."""
    generate_next_token = lesson.get("generate_next_token")
    model = FixedLogits(np.zeros((8, 1, 1000)))  # uniform over 1000 tokens, 8 rows
    ids = np.zeros((8, 1), np.int64)
    draws = [
        np.asarray(lesson.call("generate_next_token(model, ids) without rng", generate_next_token, model, ids))
        for _ in range(4)
    ]
    if all(np.array_equal(draws[0], d) for d in draws[1:]):
        fail(
            "4 calls of generate_next_token without rng drew the same 8 tokens each time "
            f"({draws[0].tolist()}), from a uniform choice among 1000.\n"
            "Likely cause: the default generator is seeded (e.g. np.random.default_rng(0)): "
            "without rng, use a fresh np.random.default_rng() with no seed."
        )


def test_generation_loop_passes_its_settings_and_one_generator(lesson):
    """generate_tokens on stand-in logits, each generate_next_token call
    watched: the tokens so far, the temperature and do_sample as given, ONE
    generator made by np.random.default_rng(seed), a fresh one without a seed."""
    from solutions.solution_12 import generate_next_token

    generate_tokens = lesson.get("generate_tokens")
    model = FixedLogits(stand_in_table())

    def run(doing, prompt, n, temperature, do_sample, seed):
        return lesson.call(doing, generate_tokens, model, prompt, n, temperature, do_sample, seed=seed)

    def step(ids, rng, settings):
        return generate_next_token(model, ids, settings["temperature"], settings["do_sample"], rng=rng)

    def inputs(index, call, ids):
        given = np.asarray(call.arguments["input_ids"])
        if given.shape == ids.shape and np.array_equal(given, ids):
            return None
        if index > 0 and given.shape == ids[:, :3].shape and np.array_equal(given, ids[:, :3]):
            return ("was fed the prompt again.\nLikely cause: generate_tokens passes input_ids at every step: "
                    "pass ids, the prompt followed by the tokens chosen so far.")
        return f"was fed {given.tolist()}, not the prompt and the tokens so far {ids.tolist()}."

    check_loop(lesson, "generate_next_token", generate_next_token, caller="generate_tokens", run=run, step=step,
               inputs=inputs, filters=False, eos=False)


# --- loading HuggingFace weights ----------------------------------------------


def test_load_hf_weights(lesson):
    load_hf_weights = lesson.get("load_hf_weights")
    hf = randomize_(GPT2LMHeadModel(SMALL.hf), 12)
    state = dict(hf.state_dict())
    state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 8, 8).tril()  # buffers of
    state["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)  # older versions
    tied = {k: v for k, v in state.items() if k != "lm_head.weight"}
    expected = max_state_from_hf(hf)
    for label, given in (("with lm_head.weight", state), ("without lm_head.weight (tied)", tied)):
        model = MaxGPT2LMHeadModel(SMALL.max)
        keys_before = sorted(given)
        with lesson.learner_code(f"load_hf_weights(model, state dict {label})"):
            load_hf_weights(model, given)
        if sorted(given) != keys_before:
            fail(f"load_hf_weights changed the state dict it was given ({label}): work on a copy.")
        for name, param in model.parameters:
            ours = np.from_dlpack(param)
            reference = expected[name]
            if ours.shape == reference.shape and np.array_equal(ours, reference):
                continue
            hint = ""
            if ours.shape == reference.T.shape and np.array_equal(ours, reference.T):
                hint = " It holds HuggingFace's Conv1D layout [in, out]: transpose it to [out, in]."
            elif ours.shape == reference.shape and np.array_equal(ours.T, reference):
                hint = " It is transposed but should not be: only the four Conv1D weights are."
            fail(f"after load_hf_weights ({label}), {name} does not hold HuggingFace's weight.{hint}")

    ids = np.random.default_rng(3).integers(0, SMALL.max.vocab_size, (2, 9))
    model = MaxGPT2LMHeadModel(SMALL.max)
    load_hf_weights(model, state)
    with lesson.learner_code("compile_model(model)"):
        logits = np.from_dlpack(lesson.get("compile_model")(model)(Tensor.from_dlpack(ids)))
    assert_close(
        "last-position logits of compile_model(model) after load_hf_weights",
        logits[:, -1],
        torch_run(hf, ids)[:, -1],
        ("batch", "token"),
    )

    def refused(error, doing, change):
        bad = dict(state)
        change(bad)
        load = lambda: load_hf_weights(MaxGPT2LMHeadModel(SMALL.max), bad)  # noqa: E731
        lesson.expect_raises(error, f"load_hf_weights with {doing}", load, returns_value=False)

    refused(ValueError, "a c_fc weight of the wrong width",
            lambda s: s.update({"transformer.h.0.mlp.c_fc.weight": torch.zeros(64, 100)}))
    refused(KeyError, "ln_f.weight missing", lambda s: s.pop("transformer.ln_f.weight"))
    refused(KeyError, "an unknown key",
            lambda s: s.update({"transformer.h.9.mlp.c_fc.weight": torch.zeros(64, 256)}))


# --- generation ---------------------------------------------------------------


def check_greedy(lesson, case: Case, batch: int, new_tokens: int):
    generate_tokens = lesson.get("generate_tokens")
    hf, ours = lm_twins(case, seed=12)
    prompt = np.random.default_rng(4).integers(0, case.max.vocab_size, (batch, 5))
    doing = f"generate_tokens(model, prompt, {new_tokens}, do_sample=False)"
    tokens = np.asarray(lesson.call(doing, generate_tokens, compile_lm(lesson, ours), prompt, new_tokens, 1.0, False))
    expected = hf_generate(hf, prompt, new_tokens, do_sample=False)
    if tokens.shape != expected.shape:
        fail(f"generate_tokens returned shape {list(tokens.shape)}; prompt + {new_tokens} new tokens is {list(expected.shape)}.")
    if not np.array_equal(tokens, expected):
        row, col = np.argwhere(tokens != expected)[0]
        fail(
            f"greedy generation [{case.label}] differs from HuggingFace generate(do_sample=False) "
            f"at sequence {row}, position {col} (new token {col - prompt.shape[1] + 1}):\n"
            f"  yours       {tokens[row].tolist()}\n  HuggingFace {expected[row].tolist()}"
        )


def test_greedy_generation_matches_huggingface(lesson):
    check_greedy(lesson, SMALL, batch=2, new_tokens=24)


def test_greedy_generation_matches_huggingface_full_gpt2(lesson):
    check_greedy(lesson, FULL, batch=1, new_tokens=20)


def sample_by_hand(generate_next_token, model, prompt, new_tokens, temperature, seed, *, fresh_rng=False):
    """generate_tokens as one loop over ONE generator (fresh_rng: a new one each step)."""
    ids, rng = prompt, np.random.default_rng(seed)
    for _ in range(new_tokens):
        if fresh_rng:
            rng = np.random.default_rng(seed)
        token = np.asarray(generate_next_token(model, ids, temperature, True, rng=rng)).reshape(-1, 1)
        ids = np.concatenate([ids, token], axis=1)
    return ids


def test_sampling_is_reproducible_with_a_seed(lesson):
    generate_tokens = lesson.get("generate_tokens")
    generate_next_token = lesson.get("generate_next_token")
    _, ours = lm_twins(SMALL, seed=12)
    model = compile_lm(lesson, ours)
    prompt = np.random.default_rng(6).integers(0, SMALL.max.vocab_size, (2, 4))
    runs = {}
    for seed in (7, 7, 8):
        doing = f"generate_tokens(model, prompt, 16, temperature=2.0, seed={seed})"
        out = np.asarray(lesson.call(doing, generate_tokens, model, prompt, 16, 2.0, True, seed=seed))
        if out.shape != (2, 20) or not np.array_equal(out[:, :4], prompt):
            fail(f"generate_tokens must return the prompt followed by the new tokens, shape [2, 20]; got {list(out.shape)}.")
        runs.setdefault(seed, []).append(out)
    if not np.array_equal(runs[7][0], runs[7][1]):
        with lesson.learner_code("generate_next_token(model, ids, 2.0, rng=np.random.default_rng(3)), twice"):
            same = [np.asarray(generate_next_token(model, prompt, 2.0, rng=np.random.default_rng(3))) for _ in range(2)]
        cause = ("" if np.array_equal(*same) else "\nLikely cause: generate_next_token does not draw with the rng it is "
                 "given: use rng, and a fresh np.random.default_rng() only when rng is None.")
        fail("two runs with seed=7 gave different tokens: make one np.random.default_rng(seed) and use it for every draw." + cause)
    if np.array_equal(runs[7][0], runs[8][0]):
        fail("seed=7 and seed=8 gave the same 32 sampled tokens: the seed is not used for sampling.")
    with lesson.learner_code("generate_next_token(model, ids, 2.0, rng=...) in a loop"):
        by_hand = sample_by_hand(generate_next_token, model, prompt, 16, 2.0, seed=7)
        if np.array_equal(runs[7][0], by_hand):
            return
        causes = {
            "a new np.random.default_rng(seed) at every step repeats the first draw: make ONE generator "
            "before the loop and pass it to every generate_next_token call.":
                sample_by_hand(generate_next_token, model, prompt, 16, 2.0, seed=7, fresh_rng=True),
            "generate_tokens does not pass its temperature on to generate_next_token.":
                sample_by_hand(generate_next_token, model, prompt, 16, 1.0, seed=7),
        }
    cause = next((f"\nLikely cause: {hint}" for hint, ids in causes.items() if np.array_equal(runs[7][0], ids)), "")
    fail(
        "generate_tokens(..., temperature=2.0, seed=7) differs from calling generate_next_token 16 times "
        "with temperature 2.0 and one generator, np.random.default_rng(7):\n"
        f"  yours    {runs[7][0][0].tolist()}\n  the loop {by_hand[0].tolist()}{cause}"
    )


def test_bad_input_is_refused_with_a_clear_error(lesson):
    generate_tokens = lesson.get("generate_tokens")
    model = FixedLogits(np.zeros((1, 8, 5)), config=SMALL.max)
    ok = np.zeros((1, 3), np.int64)
    unchanged = np.asarray(lesson.call("generate_tokens(model, prompt, max_new_tokens=0)", generate_tokens, model, ok, 0))
    if not np.array_equal(unchanged, ok):
        fail(f"generate_tokens(model, prompt, max_new_tokens=0) returned {unchanged.tolist()}; it should return the prompt {ok.tolist()}.")
    cases = {
        "generate_tokens(..., temperature=0, do_sample=True)": lambda: generate_tokens(model, ok, 2, 0.0, True),
        "generate_tokens(..., max_new_tokens=-1)": lambda: generate_tokens(model, ok, -1),
        "generate_tokens with a 1-D prompt": lambda: generate_tokens(model, np.zeros(3, np.int64), 1),
        "generate_tokens with a token id >= vocab_size": lambda: generate_tokens(model, ok + SMALL.max.vocab_size, 1),
        "generate_tokens with a prompt longer than n_positions":
            lambda: generate_tokens(model, np.zeros((1, SMALL.max.n_positions + 1), np.int64), 1),
    }
    for doing, call in cases.items():
        lesson.expect_raises(ValueError, doing, call)
