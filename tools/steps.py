"""generate.py --steps: the learner's own steps/step_12.py and (with the KV
cache, generate.py's default) step_15.py, or step_12.py and step_13.py
with --no-cache, instead of the reference solutions, refused while a TODO
is still open; serve.py --steps: step_15.py.

The files are imported through the checks' own machinery (tests/loading.py:
Lesson), and every function the lessons ask for is called once on small
inputs (a stand-in model with fixed logits, a 1-layer model 8 wide), in
task order: a placeholder left in place shows up in seconds, with the same
"TODO still open in steps/step_NN.py: ..." message the checks give, before
any checkpoint is loaded or compiled (a TODO in lesson 14's or 15's
__call__ methods shows up when the real model compiles, with the same
message). These calls look for unfinished code, not for wrong numbers:
`pixi run s12`, `s13`, `s14` and `s15` check those.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from tools.generation import LessonCode

CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


class StepsNotReady(Exception):
    """The learner's steps cannot be used yet; the message is one line."""


def _checker():
    """tests.loading, imported without its side effect on this process's
    environment (importing tests/ switches HuggingFace offline)."""
    saved = dict(os.environ)
    try:
        from tests import loading
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return loading


def one_line(message: str) -> str:
    """The check's message on one line: its lines joined by " | "."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return " | ".join(lines) or "the check failed without a message"


class FixedLogits:
    """A stand-in model whose logits are known: [batch, seq, vocab] per call,
    the first rows and positions of the given array. (The checks use it too.)"""

    def __init__(self, logits: np.ndarray, config=None):
        self.logits = np.ascontiguousarray(logits, dtype=np.float32)
        self.config = config

    def __call__(self, ids):
        from max.experimental.tensor import Tensor

        batch, seq = np.from_dlpack(ids).shape
        return Tensor.from_dlpack(np.ascontiguousarray(self.logits[:batch, :seq]))


def _probabilities(lesson, loading, doing: str, probs, shape) -> None:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != shape or not np.all(probs >= 0) or not np.allclose(probs.sum(-1), 1.0):
        loading.fail(
            f"{lesson.shown}: {doing} does not return probabilities of shape {list(shape)} "
            f"that add up to 1; run the step's check (pixi run s{lesson.step:02d}) to see why"
        )


def _new_tokens(lesson, loading, doing: str, tokens, prompt: np.ndarray, most: int) -> None:
    tokens = np.asarray(tokens)
    ok = tokens.ndim == 2 and tokens.shape[0] == 1 and prompt.shape[1] < tokens.shape[1] <= prompt.shape[1] + most
    if not ok or not np.array_equal(tokens[:, : prompt.shape[1]], prompt):
        loading.fail(
            f"{lesson.shown}: {doing} returned shape {list(tokens.shape)}, not the prompt "
            f"followed by new tokens; run the step's check (pixi run s{lesson.step:02d})"
        )


def _check_step_12(lesson, loading) -> None:
    from solutions.solution_01 import GPT2Config
    from solutions.solution_11 import MaxGPT2LMHeadModel

    # Task 1: load_hf_weights, on a 1-layer model 8 wide with HuggingFace's layout.
    load_hf_weights = lesson.get("load_hf_weights")
    lesson.get("compile_model")
    model = MaxGPT2LMHeadModel(GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2))
    rng = np.random.default_rng(12)
    ours = {name: rng.standard_normal([int(d) for d in p.shape]).astype(np.float32) for name, p in model.parameters}
    state = {n: a.T.copy() if n.endswith(CONV1D_SUFFIXES) else a for n, a in ours.items()}
    with lesson.learner_code("load_hf_weights(model, state_dict)"):
        load_hf_weights(model, state)
    loaded = dict(model.parameters)
    for name in ("transformer.h.0.attn.c_attn.weight", "transformer.ln_f.bias"):
        with lesson.learner_code(f"reading {name} after load_hf_weights"):
            value = np.from_dlpack(loaded[name])
        if not np.array_equal(value, ours[name]):
            loading.fail(
                f"{lesson.shown}: after load_hf_weights, {name} does not hold the weight given "
                "(transposed for Conv1D); run its check (pixi run s12)"
            )

    # Task 2: softmax_with_temperature.
    softmax = lesson.get("softmax_with_temperature")
    logits = np.random.default_rng(2).normal(0, 2, (2, 5))
    doing = "softmax_with_temperature(logits, 0.5)"
    _probabilities(lesson, loading, doing, lesson.call(doing, softmax, logits, 0.5), (2, 5))

    # Tasks 3 and 4: generate_next_token through generate_tokens, greedy and sampled.
    generate_tokens = lesson.get("generate_tokens")
    stand_in = FixedLogits(np.random.default_rng(3).normal(0, 1, (1, 16, 11)))
    prompt = np.array([[1, 2, 3]], dtype=np.int64)
    for do_sample in (False, True):
        doing = f"generate_tokens(model, prompt, 3, 1.0, do_sample={do_sample}, seed=0)"
        tokens = lesson.call(doing, generate_tokens, stand_in, prompt, 3, 1.0, do_sample, seed=0)
        _new_tokens(lesson, loading, doing, tokens, prompt, 3)


def _check_step_13(lesson, loading) -> None:
    logits = np.random.default_rng(13).normal(0, 2, (2, 7))
    for name, args in (("top_k_filter", (3,)), ("top_p_filter", (0.9,)), ("warp_logits", (0.7, 3, 0.9))):
        f = lesson.get(name)
        doing = f"{name}(logits, {', '.join(map(str, args))})"
        warped = np.asarray(lesson.call(doing, f, logits, *args), dtype=np.float64)
        if warped.shape != logits.shape:
            loading.fail(f"{lesson.shown}: {doing} returned shape {list(warped.shape)}, not {list(logits.shape)}")
    choose_next_token = lesson.get("choose_next_token")  # generate.py draws every token with it
    for do_sample in (False, True):
        doing = f"choose_next_token(logits, 0.7, do_sample={do_sample}, top_k=3, top_p=0.9, rng=rng)"
        tokens = np.asarray(lesson.call(doing, choose_next_token, logits, 0.7, do_sample, top_k=3, top_p=0.9,
                                        rng=np.random.default_rng(0)))
        ok = tokens.shape == (2,) and np.issubdtype(tokens.dtype, np.integer) and np.all((tokens >= 0) & (tokens < 7))
        if not ok:
            loading.fail(f"{lesson.shown}: {doing} returned {tokens.tolist()}, not one token id per row of "
                         "logits [2, 7]; run the step's check (pixi run s13)")
    generate_tokens = lesson.get("generate_tokens")
    stand_in = FixedLogits(np.random.default_rng(4).normal(0, 1, (1, 16, 11)))
    prompt = np.array([[1, 2, 3]], dtype=np.int64)
    for do_sample in (False, True):
        doing = f"generate_tokens(model, prompt, 3, 0.8, do_sample={do_sample}, top_k=5, top_p=0.9, eos_token_id=10, seed=0)"
        tokens = lesson.call(
            doing, generate_tokens, stand_in, prompt, 3, 0.8, do_sample, top_k=5, top_p=0.9, eos_token_id=10, seed=0
        )
        _new_tokens(lesson, loading, doing, tokens, prompt, 3)


@contextlib.contextmanager
def _suggest_no_cache():
    """A StepsNotReady of lesson 15, with generate.py's way around it."""
    try:
        yield
    except StepsNotReady as err:
        raise StepsNotReady(
            f"{err} | or add --no-cache: without the KV cache, --steps needs only step_12.py and step_13.py"
        ) from None


