"""The checker itself: the tolerance sits between float32 rounding and real
mistakes, and what a learner sees on the command line is a plain message,
never a traceback or a hang."""

import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import torch
from transformers.models.gpt2.modeling_gpt2 import GPT2MLP

from tests.lessons import REPO, solution_path
from tests.loading import Lesson
from tests.parity import SHAPES, TOLERANCE, max_error
from tests.test_judge import step_checks
from tests.twins import CONFIGS, hf_config, randomize_, seeded_inputs


def test_correct_code_stays_far_below_the_tolerance():
    """The reference solutions of the numerical steps, against HuggingFace:
    every difference must be at most a quarter of what is allowed."""
    margins = []
    for step in (3, 4, 7, 9, 10):
        lesson = Lesson(step, solution_path(step))
        for check in step_checks(step):
            check(lesson)
        margins += lesson.margins
    assert len(margins) > 20
    what, error, allowed = max(margins, key=lambda m: m[1] / m[2])
    assert error <= allowed / 4, f"{what}: rounding {error:.2g} is too close to the tolerance {allowed:.2g}"


def test_exact_gelu_lands_far_above_the_tolerance():
    """The smallest mistake the course names: exact instead of tanh GELU."""
    for overrides in CONFIGS.values():
        config = hf_config(overrides)
        inner = config.n_inner or 4 * config.n_embd
        mlp = randomize_(GPT2MLP(inner, config), seed=4)
        x = torch.from_numpy(seeded_inputs("hidden", SHAPES, width=config.n_embd, seed=4)[0])
        with torch.no_grad():
            right = mlp(x).double().numpy()
            exact = mlp.c_proj(torch.nn.functional.gelu(mlp.c_fc(x))).double().numpy()
        error, allowed = max_error(exact, right)
        assert error >= 4 * allowed, f"exact GELU differs by only {error:.2g} (tolerance {allowed:.2g})"
    assert TOLERANCE == 2e-5


def pytest_on(folder, step: int | list[int], *extra, pixi: bool = False):
    """Run the checks of step(s) on folder in a new process, as pip (or pixi) users do."""
    steps = step if isinstance(step, list) else [step]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXI_")}
    if pixi:
        env["PIXI_PROJECT_ROOT"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *(f"tests/test_step_{s:02d}.py" for s in steps), "--target", str(folder), *extra],
        capture_output=True, text=True, timeout=900, cwd=REPO, env=env,
    )


def test_a_finished_step_says_so_and_names_the_next_command(tmp_path):
    shutil.copy(solution_path(1), tmp_path / "step_01.py")
    result = pytest_on(tmp_path, 1)
    assert result.returncode == 0, result.stdout
    pip_next = shlex.join([sys.executable, "-m", "pytest", "tests/test_step_02.py", "--target", str(tmp_path)])
    assert f"Step 01 complete: all 2 checks passed. Next: open steps/step_02.py and run `{pip_next}`." in result.stdout
    result = pytest_on(tmp_path, 1, pixi=True)
    assert "Step 01 complete: all 2 checks passed. Next: open steps/step_02.py and run `pixi run s02`." in result.stdout


def test_a_run_of_several_steps_ends_with_one_summary(tmp_path):
    shutil.copy(solution_path(1), tmp_path / "step_01.py")
    (tmp_path / "step_03.py").write_text('"""Step 03."""\n\nclass LayerNorm(:\n    pass\n')
    result = pytest_on(tmp_path, [1, 3], pixi=True)
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-2]
    assert last == (
        "Steps 01 pass; 03 (1 of 1 checks failed) not yet. Next: read the failures of step 03 above, "
        f"fix {tmp_path / 'step_03.py'}, and run `pixi run s03`."
    ), result.stdout


def test_a_syntax_error_is_a_failed_check_with_the_line(tmp_path):
    (tmp_path / "step_03.py").write_text('"""Step 03."""\n\nclass LayerNorm(:\n    pass\n')
    result = pytest_on(tmp_path, 3)
    assert result.returncode == 1
    assert "step_03.py has a syntax error at line 3" in result.stdout
    assert "Traceback" not in result.stdout
    assert "Step 03: 1 of 1 checks failed." in result.stdout


def test_a_wrong_result_names_the_mistake_without_a_traceback(tmp_path):
    source = solution_path(4).read_text().replace('approximate="tanh"', 'approximate="none"')
    (tmp_path / "step_04.py").write_text(source)
    result = pytest_on(tmp_path, 4)
    assert result.returncode == 1
    assert "GPT2MLP [gpt2 (defaults)], input [3, 6, 768] does not match HuggingFace." in result.stdout
    assert "largest difference" in result.stdout
    assert "Likely cause: exact GELU instead of the tanh approximation" in result.stdout
    assert "Traceback" not in result.stdout and "harness.py" not in result.stdout


def test_an_exception_in_the_learners_code_shows_their_line(tmp_path):
    source = solution_path(3).read_text().replace(
        "        return F.layer_norm(", "        x = x.reshape([-7])\n        return F.layer_norm("
    )
    (tmp_path / "step_03.py").write_text(source)
    result = pytest_on(tmp_path, 3)
    assert result.returncode == 1
    assert "step_03.py:" in result.stdout and "x = x.reshape([-7])" in result.stdout
    assert "Traceback" not in result.stdout


def test_a_check_that_never_ends_is_stopped(tmp_path):
    (tmp_path / "step_01.py").write_text("while True:\n    pass\n")
    result = pytest_on(tmp_path, 1, "--check-seconds", "3")
    assert result.returncode == 1
    assert "ran for more than 3 s and was stopped" in result.stdout


def test_tensors_that_nothing_uses_are_forgotten_between_checks():
    """MAX's global graph keeps every realized tensor; conftest.py lets it
    forget the unused ones after each check (tools/max_graph.py), and the
    tensors still in use keep working."""
    from max.experimental import tensor
    from max.experimental.tensor import Tensor

    from tools.max_graph import release_unused_tensors

    kept = Tensor.from_dlpack(np.arange(4, dtype=np.float32))
    for _ in range(300):
        Tensor.from_dlpack(np.ones(4, np.float32))
    assert len(tensor.GRAPH.sources) >= 300
    assert release_unused_tensors() < 10
    assert np.from_dlpack(kept + Tensor.ones([4])).tolist() == [1.0, 2.0, 3.0, 4.0]
