"""The project's own promises: every lesson in tests/lessons.py has its
files, task and README row; pixi.toml and requirements.txt pin the same
versions; the skeletons' hints never give a solution's line away, and every
TODO has a hint ladder that ends with the solution's lines; every lesson
follows the one import rule; every number a lesson quotes is the real one."""

import ast
import builtins
import re
import shlex
import sys
import textwrap

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.lessons import LESSONS, REPO, STEPS, check_file, skeleton_path, solution_path, task

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# The same package under its conda (pixi) and PyPI (pip) names.
PIXI_TO_PIP = {"modular": "max", "pytorch": "torch"}
NOT_PACKAGES = {"python"}


def pixi() -> dict:
    return tomllib.loads((REPO / "pixi.toml").read_text())


def pip_requirements() -> dict[str, Requirement]:
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            found[requirement.name] = requirement
    return found


def conda_specifier(spec: str) -> SpecifierSet:
    """A conda version spec such as '25.7.*' or '>=2.5,<2.14' as a PEP 440 set."""
    spec = spec.strip()
    return SpecifierSet(f"=={spec}" if spec[0].isdigit() else spec)


def test_pixi_and_requirements_pin_the_same_versions():
    pixi_deps = {
        PIXI_TO_PIP.get(name, name): conda_specifier(spec)
        for name, spec in pixi()["dependencies"].items()
        if name not in NOT_PACKAGES
    }
    pip = pip_requirements()
    assert set(pixi_deps) <= set(pip), f"pixi.toml {sorted(pixi_deps)} vs requirements.txt {sorted(pip)}"
    for name, pixi_spec in pixi_deps.items():
        assert pip[name].specifier == pixi_spec, f"{name}: requirements.txt {pip[name].specifier} vs pixi.toml {pixi_spec}"
    assert pixi_deps["max"] == SpecifierSet("==25.7.*"), "MAX must stay on 25.7 (max.nn.module_v3)"


# --- the lessons --------------------------------------------------------------


def test_every_lesson_has_its_files_task_and_readme_row():
    tasks = pixi()["tasks"]
    readme = (REPO / "README.md").read_text()
    for step, title in LESSONS.items():
        for path in (skeleton_path(step), solution_path(step), REPO / check_file(step)):
            assert path.exists(), f"lesson {step:02d} has no {path.relative_to(REPO)}"
        name = task(step)
        assert name in tasks, f"pixi.toml has no task {name}"
        words = shlex.split(tasks[name])
        assert words == ["python", "-m", "pytest", check_file(step)], f"{name} runs {tasks[name]!r}"
        row = f"| {step:02d} | {title} | `pixi run {name}` |"
        assert row in readme, f"README.md's table has no row {row!r}"
    extra = sorted(set(int(m) for m in re.findall(r"step_(\d\d)\.py", " ".join(p.name for p in (REPO / "steps").iterdir()))) - set(LESSONS))
    assert not extra, f"steps/ holds lessons {extra} that tests/lessons.py does not list"
    assert shlex.split(tasks["steps"]) == ["python", "-m", "pytest", "-m", "lesson"]
    assert "--target solutions" in tasks["test"]


def lesson_docstring(step: int) -> str:
    return ast.get_docstring(ast.parse(skeleton_path(step).read_text())) or ""


def test_every_lesson_names_the_task_that_checks_it():
    for step in STEPS:
        runs = re.findall(r"Run: pixi run (\S+)", lesson_docstring(step))
        assert runs == [task(step)], f"step {step:02d} tells the learner to run {runs}"


# --- hints that make the learner write the line ---------------------------------
#
# A skeleton's `# Hint:` lines say what a line must do and why, and which MAX
# call does it; they never hold the finished line (the import hints of the
# first TODO excepted: the import rule below). The finished lines are the
# last rung of the TODO's ladder in hints/step_NN.toml (hints/README.md),
# which `python hint.py sNN` shows one rung at a time; they must be the
# solution's, so that a change to a solution cannot leave a ladder teaching
# the old code. Ladders are checked rather than generated from the
# solutions: a skeleton is a lesson, written for a reader, with TODOs that
# group lines and hints in prose.