def learner_code(steps_dir: Path, cache: bool = True) -> LessonCode:
    """load_hf_weights and compile_model from steps_dir/step_12.py and
    choose_next_token from step_13.py; with cache, load_hf_weights from
    step_12.py and BatchedGPT2LMHeadModel and stream_batched from
    step_15.py (compiled by tools/kv_engine.py) instead, once every function
    of those lessons runs. Raises StepsNotReady with a one-line message;
    step 15's suggest generate.py --no-cache, which needs only 12 and 13."""
    loading = _checker()
    code = {}
    for step, check in ((12, _check_step_12), (13, _check_step_13))[: 1 if cache else 2]:
        lesson = loading.Lesson(step, Path(steps_dir) / f"step_{step}.py")
        if not lesson.path.is_file():
            needed = "step_12.py and step_15.py" if cache else "step_12.py and step_13.py"
            raise StepsNotReady(f"{lesson.shown} does not exist: --steps uses your steps/{needed}")
        try:
            check(lesson, loading)
        except loading.LessonFailure as failure:
            raise StepsNotReady(one_line(str(failure))) from None
        code[step] = lesson
    step_12 = code[12]

    def load_hf_weights(model, state_dict):
        try:
            with step_12.learner_code("load_hf_weights(model, state_dict)"):
                step_12.get("load_hf_weights")(model, state_dict)
        except loading.LessonFailure as failure:
            raise StepsNotReady(one_line(str(failure))) from None

    if not cache:
        return LessonCode(load_hf_weights, step_12.get("compile_model"), code[13].get("choose_next_token"))
    with _suggest_no_cache():
        batched = learner_batched_code(steps_dir)

    def compile_model(model):
        with _suggest_no_cache():
            return batched.compile_model(model)

    return replace(batched, load_hf_weights=load_hf_weights, compile_model=compile_model)


