"""Running the learner's MAX code compiled, and comparing it with its
reference: the one tolerance, the report of a difference, and the
"Likely cause:" lookup for known mistakes.

Speed: an eager MAX call builds and compiles a graph every time (seconds on
a CPU); a compiled call takes milliseconds. Compiling costs seconds too, so
a check compiles ONE graph that holds its module for every config it tries
(each with symbolic batch and sequence length), then runs that graph on
every input shape. On 2 CPU cores one graph for three configs compiles
about as fast as one graph for one config, so a learner sees the verdict on
a change within seconds (tests/bench_feedback.py measures it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.loading import Lesson, fail
from tests.twins import (
    CONFIGS, cases, load_weights, max_state_from_hf, randomize_, seeded_inputs, torch_run, without_hf_init,
)

# One tolerance for every numerical check: the largest absolute difference
# may be at most TOLERANCE times the scale of the reference output
# (max(1, max |reference|)). Why 2e-5: float32 carries about 7 decimal
# digits (eps = 1.2e-7), and a correct module differs from HuggingFace only
# in the order of its float32 sums: measured here at up to 3.2e-6 of the
# scale (the MLP at 768 wide), so correct code stays 6x below the line.
# With O(1) weights and inputs the smallest mistake the course names, exact
# instead of tanh GELU, moves the MLP's output by 1.5e-4 of the scale, 7x
# above it. tests/test_judge.py shows every catalogued mistake failing.
# tests/test_harness.py keeps both margins (at least 4x) honest.
TOLERANCE = 2e-5

# Input shapes (batch, sequence length): batch 3, 2 and 1, sequence length 1,
# a short one, and one longer than 64. The least ambiguous first.
SHAPES = [(3, 6), (2, 67), (1, 1)]


# --------------------------------------------------------------------------
# Compiling and running
# --------------------------------------------------------------------------

@dataclass
class Run:
    """One piece of the learner's code on a list of inputs.

    call: what to trace, e.g. the module itself or lambda x: f(module, x).
    owner: the module whose parameters call uses (None: call uses none).
    dims: the input's dims; strings name symbolic ones ("batch", "seqlen").
    """

    label: str
    call: Callable
    inputs: list[np.ndarray]
    dims: Sequence
    owner: Any = None


def _tensor_type(array: np.ndarray, dims: Sequence):
    from max.dtype import DType
    from max.graph import DeviceRef, TensorType

    return TensorType(DType.from_numpy(array.dtype), list(dims), device=DeviceRef.CPU())


def compile_together(lesson: Lesson, runs: Sequence[Run]) -> Callable:
    """Compile every run into one graph with one input per run.

    Each run gets its own symbolic dims, so the runs' shapes are independent.
    The result takes one array per run and returns one output per run.
    """
    from max.experimental.tensor import Tensor
    from max.nn.module_v3 import Module

    class Probe(Module):
        def __init__(self):
            for i, run in enumerate(runs):
                setattr(self, f"run{i}", run.owner if isinstance(run.owner, Module) else Module())

        def __call__(self, *xs):
            outs = []
            for run, x in zip(runs, xs):
                with lesson.learner_code(run.label):
                    out = run.call(x)
                if out is None:
                    lesson.fail_open_todo(f"{run.label} returns None. Finish its TODOs so that it returns the result.")
                if not isinstance(out, Tensor):
                    fail(f"{run.label} returns a {type(out).__name__}, not a MAX Tensor.")
                outs.append(out)
            return tuple(outs)

    types = [
        _tensor_type(run.inputs[0], [f"{d}{i}" if isinstance(d, str) else d for d in run.dims])
        for i, run in enumerate(runs)
    ]
    with lesson.learner_code(f"compiling {', '.join(run.label for run in runs)}"):
        compiled = Probe().compile(*types)
    return compiled


def run_together(lesson: Lesson, runs: Sequence[Run]) -> list[list[np.ndarray]]:
    """Compile all runs at once and run them; outputs[i][j] is run i on its input j."""
    from max.experimental.tensor import Tensor

    compiled = compile_together(lesson, runs)
    outputs: list[list[np.ndarray]] = [[] for _ in runs]
    for j in range(len(runs[0].inputs)):
        arrays = [np.ascontiguousarray(run.inputs[j]) for run in runs]
        shapes = sorted({str(list(a.shape[:2])) for a in arrays})
        with lesson.learner_code(f"running the compiled code on inputs of shape {', '.join(shapes)}"):
            results = compiled(*(Tensor.from_dlpack(a) for a in arrays))
            for out, result in zip(outputs, results):
                out.append(np.from_dlpack(result).copy())
    return outputs


def compile_call(lesson: Lesson, call: Callable, example: np.ndarray, dims: Sequence, what: str, owner=None):
    """Compile call(tensor) once for inputs like example; returns a callable
    that takes one Tensor and returns one Tensor."""
    compiled = compile_together(lesson, [Run(what, call, [example], dims, owner if owner is not None else call)])
    return lambda x: compiled(x)[0]


def run_compiled(lesson, call, inputs, dims, what, owner=None) -> list[np.ndarray]:
    """Compile call once and run it on each input."""
    return run_together(lesson, [Run(what, call, list(inputs), dims, owner if owner is not None else call)])[0]


# --------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------

def max_error(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(largest absolute difference, allowed difference) for two arrays."""
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    return float(np.abs(actual - expected).max(initial=0.0)), TOLERANCE * scale


