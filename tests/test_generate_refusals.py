"""generate.py refuses bad input in one line and exit 2, before loading
where it can. The helpers and the checkpoints are
tests/test_generate_script.py's."""

import pytest

from tests.test_generate_script import assert_refused, bad_dirs, model_dir, run  # noqa: F401


# --- bad input: one line, exit 2, refused before loading where possible -----------------


@pytest.mark.parametrize(
    "args, stdin, fragments",
    [
        (["--prompt", ""], b"", ["prompt is empty"]),
        (["--prompt", "-"], b"\n", ["prompt is empty"]),
        (["--do-sample", "--temperature", "0"], b"", ["--temperature", "got 0.0"]),
        (["--temperature", "nan"], b"", ["--temperature", "nan"]),
        (["--temperature", "inf"], b"", ["--temperature", "inf"]),
        (["--temperature", "-1"], b"", ["--temperature", "-1"]),
        (["--top-k", "-1"], b"", ["--top-k must be >= 0", "got -1"]),
        (["--top-p", "0"], b"", ["--top-p 0 would keep only the most likely token", "--greedy"]),
        (["--top-p", "1.5"], b"", ["--top-p must be in (0, 1]"]),
        (["--seed", "-1"], b"", ["--seed must be >= 0"]),
        (["--max-new-tokens", "0"], b"", ["--max-new-tokens must be at least 1"]),
        (["--max-batch-size", "0"], b"", ["--max-batch-size must be at least 1", "got 0"]),
        (["--prompt", "-", "--prompt", "-"], b"x", ["--prompt - is given twice"]),
        (["--prompt", "x", "--prompt", ""], b"", ["prompt is empty"]),
        (["--prompt", "-"], b"caf\xe9", ["stdin is not valid UTF-8", "0xe9"]),
        (["--prompt", "x", "--compare"], b"", ["--compare needs --greedy"]),
        (["--device", "gpu"], b"", ["--device gpu needs --no-cache"]),
        (["--quantize", "q4_0", "--device", "gpu", "--no-cache"], b"", ["--quantize runs on the CPU only"]),
        (["--top-k", "many"], b"", ["--top-k", "invalid int value"]),
        (["--model", "/nonexistent/gpt2"], b"", ["no such folder: /nonexistent/gpt2"]),
    ],
)
def test_bad_options_are_refused_at_once(args, stdin, fragments):
    assert_refused(run(*args, stdin=stdin), *fragments, stage="options")


def test_invalid_utf8_prompt_file(bad_dirs):
    assert_refused(run("--prompt-file", bad_dirs / "latin1.txt"), "latin1.txt is not valid UTF-8", stage="options")


def test_prompt_beyond_the_context_says_both_counts(model_dir):
    result = run("--model", model_dir, "--prompt", "x" * 120, "--max-new-tokens", 20)
    assert_refused(result, "120 tokens", "--max-new-tokens is 20", "at most 128", "at most 8 new", stage="checkpoint")
    second = run("--model", model_dir, "--prompt", "x", "--prompt", "x" * 120, "--max-new-tokens", 20)
    assert_refused(second, "prompt 2 of 2: ", "120 tokens", stage="checkpoint")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--quantize", "q5"], ["--quantize must be one of q4_0, q4_k, q6_k", "'q5'"]),
        (["--quantize", "q4_k"], ["blocks of 256", "n_embd=64", "choose q4_0"]),
        (["--quantize", "q4_0", "--no-cache"], ["--quantize runs on the KV cache's path", "drop --no-cache"]),
    ],
    ids=["unknown", "rows-too-narrow", "no-cache"],
)
def test_quantize_refused_before_loading(model_dir, args, fragments):
    assert_refused(run("--model", model_dir, *args), *fragments, stage="checkpoint")


@pytest.mark.parametrize(
    "folder, fragments, stage",
    [
        ("no-tokenizer", ["no tokenizer files"], "checkpoint"),
        ("bert", ["not a GPT-2 checkpoint", "'bert'"], "checkpoint"),
        ("weights-missing", ["do not fit GPT-2", "missing transformer.ln_f.bias", "unexpected transformer.h.7"],
         "weights"),
    ],
)
def test_checkpoints_that_are_not_gpt2(bad_dirs, folder, fragments, stage):
    assert_refused(run("--model", bad_dirs / folder, "--prompt", "x"), *fragments, stage=stage)


def test_unknown_hub_id_offline_is_refused_fast():
    result = run("--model", "no-such-owner/no-such-gpt2")
    assert_refused(result, "no-such-owner/no-such-gpt2", "HF_HUB_OFFLINE=1", stage="checkpoint")
    assert result.seconds < 15, result.seconds  # no connection attempts


def test_gpu_without_one_is_refused():
    from max.driver import accelerator_count

    if accelerator_count() > 0:
        pytest.skip("this machine has a GPU")
    assert_refused(run("--device", "gpu", "--no-cache"), "--device gpu", "no GPU", stage="checkpoint")

