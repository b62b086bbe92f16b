"""The project's own promises: pixi.toml and requirements.txt pin the same
versions, every lesson's `Run: pixi run sNN` is a task that runs that step's
checks, and every parameter count a lesson quotes is the real one."""

import ast
import re
import shlex
import sys

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.harness import REPO

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
    assert set(pixi_deps) == set(pip), f"pixi.toml {sorted(pixi_deps)} vs requirements.txt {sorted(pip)}"
    for name, pixi_spec in pixi_deps.items():
        pip_spec = pip[name].specifier
        exact = [s.version for s in pip_spec if s.operator == "==" and "*" not in s.version]
        if exact:  # an exact pip pin must lie inside pixi's range
            assert Version(exact[0]) in pixi_spec, f"{name}: pip pins {exact[0]}, pixi allows {pixi_spec}"
        else:
            assert pip_spec == pixi_spec, f"{name}: requirements.txt {pip_spec} vs pixi.toml {pixi_spec}"
    assert pixi_deps["max"] == SpecifierSet("==25.7.*"), "MAX must stay on 25.7 (max.nn.module_v3)"


def test_every_step_has_a_task_running_its_checks():
    tasks = pixi()["tasks"]
    for step in range(1, 13):
        name = f"s{step:02d}"
        assert name in tasks, f"pixi.toml has no task {name}"
        words = shlex.split(tasks[name])
        assert words[:3] == ["python", "-m", "pytest"], f"{name} does not run pytest: {tasks[name]}"
        test_files = [w for w in words[3:] if not w.startswith("-")]
        assert test_files == [f"tests/test_step_{step:02d}.py"], f"{name} runs {test_files}"
        assert (REPO / test_files[0]).exists()
        assert "--target" not in tasks[name], f"{name} must check the learner's steps/ (the default target)"
    assert "--target solutions" in tasks["test"]


def lesson_docstring(step: int) -> str:
    return ast.get_docstring(ast.parse((REPO / "steps" / f"step_{step:02d}.py").read_text())) or ""


def test_every_lesson_names_the_task_that_checks_it():
    tasks = pixi()["tasks"]
    for step in range(1, 13):
        runs = re.findall(r"Run: pixi run (\S+)", lesson_docstring(step))
        assert runs == [f"s{step:02d}"], f"step {step:02d} tells the learner to run {runs}"
        assert runs[0] in tasks


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
    for step in range(1, 13):
        quoted = set(pattern.findall((REPO / "steps" / f"step_{step:02d}.py").read_text()))
        wrong = sorted(quoted - allowed)
        assert not wrong, f"steps/step_{step:02d}.py quotes {wrong}, which match no GPT-2 124M count"