def is_close(actual: np.ndarray, expected: np.ndarray) -> bool:
    """Same shape, same non-finite entries, and finite entries within tolerance."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return False
    finite = np.isfinite(expected)
    if not np.array_equal(finite, np.isfinite(actual)):
        return False
    if not np.array_equal(actual[~finite], expected[~finite], equal_nan=True):
        return False
    error, allowed = max_error(actual[finite], expected[finite])
    return error <= allowed


Mistakes = dict[str, Callable[[], Any]]


def assert_close(
    what: str,
    actual: np.ndarray,
    expected: np.ndarray,
    axes: Sequence[str],
    mistakes: Mistakes | None = None,
    *,
    reference: str = "HuggingFace",
    margins: list | None = None,
) -> None:
    """Fail with a report for the learner unless actual matches expected.

    mistakes: hint -> function computing what a known mistake would give;
    if the learner's output matches one, its hint is named as likely cause.
    reference: who computed expected, as the learner should read it.
    margins: where to record (what, error, allowed) when the check passes.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        message = (
            f"{what}: your output has shape {list(actual.shape)}, "
            f"{reference}'s has {list(expected.shape)} ({', '.join(axes)})."
        )
        fail(message + likely_cause(actual, mistakes))
    finite = np.isfinite(expected)
    if is_close(actual, expected):
        if margins is not None:
            margins.append((what, *max_error(actual[finite], expected[finite])))
        return
    wrong_kind = (np.isfinite(actual) != finite) | (
        ~finite & ~np.isfinite(actual) & ~np.isclose(actual, expected, equal_nan=True)
    )
    if wrong_kind.any():
        at = tuple(int(i) for i in np.argwhere(wrong_kind)[0])
        message = (
            f"{what} does not match {reference}.\n"
            f"  at [{_where(axes, at)}]: yours {actual[at]:.6g}, {reference} {expected[at]:.6g}"
        )
    else:
        diff = np.where(finite, np.abs(actual - expected), 0.0)
        at = np.unravel_index(np.argmax(diff), actual.shape)
        _, allowed = max_error(actual[finite], expected[finite])
        message = (
            f"{what} does not match {reference}.\n"
            f"  largest difference {diff[at]:.3g} at [{_where(axes, at)}]: "
            f"yours {actual[at]:.6g}, {reference} {expected[at]:.6g} (allowed {allowed:.2g})"
        )
    fail(message + likely_cause(actual, mistakes))


def likely_cause(actual: np.ndarray, mistakes: Mistakes | None) -> str:
    """'Likely cause: ...' for the first known mistake that gives actual."""
    for hint, compute in (mistakes or {}).items():
        try:
            mistaken = compute()
        except Exception:  # noqa: BLE001 - a mistake that cannot happen for this input
            continue
        if is_close(actual, mistaken):
            return f"\nLikely cause: {hint}"
    return ""


def _where(axes: Sequence[str], index: Sequence[int]) -> str:
    return ", ".join(f"{axis} {int(i)}" for axis, i in zip(axes, index))


# --------------------------------------------------------------------------
# The standard check
# --------------------------------------------------------------------------

@dataclass
class Comparison:
    """A Run and what its outputs must equal."""

    run: Run
    expected: Callable[[np.ndarray], np.ndarray]  # the reference on one input
    mistakes: Callable[[np.ndarray], Mistakes] | None = None
    width: int = 0  # n_embd, to tell hidden states from logits


def axes_of(expected: np.ndarray, width: int) -> tuple[str, ...]:
    if expected.ndim == 2:
        return ("position", "feature")
    if expected.shape[-1] > width:
        return ("batch", "position", "token")
    return ("batch", "position", "feature")


