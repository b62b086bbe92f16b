"""Writing text with a compiled GPT-2, one token at a time: the decoding
loop of generate.py, kept free of argparse so other commands can reuse it.

    settings = Sampling(do_sample=True, temperature=0.8, top_k=50, top_p=0.95)
    problem = settings.problem()                       # None, or what is wrong
    code = reference_code()                            # lesson 15's model and loop
    compiled = code.compile_model(model)
    for index, token in stream_prompts(code, compiled, prompts, 30, settings, seed, eos_id):
        ...                                            # token of prompts[index]

With the KV cache (the default) the loop IS lesson 15's stream_batched:
every prompt gets a slot of one cache, its prompt runs once (prefill), and
then one model call per step runs the newest token of every unfinished
prompt (continuous batching). serve/gpt2_arch/runner.py runs the same
model and cache through the same run_rows, with MAX's scheduler choosing
the requests; bench.py times the same loop. Prompt i draws from
np.random.default_rng(seed + i), so prompt i alone with seed + i gives
the same tokens.

Without the cache (lessons 12 and 13, FullSequence) every step runs the
whole sequence, one prompt after the other, with the same generator per
prompt; the token is drawn by lesson 13's choose_next_token in both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Sampling:
    """How each next token is chosen, with HuggingFace generate()'s names.

    top_k / top_p of None switch that filter off."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def problem(self, name: Callable[[str], str] = str) -> str | None:
        """What is wrong with these settings (one line), or None.
        name: how to show a setting's name (generate.py: top_k -> --top-k)."""
        if self.do_sample and not (math.isfinite(self.temperature) and self.temperature > 0):
            return f"{name('temperature')} must be a number > 0 when sampling, got {self.temperature}"
        if self.top_k is not None and self.top_k < 1:
            return f"{name('top_k')} must be at least 1, got {self.top_k}"
        if self.top_p is not None and not 0 < self.top_p <= 1:
            return f"{name('top_p')} must be in (0, 1], got {self.top_p}"
        return None


def context_problem(
    prompt_tokens: int,
    max_new_tokens: int,
    n_positions: int,
    model: str = "the model",
    name: Callable[[str], str] = str,
) -> str | None:
    """Why prompt + new tokens do not fit the model's context, or None (both counts in the message)."""
    if prompt_tokens + max_new_tokens <= n_positions:
        return None
    room = n_positions - prompt_tokens
    advice = (
        f"shorten the prompt or ask for at most {room} new tokens"
        if room > 0
        else f"shorten the prompt to fewer than {n_positions} tokens"
    )
    return (
        f"the prompt is {prompt_tokens} tokens and {name('max_new_tokens')} is {max_new_tokens}: "
        f"{prompt_tokens + max_new_tokens} in all, but {model} reads at most {n_positions} "
        f"(n_positions): {advice}"
    )


@dataclass(frozen=True)
class LessonCode:
    """The lesson code the loop uses: the reference solutions' or the learner's.

    With the KV cache, lesson 15's: model_class is BatchedGPT2LMHeadModel,
    kv_cache BatchedKVCache, run_rows and stream_batched its one model call
    and its loop, and compile_model tools/kv_engine.py's
    compile_batched_model. Without it, those are None (lesson 11's model)
    and compile_model is lesson 12's (for FullSequence)."""

    load_hf_weights: Callable
    compile_model: Callable
    choose_next_token: Callable
    model_class: Callable | None = None
    kv_cache: Callable | None = None
    run_rows: Callable | None = None
    stream_batched: Callable | None = None
    kernel: bool = False  # lesson 16's Mojo kernel on the decode path
    quantize: str | None = None  # lesson 17's weight format (q4_0, q4_k, q6_k), or float32
    in_place: bool = False  # decode steps' attention reads the cache in place (tools/decode_in_place.py)

    @property
    def cached(self) -> bool:
        return self.stream_batched is not None

    @property
    def path(self) -> str:
        """The path in a few words, for the commands' reports."""
        if not self.cached:
            return "no cache"
        path = f"KV cache, {self.quantize} weights" if self.quantize else "KV cache"
        if self.kernel:
            path += ", Mojo kernel"
        return path + (", attention in place" if self.in_place else "")


def kernel_problem() -> str | None:
    """Why the course's Mojo ops (lesson 16's kernel, solutions/kernels_16, and the
    in-place attention, tools/kernels) cannot be built here, or None when they are built."""
    from solutions.solution_16 import KERNELS
    from tools.decode_in_place import ATTENTION_KERNELS
    from tools.mojo_package import MojoBuildError, build_package

    try:
        build_package(KERNELS)
        build_package(ATTENTION_KERNELS)
    except MojoBuildError as err:
        return str(err).splitlines()[0]
    return None


