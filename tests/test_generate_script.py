"""generate.py end to end, offline, in subprocesses: a small GPT-2 with
seeded O(1) weights and a byte-level tokenizer (every byte one token, plus
<|endoftext|>), written with save_pretrained to temporary folders. The KV
cache of lesson 14 is the default path; --no-cache is lesson 12's, and both
must write the same tokens.

--steps: tests/test_generate_steps.py; bad input: tests/test_generate_refusals.py."""

import json
import os
import select
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.lessons import REPO
from tests.twins import TOKENIZER_FILES, FixedLogits, save_checkpoint, save_model
from tools.offline import offline_env

PROMPT = "Hello"


def hf_greedy(folder, prompt_ids, new_tokens, eos):
    import torch
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    prompt = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                          max_new_tokens=new_tokens, eos_token_id=eos, pad_token_id=0)
    return out[0, len(prompt_ids):].tolist()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def eos_dir(model_dir, tokenizer, tmp_path_factory):
    """The same weights, with eos_token_id set to a token greedy decoding
    writes (the first one from the third on that it has not written before)."""
    from transformers import GPT2LMHeadModel

    tokens = hf_greedy(model_dir, tokenizer(PROMPT)["input_ids"], 12, eos=None)
    stop = next(i for i in range(2, 12) if tokens[i] not in tokens[:i])
    folder = tmp_path_factory.mktemp("tiny-gpt2-eos")
    for name in TOKENIZER_FILES:
        shutil.copy(model_dir / name, folder)
    save_model(GPT2LMHeadModel.from_pretrained(model_dir), folder, eos=tokens[stop])
    return folder, tokens, stop


@pytest.fixture(scope="module")
def bad_dirs(model_dir, tmp_path_factory):
    """A folder without tokenizer files, a BERT checkpoint, GPT-2 weights with one missing and one extra."""
    import safetensors.torch
    import torch
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("bad")
    (root / "no-tokenizer").mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(model_dir / name, root / "no-tokenizer")
    bert = root / "bert"
    BertModel(BertConfig(vocab_size=257, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(bert)
    for name in TOKENIZER_FILES:
        shutil.copy(model_dir / name, bert)
    holes = root / "weights-missing"
    shutil.copytree(model_dir, holes)
    weights = safetensors.torch.load_file(holes / "model.safetensors")
    del weights["transformer.ln_f.bias"]
    weights["transformer.h.7.mlp.c_fc.weight"] = torch.zeros(64, 256)
    safetensors.torch.save_file(weights, holes / "model.safetensors", metadata={"format": "pt"})
    (root / "latin1.txt").write_bytes("café".encode("latin-1"))
    return root


def child_env(base=None):
    """Offline, and without PYTHONUNBUFFERED: streaming must not depend on it."""
    env = offline_env(base)
    env.pop("PYTHONUNBUFFERED", None)
    return env


def run(*args, stdin=b"", env=None, timeout=600):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO / "generate.py"), *map(str, args)], input=stdin,
                            capture_output=True, timeout=timeout, cwd=REPO, env=env or child_env())
    result.seconds = time.perf_counter() - start
    result.out, result.err = result.stdout.decode(), result.stderr.decode()
    return result


def run_json(*args, **kwargs):
    records = run_json_lines(*args, **kwargs)
    assert len(records) == 1, records
    return records[0]


def run_json_lines(*args, **kwargs):
    """--json: one record per prompt, in the order given."""
    result = run(*args, "--json", **kwargs)
    assert result.returncode == 0, result.err
    records = [json.loads(line) for line in result.out.splitlines()]
    assert [r["index"] for r in records] == list(range(len(records))), result.out
    return records


def assert_refused(result, *fragments, stage):
    """Exit 2 and one "error: " line, the last on stderr, with no traceback.
    stage "options" and "checkpoint": refused before anything is loaded, so
    that line is all of stderr; "weights": after loading, before compiling;
    "compiling": while compiling; None: any of these."""
    lines = result.err.splitlines()
    assert result.returncode == 2, result.err
    assert "Traceback" not in result.err and lines and lines[-1].startswith("error: "), result.err
    assert sum(line.startswith("error: ") for line in lines) == 1, result.err
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    if stage in ("weights", "compiling"):
        assert "loading" in result.err and ("compiling" in result.err) == (stage == "compiling"), result.err
    elif stage is not None:
        assert len(lines) == 1, result.err
    if stage == "options":  # no model library is even imported
        assert result.seconds < 15, result.seconds


