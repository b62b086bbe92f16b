"""Step 12: weight loading, temperature, sampling and greedy generation,
against transformers' GPT2LMHeadModel and generate()."""

import numpy as np
import torch
from max.experimental.tensor import Tensor
from transformers import GPT2LMHeadModel

from solutions.solution_11 import MaxGPT2LMHeadModel
from tests.harness import (
    CONFIGS,
    Case,
    assert_close,
    compile_call,
    fail,
    fail_open_todo,
    load_weights,
    max_state_from_hf,
    randomize_,
    torch_run,
)

STEP = 12
SMALL = Case("n_embd=64, n_head=4", CONFIGS["n_embd=64, n_head=4"])
FULL = Case("gpt2 (defaults)", CONFIGS["gpt2 (defaults)"])


def twin(case: Case, seed: int = 12):
    """A seeded HuggingFace GPT-2 and the reference MaxGPT2LMHeadModel holding
    the same weights (loaded by the harness, not by the lesson's loader)."""
    hf = randomize_(GPT2LMHeadModel(case.hf), seed)
    hf.generation_config.eos_token_id = None  # never stop early
    hf.generation_config.pad_token_id = 0
    ours = MaxGPT2LMHeadModel(case.max)
    load_weights(ours, max_state_from_hf(hf), "reference model")
    return hf, ours


def compiled(lesson, model):
    return compile_call(
        lesson, model, np.zeros((1, 1), np.int64), ("batch", "seqlen"), "MaxGPT2LMHeadModel", owner=model
    )


def expect_error(lesson, error: type, doing: str, call, returns_value: bool = True):
    """The lesson's code must raise error (a clear message), not run on.
    returns_value: the function normally returns something, so None means
    its TODOs are still open."""
    try:
        result = call()
    except error:
        return
    except Exception as err:  # noqa: BLE001 - report whatever the lesson raised
        fail(lesson.describe_error(err, doing) + f"\nIt should raise {error.__name__}.")
    if result is None and returns_value:
        fail_open_todo(lesson, f"{doing} returned None; it should raise {error.__name__}.")
    fail(f"{doing} did not raise {error.__name__}: bad input must stop with a clear message.")


class FixedLogits:
    """A stand-in model whose logits are known: [batch, seq, vocab] per call."""

    def __init__(self, logits: np.ndarray):
        self.logits = logits.astype(np.float32)

    def __call__(self, ids):
        batch, seq = np.from_dlpack(ids).shape
        return Tensor.from_dlpack(np.ascontiguousarray(self.logits[:batch, :seq]))


# --- temperature -------------------------------------------------------------

TEMPERATURES = [0.5, 1.0, 2.0]


def softmax(x, axis=-1):
    return torch.softmax(torch.from_numpy(np.asarray(x, dtype=np.float64)), dim=axis).numpy()


def temperature_mistakes(logits, t):
    return {
        "the temperature is applied after softmax: divide the logits by T, then softmax.":
            lambda: softmax(logits) / t,
        "the logits are multiplied by T: divide them by T.": lambda: softmax(logits * t),
        "the temperature is ignored: softmax(logits / temperature).": lambda: softmax(logits),
        "softmax runs over the wrong axis: normalize over the vocabulary (the last axis).":
            lambda: softmax(logits / t, axis=0),
    }


def test_softmax_with_temperature(lesson):
    f = lesson.get("softmax_with_temperature")
    logits = np.random.default_rng(12).normal(0, 3, size=(3, 11)).astype(np.float32)
    for t in TEMPERATURES:
        with lesson.learner_code(f"softmax_with_temperature(logits, {t})"):
            probs = f(logits, t)
        if probs is None:
            fail_open_todo(lesson, "softmax_with_temperature returns None.")
        assert_close(
            f"softmax_with_temperature(logits, {t})",
            np.asarray(probs),
            softmax(logits / t),
            ("row", "token"),
            temperature_mistakes(logits, t),
        )
    huge = np.array([[1000.0, 999.0, 0.0]])
    with lesson.learner_code("softmax_with_temperature([[1000, 999, 0]], 1.0)"):
        probs = np.asarray(f(huge, 1.0))
    assert_close("softmax_with_temperature([[1000, 999, 0]], 1.0)", probs, softmax(huge), ("row", "token"))
    for bad in (0.0, -1.0):
        expect_error(lesson, ValueError, f"softmax_with_temperature(logits, {bad})", lambda: f(logits, bad))


