"""pytest set-up: --target, plain-words failure reports, a time bound per
check, and the closing line that tells the learner what passed, what to
fix, and the command to run next (the one they ran: `pixi run s04`, or the
`python -m pytest` line)."""

from __future__ import annotations

import faulthandler
import os
import re
import shlex
import signal
import sys
from collections import Counter

import pytest

from tests.lessons import LESSONS, check_file, next_step, task
from tests.loading import Lesson, LessonFailure, Target, shown

# Every check ends within this many seconds (--check-seconds). A cold
# compile of the full 124M model takes up to about a minute here; a check
# that runs ten times longer than that is stuck (e.g. a loop that never
# ends), and is stopped with a message instead of hanging.
CHECK_SECONDS = 600

TARGET = pytest.StashKey[Target]()


def pytest_addoption(parser):
    parser.addoption(
        "--target",
        default="steps",
        help="what to check: 'steps' (your steps/step_NN.py, the default), "
        "'solutions' (the reference solutions) or a folder holding step_NN.py files",
    )
    parser.addoption(
        "--check-seconds",
        type=int,
        default=CHECK_SECONDS,
        help="stop any single check that runs longer than this (default %(default)s)",
    )


def pytest_configure(config):
    config.stash[TARGET] = Target(config.getoption("--target"))
    config.addinivalue_line("markers", "lesson: a lesson's own checks (tests/test_step_NN.py)")


def _step_of(nodeid: str) -> int | None:
    match = re.search(r"test_step_(\d\d)\.py", nodeid)
    return int(match.group(1)) if match else None


def pytest_collection_modifyitems(items):
    for item in items:
        if _step_of(item.nodeid) is not None:
            item.add_marker(pytest.mark.lesson)


@pytest.fixture(autouse=True)
def forget_unused_max_tensors():
    """Each check starts with only the MAX tensors something still uses:
    eager MAX slows down with every tensor it keeps (tools/max_graph.py),
    and a run of many checks in one process would otherwise crawl."""
    yield
    from tools.max_graph import release_unused_tensors

    release_unused_tensors()


@pytest.fixture
def lesson(request):
    """The file under test for this test module's STEP."""
    step = request.module.STEP
    return Lesson(step, request.config.stash[TARGET].path(step))