# --- what it writes -------------------------------------------------------------


def test_help_shows_every_option_its_default_and_the_context_limit():
    result = run("--help")
    assert result.returncode == 0, result.err
    text = " ".join(result.out.split())
    for option in ("--model", "--model-dir", "--prompt", "--prompt-file", "--max-new-tokens", "--do-sample",
                   "--greedy", "--temperature", "--top-k", "--top-p", "--seed", "--device", "--steps",
                   "--ignore-eos", "--json", "--compare", "--no-cache"):
        assert option in text
    for default in ("(default: gpt2)", "(default: cpu)", "(default: 30)", "(default: 1.0)", "(default: 50)",
                    "(default: The meaning of life is)", "(default: on)", "(default: off)"):
        assert default in text
    assert "n_positions (1024 for GPT-2)" in text
    assert "no streamed text" in text  # --json's choice
    assert "It decodes with the KV cache by default, through lesson 15's loop" in text
    assert "--no-cache takes lesson 12's path" in text and "(default: off, i.e. lesson 15's KV cache" in text
    assert "--max-batch-size" in text and "(default: 8)" in text


@pytest.mark.parametrize("path", [(), ("--no-kernel",), ("--no-cache",)], ids=["kernel", "kv-cache", "no-cache"])
def test_greedy_json_matches_huggingface_generate(model_dir, tokenizer, path):
    """The default (KV cache, lesson 16's kernel in the decode steps), lesson 15's graph, lesson 12's path."""
    record = run_json("--model", model_dir, "--prompt", PROMPT, "--max-new-tokens", 24, "--greedy", *path)
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    expected = hf_greedy(model_dir, prompt_ids, 24, eos=tokenizer.eos_token_id)
    assert record["kv_cache"] == (path != ("--no-cache",))
    assert record["kernel"] == (not path)
    assert record["prompt_ids"] == prompt_ids
    assert record["generated_ids"] == expected
    assert record["text"] == tokenizer.decode(expected, skip_special_tokens=True)
    assert record["finish_reason"] in ("eos", "length")
    assert record["compile_seconds"] >= 0 and record["tokens_per_second"] > 0


def test_quantized_greedy_matches_huggingface_on_the_stored_weights(model_dir, tokenizer):
    """--quantize q4_0: the tokens of HuggingFace running the weights Q4_0 stores (gguf's quantizer and
    decoder), as long as the 8-bit activations inside ops.qmatmul do not tip a near tie."""
    import torch
    from transformers import GPT2LMHeadModel

    from tests.twins import hf_dequantized

    record = run_json("--model", model_dir, "--prompt", PROMPT, "--max-new-tokens", 24, "--greedy",
                      "--quantize", "q4_0")
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    hf = hf_dequantized(GPT2LMHeadModel.from_pretrained(model_dir).eval(), "q4_0")
    prompt = torch.tensor([prompt_ids])
    with torch.no_grad():
        expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=24,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=0)[0, len(prompt_ids):].tolist()
    float32 = hf_greedy(model_dir, prompt_ids, 24, eos=tokenizer.eos_token_id)
    assert (record["quantize"], record["kernel"], record["kv_cache"]) == ("q4_0", False, True)
    assert record["generated_ids"] == expected
    assert expected != float32  # else this would not tell the quantized path from float32