HINT = re.compile(r"^\s*# Hint: ?(.*)$")
TODO = re.compile(r"^\s*# TODO: ?(.*?)\s*$")


def hint_blocks(source: str) -> list[list[str]]:
    """Consecutive `# Hint:` lines, as blocks of their text."""
    blocks, current = [], []
    for line in source.splitlines():
        match = HINT.match(line)
        if match:
            current.append(match.group(1))
        elif current:
            blocks.append(current)
            current = []
    return blocks + ([current] if current else [])


def as_code(lines: list[str]) -> list[list[str]] | None:
    """The hint's statements, each as its normalized lines, or None for prose."""
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        try:  # a block such as `if x:` + `    y` loses nothing when dedented per line
            tree = ast.parse("\n".join(line.strip() for line in lines))
        except SyntaxError:
            return None
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Name):
        return None  # a single word is prose
    return [[line.strip() for line in ast.unparse(node).splitlines()] for node in tree.body]


def normalized_lines(source: str) -> list[str]:
    return [line.strip() for line in ast.unparse(ast.parse(source)).splitlines()]


def appears_in(statement: list[str], solution: list[str]) -> bool:
    """A statement's lines appear in consecutive solution lines; a one-line
    statement may be part of a line (a hint can show just the right-hand side),
    and an import may name some of the names of the solution's import."""
    if statement[0].startswith("from "):
        module, _, names = statement[0][5:].partition(" import ")
        wanted = set(names.split(", "))
        return any(
            line.startswith(f"from {module} import ") and wanted <= set(line.partition(" import ")[2].split(", "))
            for line in solution
        )
    if len(statement) == 1:
        return any(statement[0] in line for line in solution)
    return any(
        solution[start : start + len(statement)] == statement
        for start in range(len(solution) - len(statement) + 1)
    )


def is_import(statement: list[str]) -> bool:
    return statement[0].startswith(("import ", "from "))


def complete_in(statement: list[str], solution: list[str]) -> bool:
    """The statement is whole lines of the solution (an import: some of the names of its import)."""
    if is_import(statement):
        return appears_in(statement, solution)
    return any(solution[i : i + len(statement)] == statement for i in range(len(solution) - len(statement) + 1))


def answers(source: str) -> set[str]:
    """The solution's right-hand sides and returned values, normalized: what a hint must not spell out."""
    return {
        ast.unparse(node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Return)) and node.value is not None
    }


def code_in(lines: list[str]) -> list[list[str]]:
    """The statements in hint lines: the lines as one block of code, else each line that is code on its own."""
    whole = as_code(lines)
    return whole if whole is not None else [s for line in lines for s in as_code([line]) or []]


def gives_away(statement: list[str], solution: list[str], rhs: set[str]) -> bool:
    """A hint that is a complete line of the solution, or the whole right-hand side of one."""
    if is_import(statement):
        return False
    return complete_in(statement, solution) or (len(statement) == 1 and statement[0] in rhs)


def test_no_hint_in_a_skeleton_is_a_line_of_the_solution():
    given_away = []
    for step in STEPS:
        source = solution_path(step).read_text()
        solution, rhs = normalized_lines(source), answers(source)
        for block in hint_blocks(skeleton_path(step).read_text()):
            for statement in code_in(block):
                if gives_away(statement, solution, rhs):
                    given_away.append(f"steps/step_{step:02d}.py: {' / '.join(statement)}")
    assert not given_away, (
        "hints that hold the solution's code (say in prose what the line must do, "
        "and move the line to the ladder's solution in hints/step_NN.toml):\n" + "\n".join(given_away)
    )


def ladder(step: int) -> list[dict]:
    path = REPO / "hints" / f"step_{step:02d}.toml"
    return tomllib.loads(path.read_text()).get("todo", []) if path.exists() else []


