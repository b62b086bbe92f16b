"""pytest set-up: --target, plain-words failure reports, a time bound per check,
and the closing line that tells the learner what passed and what comes next."""

from __future__ import annotations

import faulthandler
import re
import signal

import pytest

from tests import harness  # also puts transformers offline

# Every check ends within this many seconds (--check-seconds). A cold
# compile of the full 124M model takes up to about a minute here; a check
# that runs ten times longer than that is stuck (e.g. a loop that never
# ends), and is stopped with a message instead of hanging.
CHECK_SECONDS = 600


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
    harness.set_target(config.getoption("--target"))
    global CHECK_SECONDS
    CHECK_SECONDS = config.getoption("--check-seconds")


class CheckTimeout(harness.LessonFailure):
    pass


def _on_alarm(signum, frame):
    raise CheckTimeout(
        f"this check ran for more than {CHECK_SECONDS} s and was stopped. "
        "Look for a loop that never ends (for example a while loop whose condition never changes)."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(CHECK_SECONDS)
    # A second, harder bound: if the process is stuck where Python cannot
    # raise (inside native code), dump the stacks and exit.
    faulthandler.dump_traceback_later(CHECK_SECONDS + 60, exit=True)
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
    if call.excinfo is not None and isinstance(call.excinfo.value, harness.LessonFailure):
        report.longrepr = str(call.excinfo.value)


def _step_of(nodeid: str) -> int | None:
    match = re.search(r"test_step_(\d\d)\.py", nodeid)
    return int(match.group(1)) if match else None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stats = terminalreporter.stats
    passed = [r for r in stats.get("passed", []) if r.when == "call"]
    failed = stats.get("failed", []) + stats.get("error", [])
    steps = {_step_of(r.nodeid) for r in passed + failed} - {None}
    if len(steps) != 1 or config.getoption("--target") == "solutions":
        return
    step = steps.pop()
    write = terminalreporter.write_line
    write("")
    if failed:
        write(
            f"Step {step:02d}: {len(failed)} of {len(failed) + len(passed)} checks failed. "
            f"Read the first failure above, fix steps/step_{step:02d}.py, and run "
            f"`pixi run s{step:02d}` again."
        )
    elif passed:
        nxt = (
            f"Next: open steps/step_{step + 1:02d}.py and run `pixi run s{step + 1:02d}`."
            if step < 12
            else "You have built GPT-2 on MAX. Try `pixi run generate`."
        )
        write(f"Step {step:02d} complete: all {len(passed)} checks passed. {nxt}", green=True, bold=True)


@pytest.fixture
def lesson(request):
    """The file under test for this test module's STEP."""
    return harness.Lesson(request.module.STEP)