def test_text_streams_token_by_token_and_compare_agrees(model_dir, tokenizer):
    """Read stdout while generate.py runs: the text arrives in many pieces
    before the process ends, and the pieces add up to prompt + text."""
    command = [sys.executable, str(REPO / "generate.py"), "--model", str(model_dir), "--prompt", PROMPT,
               "--max-new-tokens", "80", "--greedy", "--ignore-eos", "--compare"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=child_env())
    pieces, while_running = [], 0
    try:
        while True:
            select.select([process.stdout], [], [], 600)
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            pieces.append(chunk)
            while_running += process.poll() is None
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=60) == 0, stderr
    finally:
        process.kill()
    expected = hf_greedy(model_dir, tokenizer(PROMPT)["input_ids"], 80, eos=None)
    text = tokenizer.decode(expected, skip_special_tokens=True)
    compare = "identical to HuggingFace generate(): all 80 new tokens match\n"
    assert b"".join(pieces).decode() == PROMPT + text + "\n" + compare
    assert while_running >= 3, f"stdout arrived in {len(pieces)} piece(s), {while_running} while running"
    assert stderr.index("loading") < stderr.index("compiling") < stderr.index("tokens/s"), stderr


def test_stops_at_end_of_text_unless_ignore_eos(eos_dir):
    folder, greedy, stop = eos_dir
    args = ("--model-dir", folder, "--prompt", PROMPT, "--max-new-tokens", 12, "--greedy")
    stopped = run_json(*args)
    assert stopped["generated_ids"] == greedy[: stop + 1] and stopped["finish_reason"] == "eos"
    went_on = run_json(*args, "--ignore-eos")
    assert went_on["generated_ids"] == greedy and went_on["finish_reason"] == "length"


def test_seeded_sampling_is_reproducible(model_dir, tmp_path):
    """The same seed gives the same tokens, with the KV cache and without;
    the prompt from a file and from stdin is the same prompt (one final
    newline dropped)."""
    (tmp_path / "prompt.txt").write_text("Hi\n")
    args = ("--model", model_dir, "--max-new-tokens", 16, "--seed", 3,
            "--temperature", "0.9", "--top-k", 20, "--top-p", "0.95", "--ignore-eos")
    first = run_json(*args, "--prompt-file", tmp_path / "prompt.txt")
    second = run_json(*args, "--prompt", "-", stdin=b"Hi\n")
    no_cache = run_json(*args, "--prompt", "Hi", "--no-cache")
    assert first["prompt"] == second["prompt"] == "Hi"
    assert first["generated_ids"] == second["generated_ids"] == no_cache["generated_ids"] and first["seed"] == 3
    assert len(first["generated_ids"]) == 16 and first["kv_cache"] and not no_cache["kv_cache"]


# Prompts of different lengths (1, 5 and 9 tokens with the byte tokenizer).
PROMPTS = ("Hello", "A", "Once upon")


def test_several_prompts_each_as_huggingface_alone(model_dir, tokenizer):
    """Batched (three prompts, two slots: the third joins a freed slot) and
    one at a time (--max-batch-size 1, and --no-cache): each prompt's tokens
    are HuggingFace generate() on that prompt alone, its JSON line says so."""
    args = ["--model", model_dir, "--max-new-tokens", 12, "--greedy", "--ignore-eos"]
    for prompt in PROMPTS:
        args += ["--prompt", prompt]
    expected = [hf_greedy(model_dir, tokenizer(p)["input_ids"], 12, eos=None) for p in PROMPTS]
    for extra in (("--max-batch-size", 2), ("--max-batch-size", 1), ("--no-cache",)):
        records = run_json_lines(*args, *extra)
        assert [r["prompt"] for r in records] == list(PROMPTS)
        assert [r["generated_ids"] for r in records] == expected, extra
        assert all(r["tokens_per_second"] > 0 and r["all_tokens_per_second"] > 0 for r in records)


def test_several_prompts_printed_in_order_and_compared_one_by_one(model_dir, tokenizer):
    args = ["--model", model_dir, "--max-new-tokens", 10, "--greedy", "--ignore-eos", "--compare"]
    for prompt in PROMPTS:
        args += ["--prompt", prompt]
    result = run(*args)
    assert result.returncode == 0, result.err
    blocks, compares = [], []
    for i, prompt in enumerate(PROMPTS):
        text = tokenizer.decode(hf_greedy(model_dir, tokenizer(prompt)["input_ids"], 10, eos=None))
        blocks.append(f"--- prompt {i + 1} of 3 ---\n{prompt}{text}\n")
        compares.append(f"prompt {i + 1} of 3: identical to HuggingFace generate(): all 10 new tokens match\n")
    assert result.out == "".join(blocks) + "".join(compares)
    assert "3 prompts, 30 new tokens" in result.err, result.err