def test_every_todo_has_a_ladder_that_ends_with_the_solutions_lines():
    problems = []
    for step in STEPS:
        where = f"hints/step_{step:02d}.toml"
        todos = [m.group(1) for line in skeleton_path(step).read_text().splitlines() if (m := TODO.match(line))]
        entries = ladder(step)
        texts = [entry.get("todo") for entry in entries]
        if not (REPO / where).exists():
            problems.append(f"{where} is missing: steps/step_{step:02d}.py has {len(todos)} TODOs (hints/README.md)")
        elif texts != todos:
            first = next((i for i, (a, b) in enumerate(zip(texts, todos)) if a != b), min(len(texts), len(todos)))
            problems.append(
                f"{where}: {len(texts)} ladders for the {len(todos)} TODOs of steps/step_{step:02d}.py; "
                f"the first difference is number {first + 1}: "
                f"{(texts[first:] or [None])[0]!r} vs {(todos[first:] or [None])[0]!r}"
            )
        source = solution_path(step).read_text()
        solution, rhs = normalized_lines(source), answers(source)
        for entry in entries:
            name = f"{where}, {entry.get('todo')!r}"
            rungs = entry.get("rungs")
            if not isinstance(rungs, list) or not rungs or not all(isinstance(r, str) and r.strip() for r in rungs):
                problems.append(f"{name}: no prose rung")
            elif any(gives_away(st, solution, rhs) for rung in rungs for st in code_in(rung.splitlines())):
                problems.append(f"{name}: a rung holds the solution's line (only the last rung, `solution`, may)")
            try:
                tree = ast.parse(textwrap.dedent(entry.get("solution", "")))
            except SyntaxError as err:
                problems.append(f"{name}: its solution is not Python ({err.msg}, line {err.lineno})")
                continue
            wanted = [[line.strip() for line in ast.unparse(node).splitlines()] for node in tree.body]
            missing = [statement for statement in wanted if not complete_in(statement, solution)]
            if not wanted or missing:
                problems.append(f"{name}: solution lines not in solutions/solution_{step:02d}.py: {missing or 'none given'}")
    assert not problems, "\n".join(problems)


def test_hint_checker_tells_code_from_prose():
    assert as_code(["Linear(self.embed_dim, 3 * self.embed_dim, bias=True)"]) == [
        ["Linear(self.embed_dim, 3 * self.embed_dim, bias=True)"]
    ]
    assert as_code(["if name.endswith(SUFFIXES): array = array.T"]) == [["if name.endswith(SUFFIXES):", "array = array.T"]]
    assert as_code(["import math", "from a import b"]) == [["import math"], ["from a import b"]]
    assert as_code(["Do not call int() on sequence_length: it may be symbolic"]) is None
    assert appears_in(["f(y)"], ["z = 1", "x = f(y)"])
    assert not appears_in(["x = f(z)"], ["z = 1", "x = f(y)"])
    assert appears_in(["if a:", "b"], ["z = 1", "if a:", "b"])
    assert appears_in(["from m import a, c"], ["from m import a, b, c"])
    assert not appears_in(["from m import a, d"], ["from m import a, b, c"])
    assert not appears_in(["if a:", "b"], ["if a:", "c", "b"])
    solution, rhs = ["x = f(y)", "return g(x)"], {"f(y)", "g(x)"}
    assert gives_away(["x = f(y)"], solution, rhs) and gives_away(["f(y)"], solution, rhs)
    assert gives_away(["g(x)"], solution, rhs) and not gives_away(["y"], solution, rhs)
    assert not gives_away(["from m import a"], ["from m import a"], set())
    assert code_in(["Call f on y, then", "x = f(y)"]) == [["x = f(y)"]]


# --- one rule for imports --------------------------------------------------------
#
# The skeleton imports everything its own lines use, so that it imports
# cleanly and the first failure is always an open TODO. The imports that
# only the learner's code needs are the learner's to write: the first TODO
# lists them as `# Hint:` lines. (README.md, "The learner's loop".)