def kernel_or_note(doing: str) -> bool:
    """True when the course's Mojo ops build here; else a one-line note on stderr: "note: {doing} without ..."."""
    import sys

    problem = kernel_problem()
    if problem:
        print(f"note: {doing} without the Mojo ops (lesson 16's kernel, the in-place attention): {problem}",
              file=sys.stderr)
    return problem is None


def with_kernel(code: LessonCode, kernels: Any, model_class: Callable, in_place: bool = False) -> LessonCode:
    """Lesson 15's code with lesson 16's model class, its Mojo package in the folder kernels;
    in_place: decode steps whose attention reads the cache in place."""
    from tools.kv_engine import compile_kernel_model

    def compile_model(model, **options):
        return compile_kernel_model(model, kernels, in_place=in_place, **options)

    return replace(code, compile_model=compile_model, model_class=model_class, kernel=True, in_place=in_place)


def quantize_problem(format: str | None, cache: bool = True, n_embd: int | None = None,
                     name: Callable[[str], str] = str) -> str | None:
    """Why lesson 17's format cannot be used as asked (one line), or None.
    n_embd: the model's width, when known (every Linear reads n_embd or 4 * n_embd)."""
    if format is None:
        return None
    from solutions.kquants import SUPER
    from solutions.solution_17 import BLOCK, FORMATS

    if format not in FORMATS:
        return f"{name('quantize')} must be one of {', '.join(FORMATS)}, got {format!r}"
    if not cache:
        return f"{name('quantize')} runs on the KV cache's path (lesson 15's engine): drop {name('no_cache')}"
    block = BLOCK if format == "q4_0" else SUPER
    if n_embd is not None and n_embd % block:
        return (f"{format} cuts each weight row into blocks of {block}, but this model's rows are "
                f"n_embd={n_embd} wide: choose {'q4_0' if n_embd % BLOCK == 0 else 'float32 (no --quantize)'}")
    return None


def with_quantized(code: LessonCode, format: str, in_place: bool = False) -> LessonCode:
    """code (lesson 15's, with the cache) with every Linear quantized to format
    by lesson 17's quantize_model (solutions/solution_17.py) before it compiles;
    in_place: decode steps whose attention reads the cache in place."""
    from solutions.solution_17 import quantize_model

    def compile_model(model, **options):
        if in_place:  # only lesson 15's engine (the reference code's) takes it
            options["in_place"] = True
        return code.compile_model(quantize_model(model, format), **options)

    return replace(code, compile_model=compile_model, quantize=format, kernel=False, in_place=in_place)


def reference_code(cache: bool = True, kernel: bool = False, quantize: str | None = None,
                   in_place: bool = False) -> LessonCode:
    """solutions/solution_12.py and solution_13.py, with cache solution_15.py,
    and with kernel too solution_16.py (the caller checks kernel_problem()
    first), or with quantize (a format; the cache needed) solution_17.py's
    quantized weights instead of the kernel. in_place (with kernel or
    quantize; kernel_problem() checked): decode steps whose attention reads
    the cache in place (tools/decode_in_place.py)."""
    from solutions import solution_12, solution_13

    code = LessonCode(solution_12.load_hf_weights, solution_12.compile_model, solution_13.choose_next_token)
    if not cache:
        return code
    from solutions import solution_15
    from tools.kv_engine import compile_batched_model

    code = replace(
        code,
        compile_model=compile_batched_model,
        model_class=solution_15.BatchedGPT2LMHeadModel,
        kv_cache=solution_15.BatchedKVCache,
        run_rows=solution_15.run_rows,
        stream_batched=solution_15.stream_batched,
    )
    if quantize:
        return with_quantized(code, quantize, in_place)
    if not kernel:
        return code
    from solutions import solution_16

    return with_kernel(code, solution_16.KERNELS, solution_16.KernelGPT2LMHeadModel, in_place)


def token_chooser(settings: Sampling, rng: np.random.Generator, code: LessonCode) -> Callable[[np.ndarray], int]:
    """A function from one row of logits [vocab] to the next token id:
    code.choose_next_token (lesson 13) on a batch of one, so that greedy is
    its argmax and sampling its draw (temperature, top-k, top-p, softmax),
    exactly as generate_tokens draws. Pass ONE rng for the whole run: the
    same seed then gives the same tokens.
    """

    def choose(logits: np.ndarray) -> int:
        token = code.choose_next_token(
            logits[None, :], settings.temperature, settings.do_sample,
            top_k=settings.top_k, top_p=settings.top_p, rng=rng,
        )
        return int(token[0])

    return choose


class NextTokenLogits(Protocol):
    """A model as the decoding loop sees it."""

    def prefill(self, prompt_ids: np.ndarray) -> np.ndarray:
        """Take the prompt, [seq] int64; return the logits for the next token, [vocab]."""

    def decode(self, token: int) -> np.ndarray:
        """Append one token; return the logits for the one after it, [vocab]."""


