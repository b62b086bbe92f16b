"""hint.py and the checks' pointer to it.

- hint.py shows the ladder of the first open TODO one rung per call, ending
  with the solution's lines, and moves on when that TODO is filled in;
- filling every ladder's solution in, in the order hint.py asks for them,
  closes every TODO of every step;
- bad input is one line on stderr and exit status 2;
- after the same check failed in two runs in a row, its message names
  hint.py (never for --target solutions).

hint.py runs as the learner runs it, in a new process, on copies in a
temporary folder, with a temporary state file (HINTS_STATE_FILE): the
repository's own .hints-state.json is never touched.
"""

import ast
import difflib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import hint
from tests.lessons import REPO, STEPS, skeleton_path, solution_path


def learners_env(state, pixi: bool) -> dict:
    """The environment of a pip (or pixi) user, with a temporary state file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXI_")}
    env["HINTS_STATE_FILE"] = str(state)
    if pixi:
        env["PIXI_PROJECT_ROOT"] = str(REPO)
    return env


def run_hint(tmp_path, *args, pixi: bool = False):
    env = learners_env(tmp_path / "state.json", pixi)
    return subprocess.run([sys.executable, "hint.py", *args], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)


def flat(text: str) -> str:
    return " ".join(text.split())


def folder_with(tmp_path, step: int, source: str):
    folder = tmp_path / "mine"
    folder.mkdir(exist_ok=True)
    (folder / f"step_{step:02d}.py").write_text(source)
    return folder


def fill(source: str, todos: list[dict], n: int) -> str:
    """source with TODO n done as a learner does it: its placeholders
    replaced by the ladder's solution lines, written under its comments."""
    todo, lines = todos[n], source.splitlines()
    same_text = sum(t["todo"] == todo["todo"] for t in todos[:n])  # a TODO's text may repeat in a step
    start, _, block = [c for c in hint.todo_comments(lines) if c[1] == todo["todo"]][same_text]
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    at = start + 1
    while at < len(lines) and lines[at].strip().startswith("#"):
        at += 1
    gone = {i for i in block if hint.placeholder(lines[i])}
    new = [indent + line if line.strip() else line for line in todo["solution"].splitlines()]
    return "\n".join(lines[:at] + new + [line for i, line in enumerate(lines[at:], at) if i not in gone]) + "\n"


def test_rungs_come_one_at_a_time_then_the_solution_then_the_next_todo(tmp_path):
    first, second = hint.ladder(1)[:2]
    total = len(first["rungs"]) + 1
    folder = folder_with(tmp_path, 1, skeleton_path(1).read_text())
    for k in range(1, total + 1):
        result = run_hint(tmp_path, "s01", "--target", str(folder))
        assert result.returncode == 0, result.stderr
        shown = flat(result.stdout)
        assert f"TODO 1 of {len(hint.ladder(1))}: {first['todo']}" in shown
        assert f"Rung {k} of {total}" in shown and f"Rung {k + 1} of" not in shown
        for rung in first["rungs"][:k]:
            assert flat(rung) in shown  # the rungs seen so far, and the new one
        for rung in first["rungs"][k:]:
            assert flat(rung) not in shown
        assert ("the solution's lines" in shown) == (k == total)
        assert (first["solution"] in result.stdout) == (k == total)
    again = run_hint(tmp_path, "1", "--target", str(folder))
    assert f"Rung {total} of {total}" in again.stdout and "last rung" in again.stdout
    (folder / "step_01.py").write_text(fill(skeleton_path(1).read_text(), hint.ladder(1), 0))
    result = run_hint(tmp_path, "step_01", "--target", str(folder))
    assert f"TODO 2 of {len(hint.ladder(1))}: {second['todo']}" in flat(result.stdout)
    assert "Rung 1 of" in result.stdout and "Rung 2 of" not in result.stdout


def test_the_import_todo_is_open_until_its_imports_are_written(tmp_path):
    todos = hint.ladder(7)
    folder = folder_with(tmp_path, 7, skeleton_path(7).read_text())
    result = run_hint(tmp_path, "07", "--target", str(folder))
    assert f"TODO 1 of {len(todos)}" in result.stdout and "does not import" in result.stdout
    (folder / "step_07.py").write_text(fill(skeleton_path(7).read_text(), todos, 0))
    result = run_hint(tmp_path, "7", "--target", str(folder))
    assert f"TODO 2 of {len(todos)}: {todos[1]['todo']}" in flat(result.stdout)
    assert "still holds the placeholder" in result.stdout