def imported_names(tree: ast.Module) -> dict[str, str]:
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = ast.unparse(node)
    return names


def used_names(tree: ast.Module) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def defined_names(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.add(node.id)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
    return found


def hinted_imports(source: str) -> set[str]:
    names = set()
    for block in hint_blocks(source):
        for line in block:
            if line.startswith(("import ", "from ")):
                names |= set(imported_names(ast.parse(line)))
    return names


def test_every_skeleton_imports_what_it_uses_and_hints_the_rest():
    for step in STEPS:
        source = skeleton_path(step).read_text()
        skeleton = ast.parse(source)
        solution = ast.parse(solution_path(step).read_text())
        given, used = imported_names(skeleton), used_names(skeleton)
        unknown = used - set(given) - defined_names(skeleton) - set(dir(builtins)) - {"__file__", "__name__"}
        assert not unknown, f"steps/step_{step:02d}.py uses {sorted(unknown)} without importing them"
        gifts = set(given) - used
        assert not gifts, f"steps/step_{step:02d}.py imports {sorted(gifts)}, which only the learner's code uses"
        yours = set(imported_names(solution)) - set(given)
        assert hinted_imports(source) == yours, (
            f"steps/step_{step:02d}.py: the import hints name {sorted(hinted_imports(source))}, "
            f"the learner must import {sorted(yours)}"
        )


# --- numbers in the lessons --------------------------------------------------------


def gpt2_parameter_counts() -> dict[str, int]:
    """Parameter counts of GPT-2 124M, from HuggingFace's model, cross-checked
    against the shapes of the reference MAX modules."""
    import transformers

    from solutions.solution_01 import GPT2Config
    from solutions.solution_11 import MaxGPT2LMHeadModel

    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config())

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    block = hf.transformer.h[0]
    counts = {
        "wte": count(hf.transformer.wte),
        "wpe": count(hf.transformer.wpe),
        "layer norm": count(block.ln_1),
        "c_fc": count(block.mlp.c_fc),
        "mlp c_proj": count(block.mlp.c_proj),
        "mlp": count(block.mlp),
        "c_attn": count(block.attn.c_attn),
        "attn c_proj": count(block.attn.c_proj),
        "attention": count(block.attn),
        "block": count(block),
        "12 blocks": count(hf.transformer.h),
        "GPT2Model": count(hf.transformer),
        "lm_head": hf.lm_head.weight.numel(),
        "causal mask 0 entries for 1024 tokens": sum(range(1, 1025)),
    }
    ours = MaxGPT2LMHeadModel(GPT2Config())
    stored = 0
    for name, p in ours.parameters:
        size = 1
        for d in p.shape:
            size *= int(d)
        stored += size
    assert stored == counts["GPT2Model"] + counts["lm_head"], "the MAX model's size differs from HuggingFace's"
    counts["MaxGPT2LMHeadModel stored"] = stored
    return counts


def test_numbers_quoted_in_lessons_are_the_real_ones():
    counts = gpt2_parameter_counts()
    allowed = {f"{n:,}" for n in counts.values()}
    allowed |= {f"{n / 1e6:.1f}M" for n in counts.values()}
    allowed.add("124M")  # the model's name
    allowed.add(f"{100 * counts['wte'] / counts['GPT2Model']:.1f}%")
    pattern = re.compile(r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?M\b|\d+(?:\.\d+)?%")
    for step in STEPS:
        quoted = set(pattern.findall(skeleton_path(step).read_text()))
        wrong = sorted(quoted - allowed)
        assert not wrong, f"steps/step_{step:02d}.py quotes {wrong}, which match no GPT-2 124M count"


def test_no_test_file_is_over_400_lines():
    long = {p.name: n for p in (REPO / "tests").glob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"files in tests/ over 400 lines: {long}"