# --- sampling ----------------------------------------------------------------

DRAWS = 4000


def test_sampling_follows_softmax_of_logits_over_temperature(lesson):
    """Draw many next tokens from known logits; the frequencies must fit
    softmax(last position's logits / T) within 5 standard errors."""
    generate_next_token = lesson.get("generate_next_token")
    logits = np.random.default_rng(21).normal(0, 1.5, size=(1, 4, 6))
    # One call with DRAWS identical rows: each row is one independent draw.
    model = FixedLogits(np.repeat(logits, DRAWS, axis=0))
    ids = np.zeros((DRAWS, 4), np.int64)
    for t in (0.5, 2.0):
        with lesson.learner_code(f"generate_next_token(model, ids, temperature={t})"):
            tokens = generate_next_token(model, ids, t, True, rng=np.random.default_rng(5))
        if tokens is None:
            fail_open_todo(lesson, "generate_next_token returns None when sampling.")
        tokens = np.asarray(tokens).reshape(-1)
        if tokens.shape != (DRAWS,):
            fail(f"generate_next_token returned {tokens.size} tokens for a batch of {DRAWS}: one per row.")
        frequencies = np.bincount(tokens, minlength=6)[:6] / len(tokens)
        expected = softmax(logits[0, -1] / t)
        bound = 5 * np.sqrt(expected * (1 - expected) / DRAWS)
        if np.all(np.abs(frequencies - expected) <= bound):
            continue
        candidates = {
            "the temperature is ignored or applied after softmax: sample from softmax(logits / T).":
                softmax(logits[0, -1]),
            "the logits are multiplied by T: divide them by T.": softmax(logits[0, -1] * t),
            "the first position's logits are used: take the last one, logits[:, -1, :].":
                softmax(logits[0, 0] / t),
        }
        cause = next(
            (f"\nLikely cause: {hint}" for hint, p in candidates.items()
             if np.all(np.abs(frequencies - p) <= 5 * np.sqrt(p * (1 - p) / DRAWS) + 1e-12)),
            "",
        )
        fail(
            f"sampling at temperature {t} does not follow softmax(logits / T).\n"
            f"  frequencies over {DRAWS} draws: {np.round(frequencies, 3).tolist()}\n"
            f"  softmax(logits / T):          {np.round(expected, 3).tolist()}{cause}"
        )


def test_greedy_picks_the_last_positions_argmax(lesson):
    generate_next_token = lesson.get("generate_next_token")
    logits = np.random.default_rng(22).normal(0, 1, size=(2, 5, 9))
    with lesson.learner_code("generate_next_token(model, ids, do_sample=False)"):
        chosen = generate_next_token(FixedLogits(logits), np.zeros((2, 5), np.int64), 1.0, False)
    if chosen is None:
        fail_open_todo(lesson, "generate_next_token returns None for do_sample=False.")
    expected = logits[:, -1].argmax(-1)
    chosen = np.asarray(chosen).reshape(-1)
    if not np.array_equal(chosen, expected):
        hint = (
            "\nLikely cause: the first position's logits are used: take logits[:, -1, :]."
            if np.array_equal(chosen, logits[:, 0].argmax(-1)) else ""
        )
        fail(f"greedy choice is {chosen.tolist()}, the argmax of the last position is {expected.tolist()}.{hint}")


