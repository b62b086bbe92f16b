"""Tests of the tests: the step checks must judge right.

- every untouched skeleton fails its step with the open-TODO message;
- every solution, put in place of its skeleton, passes;
- every mistake in the catalogue fails, with its hint;
- correct code written differently from the solution passes.

All of them run on copies in a temporary folder, never on steps/.
"""

import importlib
import shutil
from pathlib import Path

import pytest

from tests.catalogue import PASS, VARIANTS, Variant
from tests.lessons import LESSON_FOLDERS, STEPS, skeleton_path, solution_path
from tests.loading import OPEN_TODO, Lesson, LessonFailure


def step_checks(step: int):
    """The check functions of tests/test_step_NN.py, in file order."""
    module = importlib.import_module(f"tests.test_step_{step:02d}")
    checks = [f for name, f in vars(module).items() if name.startswith("test_") and callable(f)]
    return sorted(checks, key=lambda f: f.__code__.co_firstlineno)


def first_failure(step: int, path: Path) -> str | None:
    """The message of the first failing check of a step on the file at path."""
    lesson = Lesson(step, path)
    for check in step_checks(step):
        try:
            check(lesson)
        except LessonFailure as failure:
            return str(failure)
    return None


def with_folder(tmp_path: Path, step: int, origin: Path) -> None:
    """A lesson's own folder (tests/lessons.py LESSON_FOLDERS), copied beside its file."""
    if step in LESSON_FOLDERS:
        shutil.copytree(origin.parent / LESSON_FOLDERS[step], tmp_path / LESSON_FOLDERS[step])


def as_step(tmp_path: Path, step: int, source: str) -> Path:
    path = tmp_path / f"step_{step:02d}.py"
    path.write_text(source)
    with_folder(tmp_path, step, solution_path(step))
    return path


def variant_as_step(tmp_path: Path, variant: Variant) -> Path:
    """The solution with the variant's edits, in whichever of the lesson's files they are."""
    if not variant.file:
        return as_step(tmp_path, variant.step, variant.source())
    path = as_step(tmp_path, variant.step, solution_path(variant.step).read_text())
    (tmp_path / variant.file).write_text(variant.source())
    return path


@pytest.mark.parametrize("step", STEPS, ids=lambda s: f"{s:02d}")
def test_untouched_skeleton_reports_an_open_todo(step, tmp_path):
    path = tmp_path / f"step_{step:02d}.py"
    shutil.copy(skeleton_path(step), path)
    with_folder(tmp_path, step, skeleton_path(step))
    message = first_failure(step, path)
    assert message is not None, f"the skeleton of step {step:02d} passed its own check"
    assert OPEN_TODO in message, f"the skeleton's failure does not name an open TODO:\n{message}"


@pytest.mark.parametrize("step", STEPS, ids=lambda s: f"{s:02d}")
def test_solution_in_place_of_the_skeleton_passes(step, tmp_path):
    path = as_step(tmp_path, step, solution_path(step).read_text())
    message = first_failure(step, path)
    assert message is None, f"the solution of step {step:02d} failed its step's check:\n{message}"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
def test_catalogue(variant: Variant, tmp_path):
    message = first_failure(variant.step, variant_as_step(tmp_path, variant))
    if variant.expect is PASS:
        assert message is None, f"correct code written another way failed:\n{message}"
    else:
        assert message is not None, f"the mistake {variant.id} passed step {variant.step:02d}'s check"
        assert variant.expect in message, (
            f"the mistake {variant.id} failed, but without the expected hint "
            f"{variant.expect!r}:\n{message}"
        )


def test_catalogue_covers_every_step_with_logic():
    mistakes = {}
    for v in VARIANTS:
        if v.expect is not PASS:
            mistakes[v.step] = mistakes.get(v.step, 0) + 1
    assert {step for step in STEPS if mistakes.get(step, 0) < 3} == set()


def test_every_variant_has_its_own_id():
    """An id names one piece of code: a mistake and a correct variant sharing
    one would be two tests under one name in pytest's report."""
    ids = [v.id for v in VARIANTS]
    assert sorted({i for i in ids if ids.count(i) > 1}) == []
