"""generate.py end to end, offline: a small GPT-2 with random weights and a
byte-level tokenizer, both written to a temporary folder with
save_pretrained, generate greedily token for token like HuggingFace."""

import json
import os
import subprocess
import sys

import pytest

from tests.lessons import REPO
from tools.offline import offline_env
from tests.twins import hf_config, randomize_


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import GPT2LMHeadModel, GPT2TokenizerFast
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = GPT2TokenizerFast(
        vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt")
    )
    tokenizer.save_pretrained(folder)
    config = hf_config(dict(n_embd=64, n_head=4, n_layer=2, vocab_size=300, n_positions=128))
    randomize_(GPT2LMHeadModel(config), seed=30).save_pretrained(folder)
    return folder


def run(*args):
    env = offline_env()
    return subprocess.run(
        [sys.executable, str(REPO / "generate.py"), *args],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=env,
    )


def test_greedy_generation_matches_huggingface(model_dir):
    result = run("--model-dir", str(model_dir), "--prompt", "Hello", "--max-new-tokens", "24", "--greedy", "--compare")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical to HuggingFace generate(): all 24 new tokens match" in result.stdout


def test_seeded_sampling_is_reproducible(model_dir):
    args = ("--model-dir", str(model_dir), "--prompt", "Hi", "--max-new-tokens", "12", "--seed", "3")
    first, second = run(*args), run(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
        (["--temperature", "0"], "--temperature must be > 0"),
        (["--compare"], "--compare needs --greedy"),
        (["--model-dir", "/nonexistent/gpt2"], "could not load GPT-2"),
    ],
)
def test_bad_input_exits_with_a_message(args, message):
    result = run(*args)
    assert result.returncode != 0
    assert message in result.stderr