def filled_in(step: int) -> str:
    """The skeleton with every TODO done, in the order hint.py asks for them."""
    todos = hint.ladder(step)
    source, asked = skeleton_path(step).read_text(), []
    while (found := hint.first_open(source, todos)) is not None:
        n, _ = found
        assert not asked or n > asked[-1], f"step {step:02d}: hint.py asked for TODO {n + 1} after {asked[-1] + 1}"
        asked.append(n)
        source = fill(source, todos, n)
    return source


def without_docstrings_and_imports(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            node.body = body[1:] or [ast.Pass()]
    tree.body = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))]
    return ast.unparse(tree)


@pytest.mark.parametrize("step", STEPS, ids=lambda s: f"{s:02d}")
def test_filling_in_the_ladders_in_order_closes_every_todo(step):
    source, todos = filled_in(step), hint.ladder(step)
    compile(source, f"step_{step:02d}.py", "exec")
    lines = source.splitlines()
    left = [lines[i].strip() for _, _, block in hint.todo_comments(lines) for i in block if hint.placeholder(lines[i])]
    written = {statement for todo in todos for statement in hint.statements(todo["solution"])}
    assert all(hint.statements(line)[0] in written for line in left), f"placeholders left: {left}"


@pytest.mark.parametrize("step", STEPS, ids=lambda s: f"{s:02d}")
def test_completing_every_todo_gives_the_solution(step):
    """The skeleton's given lines plus the ladders' solutions are the
    solution's code (docstrings and the order of imports aside)."""
    source, solution = filled_in(step), solution_path(step).read_text()
    assert set(hint.imported(ast.parse(source))) == set(hint.imported(ast.parse(solution)))
    ours, theirs = without_docstrings_and_imports(source), without_docstrings_and_imports(solution)
    assert ours == theirs, "\n".join(difflib.unified_diff(theirs.splitlines(), ours.splitlines(), "solution", "filled in", lineterm=""))


def test_a_finished_file_has_no_todo_open_and_names_the_check(tmp_path):
    folder = folder_with(tmp_path, 7, solution_path(7).read_text())
    result = run_hint(tmp_path, "s07", "--target", str(folder))
    assert result.returncode == 0 and "no TODO open" in result.stdout
    assert f"python -m pytest tests/test_step_07.py --target {folder}" in result.stdout
    result = run_hint(tmp_path, "s07", "--target", str(folder), pixi=True)
    assert f"pixi run s07 --target {folder}" in result.stdout


def test_a_finished_file_with_a_wrong_line_names_that_todo(tmp_path):
    source = skeleton_path(1).read_text()
    for n in range(len(hint.ladder(1))):
        source = fill(source, hint.ladder(1), n)
    folder = folder_with(tmp_path, 1, source.replace("= 50257", "= 50000"))
    result = run_hint(tmp_path, "s01", "--target", str(folder))
    assert "no TODO open" in result.stdout and "If a check fails: TODO 1 (" in result.stdout
    result = run_hint(tmp_path, "s01", "--all", "--target", str(folder))
    assert "TODO 1 of" in result.stdout and hint.ladder(1)[0]["solution"] in result.stdout


def test_all_shows_the_whole_ladder_and_reset_forgets(tmp_path):
    first = hint.ladder(2)[1]
    source = fill(skeleton_path(2).read_text(), hint.ladder(2), 0)
    folder = folder_with(tmp_path, 2, source)
    total = len(first["rungs"]) + 1
    result = run_hint(tmp_path, "s02", "--all", "--target", str(folder))
    assert all(f"Rung {k} of {total}" in result.stdout for k in range(1, total + 1))
    assert first["solution"] in result.stdout
    assert run_hint(tmp_path, "s02", "--reset").returncode == 0
    result = run_hint(tmp_path, "s02", "--target", str(folder))
    assert "Rung 1 of" in result.stdout and "Rung 2 of" not in result.stdout


def test_without_todo_comments_the_first_ladder_not_yet_written_is_shown(tmp_path):
    lines = [line for line in skeleton_path(1).read_text().splitlines() if not line.strip().startswith("#")]
    folder = folder_with(tmp_path, 1, "\n".join(lines) + "\n")
    result = run_hint(tmp_path, "s01", "--target", str(folder))
    assert "TODO 1 of" in result.stdout and "no TODO comments left" in result.stdout
    todo = hint.ladder(1)[0]
    source = "\n".join("    " + todo["solution"] if line.strip() == "vocab_size: int = None" else line for line in lines)
    (folder / "step_01.py").write_text(source + "\n")
    assert "TODO 2 of" in run_hint(tmp_path, "s01", "--target", str(folder)).stdout