# --------------------------------------------------------------------------
# Lesson 15 (many sequences at once), for serve.py --steps
# --------------------------------------------------------------------------


def _check_step_15(lesson, loading) -> None:
    """Build the learner's BatchedGPT2LMHeadModel and BatchedKVCache on a
    1-layer model 8 wide, take two slots, append to one and free it; nothing
    is compiled here (the server compiles the model: learner_batched_code)."""
    from solutions.solution_01 import GPT2Config
    from solutions.solution_15 import BatchedGPT2LMHeadModel

    config = GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    doing = "BatchedGPT2LMHeadModel(config)"
    with lesson.learner_code(doing):
        names = {name for name, _ in lesson.get("BatchedGPT2LMHeadModel")(config).parameters}
    missing = sorted({name for name, _ in BatchedGPT2LMHeadModel(config).parameters} - names)
    if missing:
        lesson.fail_open_todo(f"{doing} has no parameters {', '.join(missing[:3])}: keep GPT-2's layers")
    cache = loading.construct(lesson, "BatchedKVCache", config, 2, 5)  # an attribute left None is an open TODO
    doing = "BatchedKVCache(config, 2, 5): take() twice, append 3 tokens to the second slot, free it"
    new = np.ones((1, 1, 2, 3, 4), dtype=np.float32)  # [n_layer, rows, n_head, seq, head_dim]
    with lesson.learner_code(doing):
        slots = [lesson.call("cache.take()", cache.take) for _ in range(2)]
        cache.append(new, 2 * new, [slots[1]])
        filled = [np.asarray(cache.keys)[:, slots[1], :, :3], np.asarray(cache.values)[:, slots[1], :, :3],
                  int(cache.lengths[slots[1]]), int(cache.lengths[slots[0]])]
        cache.free(slots[1])
        freed = int(cache.lengths[slots[1]]), bool(cache.in_use[slots[1]])
    ok = (sorted(slots) == [0, 1] and np.array_equal(filled[0], new[:, 0]) and np.array_equal(filled[1], 2 * new[:, 0])
          and filled[2:] == [3, 0] and freed == (0, False))
    if not ok:
        loading.fail(f"{lesson.shown}: {doing} does not give that slot 3 tokens and then an empty, free slot; "
                     "run its check (pixi run s15)")


