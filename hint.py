"""A hint for the first open TODO of a step, one rung at a time.

    python hint.py s07          (or 07, 7, step_07; pixi run hint s07)
    python hint.py s07 --all    the whole ladder of that TODO at once
    python hint.py s07 --reset  forget which rungs you have seen (no step: all)
    python hint.py s07 --target DIR   a folder of step_NN.py files (or solutions), as the checks take

Each TODO of steps/step_NN.py has a ladder in hints/step_NN.toml: a few rungs
of prose, each more concrete than the one before, and last the solution's
lines. A TODO is open while the lines under its comment (up to the next
TODO, or the end of the function) still hold a placeholder: `pass`,
`return None`, `name = None` or `a, b = None, None`; the import TODO is open
while a name it imports is not imported. The rungs you have seen are kept in
.hints-state.json (or the file the HINTS_STATE_FILE variable names), which
the checks also use to remember which of them failed last time.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import sys
import textwrap
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent
HINTS = REPO / "hints"
TODO = re.compile(r"^(\s*)# TODO: ?(.*?)\s*$")
STEP = re.compile(r"^(?:s|step_?)?0*(\d{1,2})(?:\.py)?$", re.IGNORECASE)


class Refusal(Exception):
    """Bad input: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Refusal(message)


# --- the state file (also read and written by conftest.py) -----------------------


def state_path() -> Path:
    return Path(os.environ.get("HINTS_STATE_FILE") or REPO / ".hints-state.json")


def load_state() -> dict:
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def save_state(state: dict) -> None:
    try:
        state_path().write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only checkout still gets its hints, only not remembered


# --- reading a step ----------------------------------------------------------------


def step_number(text: str) -> int:
    match = STEP.match(text.strip())
    lessons = sorted(int(p.stem[5:]) for p in HINTS.glob("step_[0-9][0-9].toml"))
    if not match or int(match.group(1)) not in lessons:
        known = f"{lessons[0]:02d} to {lessons[-1]:02d}" if lessons else "none"
        raise Refusal(f"no lesson {text!r}: give a step such as s07 (lessons with hints: {known})")
    return int(match.group(1))


def ladder(step: int) -> list[dict]:
    path = HINTS / f"step_{step:02d}.toml"
    try:
        todos = tomllib.loads(path.read_text())["todo"]
        for todo in todos:
            todo["solution"] = textwrap.dedent(todo["solution"]).strip("\n")
            statements(todo["solution"])  # raises SyntaxError when it is not Python
            if not isinstance(todo["todo"], str) or not all(isinstance(r, str) for r in todo["rungs"]):
                raise TypeError(f"{todo['todo']!r}: todo and rungs must be strings")
    except (OSError, ValueError, KeyError, TypeError, SyntaxError) as err:
        raise Refusal(f"cannot read {path.relative_to(REPO)}: {type(err).__name__}: {err}") from None
    return todos


def statements(source: str) -> list[str]:
    """The statements of source, each normalized by ast (comments and spacing dropped)."""
    return [ast.unparse(node) for node in ast.parse(textwrap.dedent(source)).body]


def placeholder(line: str) -> bool:
    """`pass`, `return None`, `name = None`, `name: T = None`, `a, b = None, None`."""
    try:
        body = ast.parse(line.strip()).body
    except SyntaxError:
        return False
    if len(body) != 1:
        return False
    node = body[0]
    if isinstance(node, ast.Pass):
        return True
    if not isinstance(node, (ast.Return, ast.Assign, ast.AnnAssign)) or node.value is None:
        return False
    values = node.value.elts if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple) else [node.value]
    return all(isinstance(v, ast.Constant) and v.value is None for v in values)


def imported(tree: ast.Module) -> list[str]:
    """The names the module's top-level imports bind, in order."""
    return [
        alias.asname or alias.name.split(".")[0]
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]