def check_comparisons(lesson: Lesson, comparisons: Sequence[Comparison], reference: str = "HuggingFace") -> None:
    """Compile every comparison's code in one graph, run it, and compare each
    output with its reference, in order; the first difference fails."""
    outputs = run_together(lesson, [c.run for c in comparisons])
    for comparison, outs in zip(comparisons, outputs):
        for x, out in zip(comparison.run.inputs, outs):
            expected = comparison.expected(x)
            assert_close(
                f"{comparison.run.label}, input {list(x.shape)}",
                out,
                expected,
                axes_of(expected, comparison.width),
                comparison.mistakes(x) if comparison.mistakes else None,
                reference=reference,
                margins=lesson.margins,
            )


def module_comparison(
    lesson: Lesson,
    name: str,
    case,
    ours,
    hf,
    *,
    seed: int,
    inputs: str = "hidden",
    mistakes: Callable[[Any, np.ndarray], Mistakes] | None = None,
    shapes=SHAPES,
    forward: Callable | None = None,
    id_limit: Callable[[Any], int] = lambda config: config.vocab_size,
    reference: str = "HuggingFace",
) -> Comparison:
    """One config of a module check: load hf's seeded weights into ours, and
    compare ours (or forward(ours, x)) with hf on seeded inputs."""
    config = case.max
    label = f"{name} [{case.label}]"
    hf = randomize_(hf, seed)
    load_weights(ours, max_state_from_hf(hf), label, reference)
    if inputs == "hidden":
        xs = seeded_inputs("hidden", shapes, width=config.n_embd, seed=seed)
        dims = ("batch", "seqlen", config.n_embd)
    else:
        xs = seeded_inputs("ids", shapes, vocab=id_limit(config), seed=seed)
        dims = ("batch", "seqlen")
    call = ours if forward is None else (lambda x: forward(ours, x))
    return Comparison(
        Run(label, call, xs, dims, owner=ours),
        expected=lambda x: torch_run(hf, x),
        mistakes=(lambda x: mistakes(hf, x)) if mistakes else None,
        width=config.n_embd,
    )


def check_module(
    lesson: Lesson,
    name: str,
    make_ours: Callable[[Any], Any],
    make_hf: Callable[[Any], Any],
    *,
    configs: dict = CONFIGS,
    reference: str = "HuggingFace",
    **options,
) -> None:
    """The standard check: for each config, build the lesson's module and its
    reference with the same seeded weights, run both on the same seeded
    inputs, and compare every output. All configs compile as one graph.

    make_ours(case) builds the lesson's module, make_hf(case) the reference;
    options go to module_comparison (seed, inputs, mistakes, forward, ...).
    """
    comparisons = [
        module_comparison(
            lesson, name, case, make_ours(case), without_hf_init(lambda: make_hf(case)), reference=reference, **options
        )
        for case in cases(configs)
    ]
    check_comparisons(lesson, comparisons, reference)


def compile_lm(lesson: Lesson, model) -> Callable:
    """model (token ids -> logits) compiled once for any batch and length."""
    return compile_call(lesson, model, np.zeros((1, 1), np.int64), ("batch", "seqlen"), type(model).__name__, owner=model)


# --------------------------------------------------------------------------
# Comparing random draws with a distribution
# --------------------------------------------------------------------------

# The chance that a correct sampler fails a frequency check (a chi-square
# test): one in a million per check.
FALSE_ALARM = 1e-6


def chi_square_p_value(tokens: np.ndarray, probs: np.ndarray) -> float:
    """How likely draws from probs are to fit worse than tokens do
    (Pearson's chi-square test; categories expected fewer than 5 times are
    pooled into one, and tokens outside the support count as impossible)."""
    import torch

    tokens = np.asarray(tokens).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if tokens.size == 0 or tokens.min() < 0 or tokens.max() >= probs.size:
        return 0.0
    counts = np.bincount(tokens, minlength=probs.size).astype(np.float64)
    if counts[probs == 0].any():
        return 0.0
    expected = probs * tokens.size
    big = expected >= 5
    observed = list(counts[big]) + ([counts[~big & (probs > 0)].sum()] if (~big & (probs > 0)).any() else [])
    wanted = list(expected[big]) + ([expected[~big].sum()] if (~big & (probs > 0)).any() else [])
    observed, wanted = np.array(observed), np.array(wanted)
    if len(wanted) < 2:
        return 1.0
    statistic = float(((observed - wanted) ** 2 / wanted).sum())
    df = len(wanted) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(statistic / 2, dtype=torch.float64)))


def fits(tokens: np.ndarray, probs: np.ndarray) -> bool:
    """Do the drawn tokens fit probs? False for a correct sampler with chance FALSE_ALARM."""
    return chi_square_p_value(tokens, probs) >= FALSE_ALARM