class FixedBatchedLogits(FixedLogits):
    """FixedLogits as a compiled batched model (lesson 15) sees it:
    (ids [rows, seq], cache, rows) -> the logits of each row's last new
    position, logits[0, cache.lengths[slot] + seq - 1], [rows, vocab], and
    zero keys and values for the new tokens. config sizes them."""

    def __call__(self, ids, cache, rows):
        count, seq = np.shape(ids)
        c = self.config
        new = np.zeros((c.n_layer, count, c.n_head, seq, c.n_embd // c.n_head), dtype=np.float32)
        positions = np.asarray(cache.lengths)[list(rows)] + seq - 1
        return self.logits[0, positions], new, new


def per_prompt(pairs) -> dict[int, list[int]]:
    """(prompt index, token) pairs -> each prompt's tokens, in order."""
    tokens: dict[int, list[int]] = {}
    for index, token in pairs:
        tokens.setdefault(int(index), []).append(int(token))
    return tokens


def _check_stream_batched(lesson, loading) -> None:
    """The learner's stream_batched on a stand-in: the tokens lesson 15's loop yields."""
    from solutions.solution_01 import GPT2Config
    from solutions.solution_15 import stream_batched

    config = GPT2Config(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2)
    stand_in = FixedBatchedLogits(np.random.default_rng(15).normal(0, 1, (1, 16, 11)), config)
    prompts = [np.array([1, 2]), np.array([3, 4, 5, 6, 7]), np.array([8, 9, 10])]
    for do_sample in (False, True):
        options = dict(top_k=5, eos_token_id=10, seed=0, max_batch_size=2)
        doing = f"stream_batched(model, 3 prompts, 4, 0.8, do_sample={do_sample}, top_k=5, eos_token_id=10, seed=0, max_batch_size=2)"
        loop = lesson.get("stream_batched")
        yielded = lesson.call(doing, lambda: per_prompt(loop(stand_in, prompts, 4, 0.8, do_sample, **options)))
        if yielded != per_prompt(stream_batched(stand_in, prompts, 4, 0.8, do_sample, **options)):
            loading.fail(f"{lesson.shown}: {doing} does not yield the (prompt, token) pairs lesson 15's loop yields "
                         "on a stand-in model; run its check (pixi run s15)")


def learner_batched_code(steps_dir: Path) -> LessonCode:
    """Lesson 15 from steps_dir/step_15.py (BatchedGPT2LMHeadModel, BatchedKVCache,
    run_rows, stream_batched), with a compile function (tools/kv_engine.py's)
    that reports the learner's errors as the checks do; solution 12's
    load_hf_weights. Raises StepsNotReady with a one-line message."""
    from solutions.solution_12 import load_hf_weights
    from solutions.solution_13 import choose_next_token
    from tools.kv_engine import compile_batched_model

    loading = _checker()
    lesson = loading.Lesson(15, Path(steps_dir) / "step_15.py")
    if not lesson.path.is_file():
        raise StepsNotReady(f"{lesson.shown} does not exist: --steps uses your steps/step_15.py")
    try:
        _check_step_15(lesson, loading)
        _check_stream_batched(lesson, loading)
    except loading.LessonFailure as failure:
        raise StepsNotReady(one_line(str(failure))) from None

    def compile_model(model, **options):  # options: tools/kv_engine.py's (session, num_threads)
        try:
            with lesson.learner_code("compiling BatchedGPT2LMHeadModel"):
                return compile_batched_model(model, **options)
        except loading.LessonFailure as failure:
            raise StepsNotReady(one_line(str(failure))) from None

    return LessonCode(load_hf_weights, compile_model, choose_next_token, lesson.get("BatchedGPT2LMHeadModel"),
                      lesson.get("BatchedKVCache"), lesson.get("run_rows"), lesson.get("stream_batched"))