def todo_comments(lines: list[str]) -> list[tuple[int, str, list[int]]]:
    """(line index, text, indices of its block) for every `# TODO:` comment."""
    found = [(i, m.group(2), len(m.group(1))) for i, line in enumerate(lines) if (m := TODO.match(line))]
    result = []
    for n, (start, text, indent) in enumerate(found):
        stop = found[n + 1][0] if n + 1 < len(found) else len(lines)
        block = []
        for i in range(start + 1, stop):
            stripped = lines[i].strip()
            if not stripped or stripped.startswith("#"):
                continue
            depth = len(lines[i]) - len(lines[i].lstrip())
            if depth < indent or (depth == indent and stripped.startswith(("def ", "class ", "@"))):
                break  # the end of the TODO's function or class
            block.append(i)
        result.append((start, text, block))
    return result


def not_written(todo: dict, tree: ast.Module) -> str | None:
    """Why the TODO's solution is not in the file (its imports, or its lines), or None."""
    solution = statements(todo["solution"])
    imports = [s for s in solution if s.startswith(("import ", "from "))]
    if imports and len(imports) == len(solution):
        missing = [name for name in imported(ast.parse("\n".join(imports))) if name not in imported(tree)]
        return f"your file does not import {', '.join(missing)} yet" if missing else None
    written = {ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.stmt)}
    return None if set(solution) <= written else "these lines are not in your file yet"


def first_open(source: str, todos: list[dict]):
    """(index of the first open TODO, why it is open) or None when every TODO is done."""
    lines, tree = source.splitlines(), ast.parse(source)
    comments = todo_comments(lines)
    matched, at = {}, 0
    for n, todo in enumerate(todos):  # the ladder's TODOs, found in order in the file
        for k in range(at, len(comments)):
            if comments[k][1] == todo["todo"].strip():
                matched[n], at = comments[k], k + 1
                break
    for n, todo in enumerate(todos):
        solution = statements(todo["solution"])
        if all(s.startswith(("import ", "from ")) for s in solution) or not matched:
            # the import TODO; or no TODO comment is left: the first TODO whose lines are not in the file
            why = not_written(todo, tree)
            if why:
                return n, why if matched else f"your file has no TODO comments left; {why}"
            continue
        if n not in matched:
            continue  # its comment was deleted: taken as done
        for i in matched[n][2]:
            if placeholder(lines[i]) and statements(lines[i].strip())[0] not in solution:
                return n, f"line {i + 1} still holds the placeholder `{lines[i].strip()}`"
    return None


def first_different(source: str, todos: list[dict]) -> int | None:
    """The first TODO whose lines are not the solution's (written another way, or wrong)."""
    tree = ast.parse(source)
    return next((n for n, todo in enumerate(todos) if not_written(todo, tree)), None)


# --- what the learner sees ---------------------------------------------------------


def commands(step: int, target: str | None) -> tuple[str, str]:
    """(the hint command, the check command) in the form the learner uses."""
    extra = f" --target {shlex.quote(target)}" if target else ""
    if os.environ.get("PIXI_PROJECT_ROOT"):
        return f"pixi run hint s{step:02d}{extra}", f"pixi run s{step:02d}{extra}"
    python = shlex.quote((getattr(sys, "orig_argv", None) or ["python"])[0])  # as the learner typed it
    return f"{python} hint.py s{step:02d}{extra}", f"{python} -m pytest tests/test_step_{step:02d}.py{extra}"


def rung_text(todo: dict, k: int, step: int) -> str:
    rungs = todo["rungs"]
    heading = f"Rung {k + 1} of {len(rungs) + 1}"
    if k < len(rungs):
        body = textwrap.fill(rungs[k], width=76, initial_indent="    ", subsequent_indent="    ")
        return f"{heading}:\n{body}"
    solution = textwrap.indent(todo["solution"], "    ")
    return f"{heading}, the solution's lines (solutions/solution_{step:02d}.py):\n{solution}"


def shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def mojo_todos(step: int, path: Path) -> str:
    """Lesson 16: where the Mojo placeholders (`pass`) in the lesson's folder beside the step file are, if any;
    their hints are in the file."""
    from tests.lessons import LESSON_FOLDERS
    from tools.mojo_package import placeholders

    found = placeholders(path.parent / LESSON_FOLDERS[step]) if step in LESSON_FOLDERS else {}
    if not found:
        return ""
    open_at = [f"{shown(source)} (line{'s' * (len(lines) > 1)} {', '.join(map(str, lines))})"
               for source, lines in found.items()]
    return ("Mojo TODOs still open in " + ", ".join(open_at) + ": their hints are the # Hint: lines beside them, "
            "and the check builds the kernel first. The ladders below are for the Python TODOs.\n\n")


def show(step: int, path: Path, target: str | None, show_all: bool) -> str:
    return mojo_todos(step, path) + show_python(step, path, target, show_all)


def show_python(step: int, path: Path, target: str | None, show_all: bool) -> str:
    try:
        source = path.read_text()
    except OSError:
        raise Refusal(f"{shown(path)} does not exist") from None
    try:
        ast.parse(source)
    except SyntaxError as err:
        raise Refusal(f"{shown(path)} has a syntax error at line {err.lineno}: {err.msg}; fix it first") from None
    todos = ladder(step)
    hint_command, check_command = commands(step, target)
    found = first_open(source, todos)
    different = first_different(source, todos)
    if found is None and (different is None or not show_all):
        done = f"{shown(path)}: no TODO open. Run `{check_command}` to check it."
        if different is not None:
            done += (
                f"\nIf a check fails: TODO {different + 1} ({todos[different]['todo']}) is the first whose lines "
                f"are not the solution's (written another way, or not right yet); `{hint_command} --all` shows its ladder."
            )
        return done
    n, why = found or (different, "no TODO is open, but your lines for this one are not the solution's")
    todo = todos[n]
    state = load_state()
    seen = state.setdefault("seen", {}).setdefault(f"{step:02d}" + (f" {target}" if target else ""), {})
    key = f"{n + 1}: {todo['todo']}"
    last = len(todo["rungs"])  # the index of the solution's rung
    upto = last if show_all else min(seen.get(key, -1) + 1, last)
    seen[key] = upto
    save_state(state)
    parts = [f"{shown(path)}, TODO {n + 1} of {len(todos)}: {todo['todo']}", f"({why})", ""]
    parts += [rung_text(todo, k, step) + "\n" for k in range(upto + 1)]
    if upto < last:
        parts.append(f"Stuck still? `{hint_command}` shows the next rung.")
    else:
        parts.append(f"That was the last rung. Write your lines, then run `{check_command}`.")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="hint.py", description="A hint for the first open TODO of a step.")
    parser.add_argument("step", nargs="?", help="the step: s07, 07, 7 or step_07")
    parser.add_argument("--all", action="store_true", help="show every rung of the ladder at once")
    parser.add_argument("--reset", action="store_true", help="forget which rungs were shown")
    parser.add_argument("--target", help="a folder of step_NN.py files instead of steps/")
    try:
        args = parser.parse_args(argv)
        if args.step is None and not args.reset:
            raise Refusal("name a step, for example: python hint.py s07")
        step = step_number(args.step) if args.step is not None else None
        if args.reset:
            state = load_state()
            seen = state.get("seen", {})
            for key in list(seen):
                if step is None or key.split(" ")[0] == f"{step:02d}":
                    del seen[key]
            save_state(state)
            print(f"Forgot the hints shown{f' for step {step:02d}' if step else ''}.")
            return 0
        if args.target == "solutions":  # as the checks take it: the reference solutions
            path = REPO / "solutions" / f"solution_{step:02d}.py"
        else:
            folder = REPO / "steps" if args.target in (None, "steps") else Path(args.target)
            if not folder.is_dir():
                raise Refusal(f"--target {args.target}: no such folder")
            path = folder / f"step_{step:02d}.py"
        print(show(step, path, args.target if args.target not in (None, "steps") else None, args.all))
    except Refusal as refusal:
        print(f"hint.py: {refusal}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