class CheckTimeout(LessonFailure):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    seconds = item.config.getoption("--check-seconds")

    def on_alarm(signum, frame):
        raise CheckTimeout(
            f"this check ran for more than {seconds} s and was stopped. "
            "Look for a loop that never ends (for example a while loop whose condition never changes)."
        )

    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(seconds)
    # A second, harder bound: if the process is stuck where Python cannot
    # raise (inside native code), dump the stacks and exit.
    faulthandler.dump_traceback_later(seconds + 60, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        if hasattr(signal, "SIGALRM"):
            signal.alarm(0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and isinstance(call.excinfo.value, LessonFailure):
        report.longrepr = str(call.excinfo.value)
    _remember_and_point_to_hints(item, report)


# --------------------------------------------------------------------------
# Stuck? After a check has failed in two runs in a row, its message ends
# with the command that shows a hint (hint.py). The checks that failed in
# the last run are kept in hint.py's state file (gitignored), never for
# --target solutions.
# --------------------------------------------------------------------------

FAILED_BEFORE = pytest.StashKey[set]()
OUTCOMES = pytest.StashKey[dict]()


def hint_command(step: int, target: Target) -> str:
    """'Stuck? ...': the hint command in the form the learner uses."""
    folder = "" if target.name == "steps" else f" --target {shlex.quote(target.name)}"
    if os.environ.get("PIXI_PROJECT_ROOT"):
        shown_commands = f"`pixi run hint s{step:02d}{folder}` (or `python hint.py s{step:02d}{folder}`)"
    else:
        python = _command_prefix()[0] if len(_command_prefix()) == 3 else "python"
        shown_commands = f"`{shlex.quote(python)} hint.py s{step:02d}{folder}`"
    return f"Stuck? {shown_commands} shows a hint for your first open TODO, one step at a time."


def _remember_and_point_to_hints(item, report) -> None:
    config = item.config
    step = _step_of(report.nodeid)
    if step is None or config.stash[TARGET].is_solutions or (report.when != "call" and not report.failed):
        return
    if FAILED_BEFORE not in config.stash:
        import hint

        config.stash[FAILED_BEFORE] = set(hint.load_state().get("failed", {}).get(config.stash[TARGET].name, []))
        config.stash[OUTCOMES] = {}
    config.stash[OUTCOMES][report.nodeid] = report.failed
    if report.failed and report.nodeid in config.stash[FAILED_BEFORE]:
        line = hint_command(step, config.stash[TARGET])
        if isinstance(report.longrepr, str):
            report.longrepr += "\n" + line
        else:
            report.sections.append(("hint", line))


def pytest_sessionfinish(session):
    outcomes = session.config.stash.get(OUTCOMES, None)
    if not outcomes:
        return
    import hint

    state = hint.load_state()
    failed = state.setdefault("failed", {})
    name = session.config.stash[TARGET].name
    now = set(failed.get(name, []))
    for nodeid, bad in outcomes.items():
        (now.add if bad else now.discard)(nodeid)
    failed[name] = sorted(now)
    for folder in [f for f in failed if not failed[f] or (f != "steps" and not os.path.isdir(f))]:
        del failed[folder]  # nothing failing, or a folder that is gone (a temporary target)
    hint.save_state(state)


# --------------------------------------------------------------------------
# The closing line
# --------------------------------------------------------------------------


def _command_prefix() -> list[str]:
    """How pytest was started, as typed: ['.venv/bin/python', '-m', 'pytest'] or ['pytest']."""
    argv = list(getattr(sys, "orig_argv", [sys.executable, "-m", "pytest"]))
    if len(argv) >= 3 and argv[1:3] == ["-m", "pytest"]:
        return argv[:3]
    if len(argv) >= 2 and os.path.basename(argv[1]).startswith(("pytest", "py.test")):
        return [argv[1]]
    return ["python", "-m", "pytest"]


def _command_options() -> list[str]:
    """The options the learner gave (everything but the prefix and test files)."""
    argv = list(getattr(sys, "orig_argv", []))[len(_command_prefix()):]
    return [a for a in argv if not a.startswith("tests") and not a.endswith(".py")]


def step_command(step: int) -> str:
    """The command that checks one step, in the form the learner uses."""
    if os.environ.get("PIXI_PROJECT_ROOT"):
        return f"pixi run {task(step)}"
    return shlex.join(_command_prefix() + [check_file(step)] + _command_options())


def this_command() -> str:
    """The command the learner ran."""
    argv = list(getattr(sys, "orig_argv", []))
    files = [a for a in argv if _step_of(a) is not None]
    if len(files) == 1:
        return step_command(_step_of(files[0]))
    if os.environ.get("PIXI_PROJECT_ROOT") and "lesson" in argv:
        return "pixi run steps"
    return shlex.join(_command_prefix() + argv[len(_command_prefix()):])


def _steps_listed(steps) -> str:
    return ", ".join(f"{s:02d}" for s in steps)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # A wrapper that runs first: its code after the yield runs last, so the
    # closing line comes after pytest's short summary.
    result = yield
    closing_line(terminalreporter, config)
    return result


def closing_line(terminalreporter, config) -> None:
    stats = terminalreporter.stats
    passed = Counter(_step_of(r.nodeid) for r in stats.get("passed", []) if r.when == "call")
    failed = Counter(_step_of(r.nodeid) for r in stats.get("failed", []) + stats.get("error", []))
    passed.pop(None, None)
    failed.pop(None, None)
    steps = sorted(set(passed) | set(failed))
    if not steps:
        return
    target = config.stash[TARGET]
    write = terminalreporter.write_line
    write("")

    def file_of(step):
        return shown(target.path(step))

    bad = [s for s in steps if failed[s]]
    if target.is_solutions:
        verdict = f"fail: {_steps_listed(bad)}" if bad else "all pass"
        write(f"Reference solutions of steps {_steps_listed(steps)}: {verdict}.", red=bool(bad), green=not bad)
        return
    if len(steps) == 1:
        step = steps[0]
        if bad:
            write(
                f"Step {step:02d}: {failed[step]} of {failed[step] + passed[step]} checks failed. "
                f"Read the first failure above, fix {file_of(step)}, and run `{this_command()}` again.",
                red=True, bold=True,
            )
            return
        write(f"Step {step:02d} complete: all {passed[step]} checks passed. {_next(step)}", green=True, bold=True)
        return
    good = [s for s in steps if not failed[s]]
    if bad:
        first = bad[0]
        failing = ", ".join(f"{s:02d} ({failed[s]} of {failed[s] + passed[s]} checks failed)" for s in bad)
        write(
            f"Steps {_steps_listed(good) or 'none'} pass; {failing} not yet. "
            f"Next: read the failures of step {first:02d} above, fix {file_of(first)}, "
            f"and run `{step_command(first)}`.",
            red=True, bold=True,
        )
    else:
        write(f"Steps {_steps_listed(good)} all pass. {_next(good[-1])}", green=True, bold=True)


def _next(step: int) -> str:
    following = next_step(step)
    if following is None:
        return f"You have built GPT-2 on MAX: all {len(LESSONS)} lessons are done. Try `pixi run generate`."
    return f"Next: open steps/step_{following:02d}.py and run `{step_command(following)}`."