def test_prompt_i_samples_as_it_would_alone_with_seed_plus_i(model_dir):
    """Sampled, batched: prompt i writes what it writes alone with --seed 7 + i."""
    args = ("--model", model_dir, "--max-new-tokens", 12, "--top-k", 20, "--ignore-eos")
    together = run_json_lines(*args, *[x for p in PROMPTS for x in ("--prompt", p)], "--seed", 7)
    for i, prompt in enumerate(PROMPTS):
        alone = run_json(*args, "--prompt", prompt, "--seed", 7 + i)
        assert together[i]["seed"] == 7 + i and together[i]["generated_ids"] == alone["generated_ids"], i


def test_one_generator_draws_as_the_lesson_does():
    """stream_prompts gives prompt i the tokens solution_13.generate_tokens
    picks for it alone with seed + i (batch 1), with lesson 12's loop
    (FullSequence) and with lesson 15's batched loop, whatever the batch size."""
    from solutions.solution_01 import GPT2Config
    from solutions.solution_13 import generate_tokens
    from tools.generation import Sampling, reference_code, stream_prompts
    from tools.steps import FixedBatchedLogits, per_prompt

    values = np.random.default_rng(8).normal(0, 2, (1, 40, 30))
    config = GPT2Config(vocab_size=30, n_positions=40, n_embd=4, n_layer=1, n_head=2)
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    no_cache, cache = reference_code(cache=False), reference_code(cache=True)
    for settings in (Sampling(True, 0.8, 10, 0.9), Sampling(True, 1.5), Sampling(False)):
        expected = {
            i: generate_tokens(FixedLogits(values), np.array([p]), 20, settings.temperature, settings.do_sample,
                               top_k=settings.top_k, top_p=settings.top_p, eos_token_id=7, seed=5 + i)[0, len(p):].tolist()
            for i, p in enumerate(prompts)
        }
        assert per_prompt(stream_prompts(no_cache, FixedLogits(values), prompts, 20, settings, 5, 7)) == expected
        for batch in (1, 2, 8):
            got = stream_prompts(cache, FixedBatchedLogits(values, config), prompts, 20, settings, 5, 7, max_batch_size=batch)
            assert per_prompt(got) == expected, (settings, batch)


def test_incremental_decoding_waits_for_whole_characters(tokenizer):
    from tools.generation import IncrementalDecoder

    decoder = IncrementalDecoder(tokenizer)
    ids = tokenizer("aé€b")["input_ids"]  # one token per byte: 1 + 2 + 3 + 1
    assert [decoder.push(i) for i in ids] == ["a", "", "é", "", "", "€", "b"]
    assert decoder.flush() == "" and decoder.text() == "aé€b"


def test_hub_id_from_the_cache_and_top_k_1_is_greedy(model_dir, tmp_path):
    """A hub id is read from HuggingFace's cache offline (no download)."""
    snapshot = tmp_path / "hub" / "models--course--tiny-gpt2" / "snapshots" / ("0" * 40)
    shutil.copytree(model_dir, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    env = child_env({**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub")})
    args = ("--prompt", PROMPT, "--max-new-tokens", 10, "--ignore-eos")
    sampled = run_json("--model", "course/tiny-gpt2", *args, "--top-k", 1, "--seed", 1, env=env)
    assert sampled["generated_ids"] == hf_greedy(model_dir, sampled["prompt_ids"], 10, eos=None)
    # --top-k 0 is "off", as in HuggingFace: the same draws as keeping every one of the 257 tokens.
    off = run_json("--model", "course/tiny-gpt2", *args, "--top-k", 0, "--seed", 2, env=env)
    assert off["generated_ids"] == run_json("--model", "course/tiny-gpt2", *args, "--top-k", 257, "--seed", 2, env=env)["generated_ids"]
    assert_refused(run("--model", "course/other", *args, env=env), "course/other", "HF_HUB_OFFLINE", stage="checkpoint")
