"""The one home of the checking machinery every step's test uses.

- Lesson: finds and imports the file under test (steps/step_NN.py, or
  solutions/solution_NN.py with --target solutions) and turns a syntax
  error, a missing import or an open TODO into a plain-words failure.
- HuggingFace twins: configs, seeded O(1)-scale weights, and copying those
  weights into the MAX module under test (Conv1D weights transposed).
- run_compiled: compiles the module under test once for any batch size and
  sequence length, then runs it on several inputs (an eager MAX call costs
  seconds on a CPU; a compiled call costs milliseconds).
- assert_close: the one numerical comparison, with the one tolerance, and
  the "likely cause" lookup for known mistakes.

Every failure meant for the learner is raised as LessonFailure; conftest.py
prints its message without a traceback.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Checks never download: every HuggingFace model is built from a config.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

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
# a short one, and one longer than 64.
SHAPES = [(3, 6), (2, 67), (1, 1)]

# (what, (error, allowed)) of every comparison that passed, for
# tests/test_harness.py to see how far below the tolerance correct code stays.
MARGINS: list[tuple[str, tuple[float, float]]] = []


class LessonFailure(AssertionError):
    """A check failed; the message is written for the learner."""


def fail(message: str) -> None:
    raise LessonFailure(message)


# --------------------------------------------------------------------------
# Finding and loading the file under test
# --------------------------------------------------------------------------

TARGET_DIR = REPO / "steps"  # set by conftest.py from --target


def set_target(target: str) -> None:
    """--target: 'steps' (the learner's files), 'solutions', or a folder."""
    global TARGET_DIR
    if target in ("steps", "solutions"):
        TARGET_DIR = REPO / target
    else:
        TARGET_DIR = Path(target).resolve()


def target_file(step: int, folder: Path | None = None) -> Path:
    folder = TARGET_DIR if folder is None else folder
    prefix = "solution" if folder.name == "solutions" else "step"
    return folder / f"{prefix}_{step:02d}.py"


def solution_file(step: int) -> Path:
    return REPO / "solutions" / f"solution_{step:02d}.py"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def import_hint(step: int, name: str) -> str | None:
    """The import statement of the reference solution that binds name, if any."""
    tree = ast.parse(solution_file(step).read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound = [alias.asname or alias.name.split(".")[0] for alias in node.names]
            if name in bound:
                return ast.unparse(node)
    return None


OPEN_TODO = "TODO still open"


def fail_open_todo(lesson: "Lesson", what: str) -> None:
    """Fail with the message for an unfinished TODO."""
    fail(f"{OPEN_TODO} in {lesson.shown}: {what}")


class Lesson:
    """The file under test for one step, imported on first use."""

    def __init__(self, step: int, path: Path | None = None):
        self.step = step
        self.path = (path or target_file(step)).resolve()
        self._module = None

    @property
    def shown(self) -> str:
        return _shown(self.path)

    @property
    def module(self):
        if self._module is None:
            self._module = self._load()
        return self._module

    def _load(self):
        if not self.path.exists():
            fail(f"{self.shown} does not exist. Run the check from the repository's top folder.")
        try:
            ast.parse(self.path.read_text(), filename=str(self.path))
        except SyntaxError as err:
            fail(
                f"{self.shown} has a syntax error at line {err.lineno}: {err.msg}\n"
                f"    {(err.text or '').rstrip()}\n"
                "Python cannot read the file until this is fixed."
            )
        name = f"lesson_{self.step:02d}_{abs(hash(self.path))}"
        spec = importlib.util.spec_from_file_location(name, self.path)
        module = importlib.util.module_from_spec(spec)
        with self.learner_code(f"importing {self.shown}"):
            spec.loader.exec_module(module)
        return module

    def get(self, name: str):
        """An object the lesson defines, e.g. get('GPT2MLP')."""
        module = self.module
        if not hasattr(module, name):
            fail(f"{self.shown} defines no `{name}`. Keep the names from the skeleton.")
        return getattr(module, name)

    @contextlib.contextmanager
    def learner_code(self, doing: str):
        """Turn an exception raised by the lesson's code into a LessonFailure."""
        try:
            yield
        except LessonFailure:
            raise
        except Exception as err:  # the learner's code may raise anything
            fail(self.describe_error(err, doing))

    def describe_error(self, err: Exception, doing: str) -> str:
        frames = traceback.extract_tb(err.__traceback__)
        mine = [f for f in frames if Path(f.filename).resolve() == self.path]
        where = ""
        if mine:
            frame = mine[-1]
            where = f"\n  at {self.shown}:{frame.lineno}: {(frame.line or '').strip()}"
        message = f"{doing} raised {type(err).__name__}: {err}{where}"
        todo = self._open_todo(err)
        if todo:
            return f"{OPEN_TODO} in {self.shown}: {todo}\n{message}"
        hint = self._hint_for(err)
        return message + (f"\nWhat to do: {hint}" if hint else "")

    def _open_todo(self, err: Exception) -> str | None:
        """What is left to do, when err is the mark of an unfinished TODO."""
        if isinstance(err, NameError) and getattr(err, "name", None):
            line = import_hint(self.step, err.name)
            if line:
                return f"`{err.name}` is not imported: add `{line}` at the top of the file."
            return f"`{err.name}` is not defined: check the TODO that should create it."
        if "NoneType" in str(err):
            return (
                "a value is still None: a placeholder (`None`, `pass` or `return None`) "
                "is waiting for its code. Complete the TODOs in order."
            )
        return None

    @staticmethod
    def _hint_for(err: Exception) -> str | None:
        if "softmax not supported on non-inner axis" in str(err):
            return (
                "MAX's softmax normalizes over the last axis only, which is the right "
                "one for attention: the keys are the last axis of the scores."
            )
        if "only supported for static dims" in str(err):
            return (
                "your module is compiled for any batch size and sequence length, so those "
                "dimensions are symbolic: use x.shape[...] as it is (reshape, Tensor.arange "
                "and causal_mask accept it) instead of int(...)."
            )
        return None


def open_todos(obj: Any, path: str = "") -> list[str]:
    """Attributes still set to the skeleton's placeholder None, recursively."""
    from max.nn.module_v3 import Module

    found = []
    for name, value in vars(obj).items():
        qualified = f"{path}{name}"
        if value is None:
            found.append(qualified)
        elif isinstance(value, Module) and not isinstance(value, list):
            found += open_todos(value, qualified + ".")
    return found


def construct(lesson: Lesson, cls_name: str, *args, **kwargs):
    """Build lesson.cls_name(*args, **kwargs); check no attribute is left as None."""
    cls = lesson.get(cls_name)
    shown = [type(a).__name__ if hasattr(a, "__dataclass_fields__") else repr(a) for a in args]
    shown += [f"{k}={v!r}" for k, v in kwargs.items()]
    with lesson.learner_code(f"{cls_name}({', '.join(shown)})"):
        instance = cls(*args, **kwargs)
    todos = open_todos(instance)
    if todos:
        fail_open_todo(
            lesson,
            f"{cls_name} leaves {', '.join(f'self.{t}' for t in todos)} as None. "
            "Create each as the # Hint lines above it say.",
        )
    return instance


# --------------------------------------------------------------------------
# Configs and HuggingFace twins
# --------------------------------------------------------------------------

# Small configs catch hard-coded 768s and 12s: another width, head count,
# an explicit n_inner and another epsilon. "gpt2" is the 124M default.
CONFIGS = {
    "gpt2 (defaults)": dict(),
    "n_embd=64, n_head=4": dict(
        n_embd=64, n_head=4, n_layer=2, vocab_size=1000, n_positions=128
    ),
    "n_embd=48, n_head=6, n_inner=80, eps=1e-3": dict(
        n_embd=48, n_head=6, n_layer=2, vocab_size=777, n_positions=96,
        n_inner=80, layer_norm_epsilon=1e-3,
    ),
}
SMALL_CONFIGS = {k: v for k, v in CONFIGS.items() if k != "gpt2 (defaults)"}


def max_config(overrides: dict):
    from solutions.solution_01 import GPT2Config

    return GPT2Config(**overrides)


def hf_config(overrides: dict):
    import transformers

    config = transformers.GPT2Config(
        **overrides,
        activation_function="gelu_new",
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
    )
    config._attn_implementation = "eager"
    return config


def randomize_(hf_module, seed: int):
    """Give every parameter seeded values of O(1) scale, in place.

    HuggingFace's own init (std 0.02, LayerNorm 1 and 0, biases 0) hides
    real mistakes: a missing bias, exact GELU. Here LayerNorm weights are
    1 + 0.5 N(0,1), biases 0.5 N(0,1), embeddings N(0,1), and projection
    weights N(0,1)/sqrt(fan_in) so each layer's outputs stay O(1).
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    generator = torch.Generator().manual_seed(seed)

    def normal(shape):
        return torch.randn(shape, generator=generator)

    with torch.no_grad():
        for module in hf_module.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, torch.nn.LayerNorm) and name == "weight":
                    p.copy_(1 + 0.5 * normal(p.shape))
                elif name == "bias":
                    p.copy_(0.5 * normal(p.shape))
                elif isinstance(module, Conv1D):  # weight [in, out]
                    p.copy_(normal(p.shape) / p.shape[0] ** 0.5)
                elif isinstance(module, torch.nn.Linear):  # weight [out, in]
                    p.copy_(normal(p.shape) / p.shape[1] ** 0.5)
                else:  # embeddings
                    p.copy_(normal(p.shape))
    return hf_module.eval()


def max_state_from_hf(hf_module) -> dict[str, np.ndarray]:
    """HuggingFace parameters as MAX wants them: Conv1D weights transposed to
    [out, in], tied weights listed under both names, buffers left out."""
    from transformers.pytorch_utils import Conv1D

    conv1d = {name for name, m in hf_module.named_modules() if isinstance(m, Conv1D)}
    state = {}
    for name, p in hf_module.named_parameters(remove_duplicate=False):
        array = p.detach().numpy()
        owner = name.rpartition(".")[0]
        if owner in conv1d and name.endswith("weight"):
            array = array.T
        state[name] = np.ascontiguousarray(array, dtype=np.float32)
    return state


def _listing(names: list[str], most: int = 6) -> str:
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def load_weights(module, state: dict[str, np.ndarray], what: str) -> None:
    """Copy state into the learner's module, checking names and shapes first
    (MAX's load_state_dict does not check shapes)."""
    ours = {name: tuple(int(d) for d in p.shape) for name, p in module.parameters}
    missing = sorted(state.keys() - ours.keys())
    extra = sorted(ours.keys() - state.keys())
    problems = []
    if missing:
        problems.append(f"missing parameters: {_listing(missing)}")
    if extra:
        problems.append(f"parameters HuggingFace does not have: {_listing(extra)}")
    for name in sorted(ours.keys() & state.keys()):
        if ours[name] != state[name].shape:
            hint = ""
            if ours[name] == state[name].shape[::-1]:
                hint = " (reversed: Linear(in_dim, out_dim) takes the input size first)"
            problems.append(
                f"{name} has shape {list(ours[name])}, expected {list(state[name].shape)}{hint}"
            )
    if problems:
        message = f"{what}: the parameters do not match HuggingFace's GPT-2.\n  " + "\n  ".join(problems)
        if any(n.endswith("bias") for n in extra):
            message += "\nLikely cause: a layer has a bias it should not have: create it with bias=False."
        else:
            message += "\nUse the names and sizes from the # Hint lines (they match HuggingFace's)."
        fail(message)
    module.load_state_dict(state)


# --------------------------------------------------------------------------
# Running MAX code compiled
# --------------------------------------------------------------------------

def _tensor_type(array: np.ndarray, dims: Sequence):
    from max.dtype import DType
    from max.graph import DeviceRef, TensorType

    return TensorType(DType.from_numpy(array.dtype), list(dims), device=DeviceRef.CPU())


def compile_call(
    lesson: Lesson,
    call: Callable,
    example: np.ndarray,
    dims: Sequence,
    what: str,
    owner=None,
) -> Callable:
    """Compile call(tensor) once for inputs like example, with symbolic dims.

    call: the function to trace, e.g. a module or lambda x: f(x).
    dims: the input's dims, names for symbolic ones, e.g. ("batch", "seqlen", 64).
    owner: a module whose parameters call uses (default: call itself).
    """
    from max.experimental.tensor import Tensor
    from max.nn.module_v3 import Module

    class Probe(Module):
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, x):
            out = call(x)
            if out is None:
                fail_open_todo(lesson, f"{what} returns None. Finish its TODOs so that it returns the result.")
            if not isinstance(out, Tensor):
                fail(f"{what} returns a {type(out).__name__}, not a MAX Tensor.")
            return out

    inner = owner if owner is not None else call
    probe = Probe(inner if isinstance(inner, Module) else Module())
    with lesson.learner_code(what):
        compiled = probe.compile(_tensor_type(example, dims))
    return compiled


def run_compiled(lesson, call, inputs, dims, what, owner=None) -> list[np.ndarray]:
    """Compile call once (see compile_call) and run it on each input."""
    from max.experimental.tensor import Tensor

    inputs = list(inputs)
    compiled = compile_call(lesson, call, inputs[0], dims, what, owner)
    outputs = []
    for array in inputs:
        with lesson.learner_code(f"{what} on input of shape {list(array.shape)}"):
            result = compiled(Tensor.from_dlpack(np.ascontiguousarray(array)))
            outputs.append(np.from_dlpack(result).copy())
    return outputs


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


def assert_close(
    what: str,
    actual: np.ndarray,
    expected: np.ndarray,
    axes: Sequence[str],
    mistakes: dict[str, Callable[[], np.ndarray]] | None = None,
) -> None:
    """Fail with a report for the learner unless actual matches expected.

    mistakes: hint -> function computing what a known mistake would give;
    if the learner's output matches one, its hint is named as likely cause.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        message = (
            f"{what}: your output has shape {list(actual.shape)}, "
            f"HuggingFace's has {list(expected.shape)} ({', '.join(axes)})."
        )
        fail(message + likely_cause(actual, mistakes))
    if is_close(actual, expected):
        finite = np.isfinite(expected)
        MARGINS.append((what, max_error(actual[finite], expected[finite])))
        return
    finite = np.isfinite(expected)
    wrong_kind = (np.isfinite(actual) != finite) | (
        ~finite & ~np.isfinite(actual) & ~np.isclose(actual, expected, equal_nan=True)
    )
    if wrong_kind.any():
        at = tuple(int(i) for i in np.argwhere(wrong_kind)[0])
        message = (
            f"{what} does not match HuggingFace.\n"
            f"  at [{_where(axes, at)}]: yours {actual[at]:.6g}, HuggingFace {expected[at]:.6g}"
        )
    else:
        diff = np.where(finite, np.abs(actual - expected), 0.0)
        at = np.unravel_index(np.argmax(diff), actual.shape)
        _, allowed = max_error(actual[finite], expected[finite])
        message = (
            f"{what} does not match HuggingFace.\n"
            f"  largest difference {diff[at]:.3g} at [{_where(axes, at)}]: "
            f"yours {actual[at]:.6g}, HuggingFace {expected[at]:.6g} (allowed {allowed:.2g})"
        )
    fail(message + likely_cause(actual, mistakes))


def likely_cause(actual: np.ndarray, mistakes: dict | None) -> str:
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


def seeded_inputs(kind: str, shapes, *, width: int = 0, vocab: int = 0, seed: int = 0):
    """Seeded test inputs: 'hidden' floats [b, s, width] or 'ids' in [0, vocab)."""
    rng = np.random.default_rng(seed)
    if kind == "hidden":
        return [rng.standard_normal((b, s, width)).astype(np.float32) for b, s in shapes]
    return [rng.integers(0, vocab, size=(b, s), dtype=np.int64) for b, s in shapes]


def torch_run(hf_callable, array: np.ndarray) -> np.ndarray:
    """Run a HuggingFace/torch reference on a numpy input, without gradients."""
    import torch

    with torch.no_grad():
        out = hf_callable(torch.from_numpy(array))
        if isinstance(out, tuple):
            out = out[0]
        if hasattr(out, "logits"):
            out = out.logits
        elif hasattr(out, "last_hidden_state"):
            out = out.last_hidden_state
        return out.double().numpy()


@dataclass
class Case:
    """One config of a step's check: names, both configs, and the label."""

    label: str
    overrides: dict

    @property
    def max(self):
        return max_config(self.overrides)

    @property
    def hf(self):
        return hf_config(self.overrides)


def cases(configs: dict = CONFIGS) -> list[Case]:
    return [Case(label, overrides) for label, overrides in configs.items()]


def check_module(
    lesson: Lesson,
    name: str,
    make_ours: Callable[[Case], Any],
    make_hf: Callable[[Case], Any],
    *,
    seed: int,
    inputs: str = "hidden",
    mistakes: Callable[[Any, np.ndarray], dict] | None = None,
    configs: dict = CONFIGS,
    shapes=SHAPES,
    forward: Callable | None = None,
    id_limit: Callable[[Any], int] = lambda config: config.vocab_size,
) -> None:
    """The standard check: for each config, build the lesson's module and its
    HuggingFace twin with the same seeded weights, run both on the same seeded
    inputs, and compare every output.

    make_ours(case) builds the lesson's module, make_hf(case) the reference.
    inputs: 'hidden' ([batch, seq, n_embd] floats) or 'ids' (token ids).
    mistakes(hf, x): hint -> function giving a known mistake's output.
    forward(ours, x): what to run instead of ours(x).
    id_limit(config): token ids are drawn from [0, id_limit).
    """
    for case in cases(configs):
        config = case.max
        label = f"{name} [{case.label}]"
        ours = make_ours(case)
        hf = randomize_(make_hf(case), seed)
        load_weights(ours, max_state_from_hf(hf), label)
        if inputs == "hidden":
            xs = seeded_inputs("hidden", shapes, width=config.n_embd, seed=seed)
            dims, axes = ("batch", "seqlen", config.n_embd), ("batch", "position", "feature")
        else:
            xs = seeded_inputs("ids", shapes, vocab=id_limit(config), seed=seed)
            dims, axes = ("batch", "seqlen"), ("batch", "position", "feature")
        if forward is None:
            outs = run_compiled(lesson, ours, xs, dims, f"{name}.__call__")
        else:
            outs = run_compiled(lesson, lambda x: forward(ours, x), xs, dims, name, owner=ours)
        for x, out in zip(xs, outs):
            expected = torch_run(hf, x)
            if expected.ndim == 2:
                axes = ("position", "feature")
            elif expected.shape[-1] > config.n_embd:
                axes = ("batch", "position", "token")
            assert_close(
                f"{label}, input {list(x.shape)}",
                out,
                expected,
                axes,
                mistakes(hf, x) if mistakes else None,
            )
