"""generate.py --steps: the learner's step files, on temporary folders
through generate.py's --steps-dir option (copying the whole repository for
each case would be slow, and an option, unlike an environment variable,
shows in the command line that a failing test prints). The helpers and the
checkpoint are tests/test_generate_script.py's."""

import shutil

import pytest

from tests.lessons import REPO
from tests.test_generate_script import PROMPT, assert_refused, hf_greedy, model_dir, run, run_json, tokenizer  # noqa: F401


# --- --steps ---------------------------------------------------------------------


STEP_FILES = {
    "skeleton 12": REPO / "steps" / "step_12.py",  # as shipped: run the suite on a clean checkout
    "skeleton 15": REPO / "steps" / "step_15.py",
    **{f"solution {n}": REPO / "solutions" / f"solution_{n}.py" for n in (12, 13, 15)},
}
# "unfinished NN": solution NN with one line still a placeholder.
UNFINISHED = {
    "unfinished 13": ("solution 13", "    return scores\n", "    return None  # TODO\n"),
    "unfinished 15": ("solution 15", "self.lengths = np.zeros(", "self.lengths = None  # TODO np.zeros("),
    "unfinished 15 call": ("solution 15", "        return logits, keys, values\n", "        return None  # TODO\n"),
}


def steps_folder(tmp_path, **files):
    """step_NN.py in tmp_path for each NN=which, from STEP_FILES or UNFINISHED (None: no file)."""
    for step, which in files.items():
        if which in UNFINISHED:
            source, old, new = UNFINISHED[which]
            text = STEP_FILES[source].read_text()
            assert text.count(old) == 1, which
            (tmp_path / f"{step}.py").write_text(text.replace(old, new))
        elif which is not None:
            if not STEP_FILES[which].is_file():
                pytest.skip(f"{STEP_FILES[which]} is not written yet")
            shutil.copy(STEP_FILES[which], tmp_path / f"{step}.py")
    return tmp_path


@pytest.mark.parametrize("path", [(), ("--no-cache",)], ids=["kv-cache", "no-cache"])
def test_steps_runs_the_learners_files(model_dir, tmp_path, tokenizer, path):
    """With the cache, --steps needs step 12 and 15; with --no-cache, step 12 and 13 only.
    (Each folder lacks the file the other path would need.)"""
    folder = steps_folder(tmp_path, step_12="solution 12", **({"step_13": "solution 13"} if path else {"step_15": "solution 15"}))
    record = run_json("--model", model_dir, "--prompt", PROMPT, "--max-new-tokens", 8, "--greedy",
                      "--ignore-eos", "--steps-dir", folder, *path)
    assert record["generated_ids"] == hf_greedy(model_dir, tokenizer(PROMPT)["input_ids"], 8, eos=None)
    assert record["kv_cache"] == (not path)


@pytest.mark.parametrize(
    "files, where, what, stage",
    [
        (dict(step_12="skeleton 12", step_15="solution 15"), "step_12.py", "TODO still open", "checkpoint"),
        (dict(step_12="solution 12", step_13="unfinished 13"), "step_13.py", "warp_logits", "checkpoint"),
        (dict(step_12="solution 12"), "step_13.py", "does not exist", "checkpoint"),
        (dict(step_12="solution 12"), "step_15.py", "does not exist", "checkpoint"),
        (dict(step_12="solution 12", step_15="unfinished 15"), "step_15.py", "BatchedKVCache", "checkpoint"),
        (dict(step_12="solution 12", step_15="unfinished 15 call"), "step_15.py", "compiling", "compiling"),
        (dict(step_12="solution 12", step_15="skeleton 15"), "step_15.py", "TODO still open", None),
    ],
)
def test_steps_refused_while_a_todo_is_open(model_dir, tmp_path, files, where, what, stage):
    """A step 15 that is not ready suggests --no-cache, which needs only step 12 and 13."""
    folder = steps_folder(tmp_path, **files)
    no_cache = ["--no-cache"] if where == "step_13.py" else []
    result = run("--model", model_dir, "--greedy", "--steps-dir", folder, *no_cache)
    assert_refused(result, where, what, *(["--no-cache"] if where == "step_15.py" else []), stage=stage)
    if what != "does not exist":
        assert result.err.splitlines()[-1].startswith(f"error: TODO still open in {folder / where}: "), result.err
