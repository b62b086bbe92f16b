"""Finding and importing the file under test, and turning what goes wrong
in it into plain words for the learner.

- Target: what --target names: the learner's steps/ (the default), the
  reference solutions/, or any folder of step_NN.py files.
- Lesson: one step's file, imported on first use; a syntax error, a missing
  import or an open TODO becomes a LessonFailure with a message that says
  what to do. It also collects how far below the tolerance each passing
  comparison stayed (margins), for tests/test_harness.py.

conftest.py prints a LessonFailure's message without a traceback.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lessons import REPO, skeleton_path, solution_path


class LessonFailure(AssertionError):
    """A check failed; the message is written for the learner."""


def fail(message: str) -> None:
    raise LessonFailure(message)


OPEN_TODO = "TODO still open"


def shown(path: Path) -> str:
    """path relative to the repository when it lies inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Target:
    """What the checks run on: 'steps', 'solutions' or a folder of step_NN.py files."""

    name: str

    @property
    def is_solutions(self) -> bool:
        return self.name == "solutions"

    def path(self, step: int) -> Path:
        if self.name == "steps":
            return skeleton_path(step)
        if self.name == "solutions":
            return solution_path(step)
        return Path(self.name).resolve() / f"step_{step:02d}.py"


def import_hint(step: int, name: str) -> str | None:
    """The import of the reference solution that binds name, if any, for that name alone."""
    tree = ast.parse(solution_path(step).read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mine = [alias for alias in node.names if (alias.asname or alias.name.split(".")[0]) == name]
            if mine:
                node.names = mine
                return ast.unparse(node)
    return None


class Lesson:
    """The file under test for one step, imported on first use."""

    def __init__(self, step: int, path: Path):
        self.step = step
        self.path = Path(path).resolve()
        self.margins: list[tuple[str, float, float]] = []  # (what, error, allowed) of passing comparisons
        self._module = None

    @property
    def shown(self) -> str:
        return shown(self.path)

    def fail_open_todo(self, what: str) -> None:
        """Fail with the message for an unfinished TODO."""
        fail(f"{OPEN_TODO} in {self.shown}: {what}")

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

    def call(self, doing: str, function, *args, **kwargs):
        """function(*args, **kwargs) from the lesson; None means a TODO is open."""
        with self.learner_code(doing):
            result = function(*args, **kwargs)
        if result is None:
            self.fail_open_todo(f"{doing} returned None. Finish its TODOs so that it returns the result.")
        return result

    def expect_raises(self, error: type, doing: str, call, returns_value: bool = True) -> None:
        """The lesson's code must stop with error (a clear message), not run on.
        returns_value: the function normally returns something, so None means
        its TODOs are still open."""
        try:
            result = call()
        except error:
            return
        except Exception as err:  # noqa: BLE001 - report whatever the lesson raised
            fail(self.describe_error(err, doing) + f"\nIt should raise {error.__name__}.")
        if result is None and returns_value:
            self.fail_open_todo(f"{doing} returned None; it should raise {error.__name__}.")
        fail(f"{doing} did not raise {error.__name__}: bad input must stop with a clear message.")

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
        hint = _hint_for(err)
        return message + (f"\nWhat to do: {hint}" if hint else "")

    def _open_todo(self, err: Exception) -> str | None:
        """What is left to do, when err is the mark of an unfinished TODO."""
        if isinstance(err, NameError) and getattr(err, "name", None):
            line = import_hint(self.step, err.name)
            if line:
                return f"`{err.name}` is not imported: add `{line}` at the top of the file."
            return f"`{err.name}` is not defined: check the TODO that should create it."
        if "NoneType" in str(err) or "returned None" in str(err):
            return (
                "a value is still None: a placeholder (`None`, `pass` or `return None`) "
                "is waiting for its code. Complete the TODOs in order."
            )
        return None


def _hint_for(err: Exception) -> str | None:
    if "SymbolicDim" in str(err) and "band_part" in "".join(traceback.format_tb(err.__traceback__)):
        return (
            "F.band_part takes only Python ints, and here num_tokens is symbolic (as in the KV "
            "cache of step 14). Build the mask from positions instead: Tensor.arange for the keys "
            "and the queries, compare them, and F.where (the # Hint lines show how)."
        )
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
    listed = [type(a).__name__ if hasattr(a, "__dataclass_fields__") else repr(a) for a in args]
    listed += [f"{k}={v!r}" for k, v in kwargs.items()]
    with lesson.learner_code(f"{cls_name}({', '.join(listed)})"):
        instance = cls(*args, **kwargs)
    todos = open_todos(instance)
    if todos:
        lesson.fail_open_todo(
            f"{cls_name} leaves {', '.join(f'self.{t}' for t in todos)} as None. "
            "Create each as the # Hint lines above it say."
        )
    return instance