@pytest.mark.parametrize(
    "args, says",
    [
        (["s99"], "no lesson 's99'"),
        (["seven"], "no lesson 'seven'"),
        ([], "name a step"),
        (["s07", "--bogus"], "unrecognized arguments"),
        (["s07", "--target", "EMPTY"], "step_07.py does not exist"),
        (["s07", "--target", "BROKEN"], "syntax error at line 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, args, says):
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "BROKEN").mkdir()
    (tmp_path / "BROKEN" / "step_07.py").write_text("class (:\n")
    args = [str(tmp_path / a) if a in ("EMPTY", "BROKEN") else a for a in args]
    result = run_hint(tmp_path, *args)
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


def test_hint_is_quick_and_needs_neither_max_nor_torch(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HINTS_STATE_FILE", str(tmp_path / "state.json"))
    started = time.perf_counter()
    assert hint.main(["s07"]) == 0
    assert time.perf_counter() - started < 0.5
    assert "Rung 1 of" in capsys.readouterr().out
    code = "import sys, hint; hint.main(['s07']); print(sorted({'max', 'torch'} & set(sys.modules)))"
    env = learners_env(tmp_path / "state.json", pixi=False)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    assert result.stdout.strip().splitlines()[-1] == "[]"


# --- the checks point to hint.py after two failed runs in a row --------------------


def pytest_on(folder, state, target=None, pixi=False):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_step_01.py", "--target", target or str(folder)],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=learners_env(state, pixi),
    )


def test_a_check_that_fails_twice_in_a_row_points_to_hint(tmp_path):
    state = tmp_path / "state.json"
    assert pytest_on(tmp_path, state, target="solutions").returncode == 0
    assert not state.exists(), "a run on the reference solutions wrote the learner's state file"
    folder = folder_with(tmp_path, 1, solution_path(1).read_text().replace("vocab_size: int = 50257", "vocab_size: int = 50000"))
    pip_form = f"{sys.executable} hint.py s01 --target {folder}"
    first = pytest_on(folder, state)
    assert first.returncode == 1 and "50000" in first.stdout and "Stuck?" not in first.stdout
    second = pytest_on(folder, state, pixi=True)
    assert (
        f"Stuck? `pixi run hint s01 --target {folder}` (or `python hint.py s01 --target {folder}`) "
        "shows a hint for your first open TODO, "
        "one step at a time." in second.stdout
    ), second.stdout
    # Only the check that failed, not the one that passed (counted in the failure reports: under CI=true
    # pytest repeats each message whole in its short summary).
    assert second.stdout.partition("short test summary info")[0].count("Stuck?") == 1
    third = pytest_on(folder, state)
    assert f"Stuck? `{pip_form}` shows a hint" in third.stdout
    (folder / "step_01.py").write_text(solution_path(1).read_text())
    assert pytest_on(folder, state).returncode == 0
    assert json.loads(state.read_text()).get("failed", {}).get(str(folder)) is None
    (folder / "step_01.py").write_text(solution_path(1).read_text().replace("= 50257", "= 50000"))
    assert "Stuck?" not in pytest_on(folder, state).stdout  # the run before it passed


def test_open_mojo_todos_are_pointed_to_before_the_python_ladder(tmp_path):
    """Lesson 16: the placeholders of the Mojo kernel (its hints sit beside them) are named with their lines;
    once the kernel is written, only the Python ladder is shown."""
    folder = folder_with(tmp_path, 16, skeleton_path(16).read_text())
    shutil.copytree(REPO / "steps" / "kernels_16", folder / "kernels_16")
    placeholders = [str(n) for n, line in enumerate((folder / "kernels_16" / "matvec.mojo").read_text().splitlines(), 1)
                    if line.strip() == "pass"]
    shown = flat(run_hint(tmp_path, "s16", "--target", str(folder)).stdout)
    assert f"Mojo TODOs still open in {folder}/kernels_16/matvec.mojo (lines {', '.join(placeholders)})" in shown
    assert f"TODO 1 of {len(hint.ladder(16))}" in shown
    shutil.rmtree(folder / "kernels_16")
    shutil.copytree(REPO / "solutions" / "kernels_16", folder / "kernels_16")
    shown = flat(run_hint(tmp_path, "s16", "--target", str(folder)).stdout)
    assert "Mojo TODOs" not in shown and f"TODO 1 of {len(hint.ladder(16))}" in shown