class FullSequence:
    """Lessons 12 and 13: every call runs the compiled model over all the
    tokens so far (no cache). compiled maps [1, seq] int64 ids to logits
    whose last position is the next token's ([1, 1, vocab] from
    compile_model, or [1, seq, vocab])."""

    def __init__(self, compiled: Callable, device=None):
        self.compiled = compiled
        self.device = device  # None or CPU: numpy in and out directly
        self.ids = np.zeros(0, dtype=np.int64)

    def prefill(self, prompt_ids: np.ndarray) -> np.ndarray:
        self.ids = np.asarray(prompt_ids, dtype=np.int64).reshape(-1).copy()
        return self._run()

    def decode(self, token: int) -> np.ndarray:
        self.ids = np.append(self.ids, np.int64(token))
        return self._run()

    def _run(self) -> np.ndarray:
        from max.experimental.tensor import Tensor

        ids = np.ascontiguousarray(self.ids[None, :])
        if self.device is None or self.device.label == "cpu":
            logits = np.from_dlpack(self.compiled(Tensor.from_dlpack(ids)))
        else:  # copy through the driver: Tensor.to() would build a graph per call (untested: no GPU here)
            from max.driver import CPU
            from max.driver import Tensor as DriverTensor

            on_device = Tensor(storage=DriverTensor.from_numpy(ids).to(self.device))
            logits = self.compiled(on_device).driver_tensor.to(CPU()).to_numpy()
        return np.array(logits[0, -1], dtype=np.float32)


def stream_tokens(
    model: NextTokenLogits,
    prompt_ids: Sequence[int] | np.ndarray,
    max_new_tokens: int,
    choose: Callable[[np.ndarray], int],
    eos_token_ids: Sequence[int] = (),
) -> Iterator[int]:
    """Yield up to max_new_tokens new token ids, one at a time, as they are chosen.

    Stops after an end-of-text token (which is yielded, as HuggingFace's
    generate() keeps it). The model is asked for logits only when another
    token is to come.
    """
    eos = set(int(t) for t in eos_token_ids)
    if max_new_tokens < 1:
        return
    logits = model.prefill(np.asarray(prompt_ids, dtype=np.int64))
    for produced in range(1, max_new_tokens + 1):
        token = choose(logits)
        yield token
        if token in eos or produced == max_new_tokens:
            return
        logits = model.decode(token)


def stream_prompts(
    code: LessonCode,
    compiled: Callable,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    settings: Sampling,
    seed: int,
    eos_token_id: int | None = None,
    *,
    max_batch_size: int = 8,
    device=None,
) -> Iterator[tuple[int, int]]:
    """Yield (prompt index, new token) as each token is chosen, for every prompt.

    With the cache: lesson 15's stream_batched (code.stream_batched), up to
    max_batch_size prompts at once. Without: FullSequence, one prompt after
    the other. Prompt i draws from np.random.default_rng(seed + i) in both.
    """
    if code.cached:
        yield from code.stream_batched(
            compiled, [np.asarray(p, dtype=np.int64) for p in prompts], max_new_tokens, settings.temperature,
            settings.do_sample, top_k=settings.top_k, top_p=settings.top_p, eos_token_id=eos_token_id, seed=seed,
            max_batch_size=max_batch_size,
        )
        return
    eos = () if eos_token_id is None else (eos_token_id,)
    for index, prompt in enumerate(prompts):
        choose = token_chooser(settings, np.random.default_rng(seed + index), code)  # ONE generator per prompt
        for token in stream_tokens(FullSequence(compiled, device), prompt, max_new_tokens, choose, eos):
            yield index, token


class IncrementalDecoder:
    """Text of a growing token list, handed out piece by piece.

    Each push decodes ALL new tokens so far and returns only the text not
    handed out yet. While the text ends in U+FFFD, a multi-byte character is
    still incomplete (its bytes are split over tokens), so it waits. flush()
    returns whatever is left. The pieces always add up to text().
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.tokens: list[int] = []
        self.shown = ""

    def text(self) -> str:
        return self.tokenizer.decode(
            self.tokens, skip_special_tokens=self.skip_special_tokens, clean_up_tokenization_spaces=False
        )

    def push(self, token: int) -> str:
        self.tokens.append(int(token))
        text = self.text()
        if text.endswith("\ufffd") or not text.startswith(self.shown):
            return ""
        piece, self.shown = text[len(self.shown):], text
        return piece

    def flush(self) -> str:
        text = self.text()
        if not text.startswith(self.shown):  # never seen with byte-level BPE
            return ""
        piece, self.shown = text[len(self.shown):], text
        return piece