# --- loading HuggingFace weights -------------------------------------------------


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
        with lesson.learner_code(f"load_hf_weights(model, state dict {label})"):
            load_hf_weights(model, given)
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
        expect_error(lesson, error, f"load_hf_weights with {doing}", load, returns_value=False)

    refused(ValueError, "a c_fc weight of the wrong width",
            lambda s: s.update({"transformer.h.0.mlp.c_fc.weight": torch.zeros(64, 100)}))
    refused(KeyError, "ln_f.weight missing", lambda s: s.pop("transformer.ln_f.weight"))
    refused(KeyError, "an unknown key",
            lambda s: s.update({"transformer.h.9.mlp.c_fc.weight": torch.zeros(64, 256)}))


# --- generation -------------------------------------------------------------


def check_greedy(lesson, case: Case, batch: int, new_tokens: int):
    generate_tokens = lesson.get("generate_tokens")
    hf, ours = twin(case)
    prompt = np.random.default_rng(4).integers(0, case.max.vocab_size, (batch, 5))
    with lesson.learner_code(f"generate_tokens(model, prompt, {new_tokens}, do_sample=False)"):
        tokens = generate_tokens(compiled(lesson, ours), prompt, new_tokens, 1.0, False)
    if tokens is None:
        fail_open_todo(lesson, "generate_tokens returns None.")
    with torch.no_grad():
        expected = hf.generate(
            torch.from_numpy(prompt), attention_mask=torch.ones(prompt.shape, dtype=torch.long),
            do_sample=False, max_new_tokens=new_tokens,
        ).numpy()
    tokens = np.asarray(tokens)
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


def test_sampling_is_reproducible_with_a_seed(lesson):
    generate_tokens = lesson.get("generate_tokens")
    _, ours = twin(SMALL)
    model = compiled(lesson, ours)
    prompt = np.random.default_rng(6).integers(0, SMALL.max.vocab_size, (2, 4))
    runs = {}
    for seed in (7, 7, 8):
        with lesson.learner_code(f"generate_tokens(model, prompt, 16, temperature=2.0, seed={seed})"):
            out = generate_tokens(model, prompt, 16, 2.0, True, seed=seed)
        if out is None:
            fail_open_todo(lesson, "generate_tokens returns None.")
        out = np.asarray(out)
        if out.shape != (2, 20) or not np.array_equal(out[:, :4], prompt):
            fail(f"generate_tokens must return the prompt followed by the new tokens, shape [2, 20]; got {list(out.shape)}.")
        runs.setdefault(seed, []).append(out)
    if not np.array_equal(runs[7][0], runs[7][1]):
        fail("two runs with seed=7 gave different tokens: make one np.random.default_rng(seed) and use it for every draw.")
    if np.array_equal(runs[7][0], runs[8][0]):
        fail("seed=7 and seed=8 gave the same 32 sampled tokens: the seed is not used for sampling.")


def test_bad_input_is_refused_with_a_clear_error(lesson):
    generate_tokens = lesson.get("generate_tokens")
    model = FixedLogits(np.zeros((1, 8, 5)))
    model.config = SMALL.max
    ok = np.zeros((1, 3), np.int64)
    cases = {
        "generate_tokens(..., temperature=0, do_sample=True)": lambda: generate_tokens(model, ok, 2, 0.0, True),
        "generate_tokens(..., max_new_tokens=-1)": lambda: generate_tokens(model, ok, -1),
        "generate_tokens with a 1-D prompt": lambda: generate_tokens(model, np.zeros(3, np.int64), 1),
        "generate_tokens with a token id >= vocab_size": lambda: generate_tokens(model, ok + SMALL.max.vocab_size, 1),
        "generate_tokens with a prompt longer than n_positions":
            lambda: generate_tokens(model, np.zeros((1, SMALL.max.n_positions + 1), np.int64), 1),
    }
    for doing, call in cases.items():
        expect_error(lesson, ValueError, doing, call)
