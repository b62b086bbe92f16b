"""bench.py end to end, in a subprocess, on its --quick config: every
figure is there and sane, and MAX with the KV cache chose HuggingFace's
tokens; tests/bench_context.py, on the same config; the one-line
refusals of the benchmarks (bench.py, tests/bench_context.py and
serve/bench_serve.py). No timing limits: the figures depend on the
machine and its load."""

import json
import math
import statistics
import subprocess
import sys

import pytest

from tests.lessons import REPO
from tools.offline import offline_env


def run_script(script: str, *args, timeout=900):
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True,
                          cwd=REPO, env=offline_env(), timeout=timeout)


def run(*args, timeout=900):
    return run_script("bench.py", *args, timeout=timeout)


@pytest.fixture(scope="module")
def record():
    result = run("--quick", "--json", "--quantize", "q4_0")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_every_figure_is_there_and_sane(record):
    assert record["command"] == "python bench.py --quick --json --quantize q4_0"
    assert record["date"] and record["machine"]["cpu"] and record["machine"]["cores"] >= 1
    assert record["threads"] == 2 and record["repeats"] >= 1
    assert set(record["compile_seconds"]) == {"max_no_cache", "max_kv_cache", "max_batched", "max_kernel", "max_q4_0"}
    assert all(s >= 0 for s in record["compile_seconds"].values())
    assert set(record["forward_speedup_vs_hf"]) == set(record["forward"]) == {"16", "64"}
    for row in record["forward"].values():
        assert positive(row["max_ms"]) and positive(row["hf_ms"]) and positive(row["speedup_vs_hf"])
        assert 0 <= row["max_abs_diff"] < 1e-3
    for row in record["generate"].values():
        for name in ("max_kernel", "max_kv_cache", "max_no_cache", "hf_cache"):
            assert all(positive(row[name][k]) for k in ("tokens_per_s", "decode_ms_per_token", "prefill_ms"))
    for key in ("generate_speedup_vs_hf", "decode_ms_per_token", "bandwidth_floor_ms", "decode_vs_floor",
                "decode_bytes"):
        assert positive(record[key]), key
    assert "torch.sum" in record["bandwidth_method"]
    assert set(record["bandwidth_gb_s"]) == {"1", "2"} and all(map(positive, record["bandwidth_gb_s"].values()))
    assert 0 <= record["others_cpu_share"]


def test_the_default_path_is_the_kernel_and_the_floor_the_best_bandwidth(record):
    """Lesson 16: the top-level decode figure is the default path's (the Mojo kernel, built here by
    the run itself), beside lesson 14's; the floor is the decode bytes over the best bandwidth measured."""
    longest = record["generate"]["32"]
    assert record["kernel"] is True and record["default_path"] == "max_kernel"
    assert record["decode_ms_per_token"] == record["decode_ms_per_token_kernel"] == longest["max_kernel"]["decode_ms_per_token"]
    assert record["decode_ms_per_token_no_kernel"] == longest["max_kv_cache"]["decode_ms_per_token"]
    assert record["kernel_speedup"] == pytest.approx(record["decode_ms_per_token_no_kernel"] / record["decode_ms_per_token"])
    assert record["generate_speedup_vs_hf"] == pytest.approx(longest["max_kernel"]["tokens_per_s"] / longest["hf_cache"]["tokens_per_s"])
    best = max(record["bandwidth_gb_s"], key=record["bandwidth_gb_s"].get)
    assert record["bandwidth_best_threads"] == int(best) and record["bandwidth_best_gb_s"] == record["bandwidth_gb_s"][best]
    assert record["bandwidth_floor_ms"] == pytest.approx(1e3 * record["decode_bytes"] / (record["bandwidth_best_gb_s"] * 1e9))
    assert record["decode_vs_floor"] == pytest.approx(record["decode_ms_per_token"] / record["bandwidth_floor_ms"])
    assert record["llama_cpp"].startswith(("absent: ", "llama-cpp-python "))


def test_no_kernel_reports_lesson_14s_path():
    result = run("--quick", "--json", "--no-kernel", "--repeats", "1", "--new-tokens", "4", "--batch-sizes", "1")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["kernel"] == "left out (--no-kernel)" and record["default_path"] == "max_kv_cache"
    assert "max_kernel" not in record["generate"]["4"] and "max_kernel" not in record["compile_seconds"]
    assert record["decode_ms_per_token"] == record["generate"]["4"]["max_kv_cache"]["decode_ms_per_token"]
    assert record["decode_ms_per_token_kernel"] is None and "Mojo kernel: left out (--no-kernel)" in result.stdout


def test_decode_bytes_count_every_weight_once(record):
    """The small config: 2 blocks of 64 wide (n_inner 256), ln_f, and the LM head
    (tied to wte, vocabulary 1000) counted once, plus one row each of wte and wpe."""
    d, inner, vocab = 64, 256, 1000
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * inner + inner) + (inner * d + d)
    assert record["decode_bytes"] == 4 * (2 * block + 2 * d + vocab * d + 2 * d)


def test_memory_check_and_peaks(record):
    memory = record["memory"]
    assert memory["tokens"] == 96 and memory["early_tokens"] == 32 and memory["limit"] == 1.10
    assert all(positive(memory[k]) for k in ("peak_mb_early", "peak_mb_late", "load_peak_mb", "bench_peak_mb"))
    assert memory["peak_mb_late"] >= memory["peak_mb_early"]
    assert memory["ratio"] == pytest.approx(memory["peak_mb_late"] / memory["peak_mb_early"])
    assert memory["within_limit"] == (memory["ratio"] <= 1.10)


def test_max_with_cache_chose_huggingfaces_tokens(record):
    """bench.py itself exits 1 when the contenders disagree; here the greedy
    tokens of its first timed run of each, as it reports them."""
    assert record["tokens_identical"] is True and record["generate_new_tokens"] == 32
    # The two MAX paths compute the same logits up to float32 rounding (lesson 14's tolerance).
    assert 0 <= record["cache_logit_max_abs_diff"] < 1e-3
    assert set(record["generate"]) == {"8", "32"}
    for n, row in record["generate"].items():
        tokens = row["tokens"]
        assert len(tokens["hf_cache"]) == int(n)
        assert tokens["max_kernel"] == tokens["max_kv_cache"] == tokens["hf_cache"] == tokens["max_no_cache"]


def test_batched_decode_is_reported_per_batch_size(record):
    """Lesson 15's section: a step time and tokens/s per batch size, beside
    lesson 14's step (bench.py exits 1 unless every row wrote its tokens alone)."""
    batched = record["batched"]
    assert batched["new_tokens_per_row"] == 8 and set(batched["by_batch"]) == {"1", "2", "4"}
    for b, row in batched["by_batch"].items():
        assert positive(row["decode_ms_per_step"]) and positive(row["step_vs_first"])
        assert row["decode_tokens_per_s"] == pytest.approx(int(b) * 1e3 / row["decode_ms_per_step"])
    assert batched["by_batch"]["1"]["step_vs_first"] == 1.0
    assert positive(batched["lesson_14_decode_ms_per_token"]) and positive(batched["batch_1_decode_ms_per_token"])
    ratios = batched["pair_ratios"]
    assert len(ratios) == 2 * record["repeats"] and all(positive(x) for x in ratios)
    assert batched["batch_1_vs_lesson_14"] == pytest.approx(statistics.median(ratios))


def q4_0_bytes(rows: int, width: int) -> int:
    """GGUF's Q4_0: 18 bytes (a float16 scale, 32 codes of 4 bits) per 32 weights of a row."""
    return rows * width // 32 * 18


def test_q4_0_reads_its_blocks_and_stays_near_float32(record):
    """Lesson 17's format in the same run: the bytes a decode step reads (every Linear in Q4_0, the LM
    head's 1000 rows padded to 1024; biases, LayerNorms and one row each of wte and wpe in float32), and
    its distance from float32, which HuggingFace on the weights Q4_0 stores must reproduce."""
    import numpy as np
    import torch

    from bench import QUICK, build_hf, generate_prompt
    from tests.twins import hf_dequantized
    from tools.quality import greedy_agreement, next_token_kl

    q = record["q4_0"]
    d, inner = 64, 256
    linears = q4_0_bytes(3 * d, d) + q4_0_bytes(d, d) + q4_0_bytes(inner, d) + q4_0_bytes(d, inner)
    block = linears + 4 * (2 * 2 * d + 3 * d + d + inner + d)
    assert q["weight_bytes"] == 2 * block + 4 * 2 * d + q4_0_bytes(1024, d) + 4 * 2 * d
    assert q["bits_per_weight"] == pytest.approx(8 * q["weight_bytes"] / (record["decode_bytes"] / 4))
    longest = record["generate"]["32"]
    assert q["decode_ms_per_token"] == longest["max_q4_0"]["decode_ms_per_token"]
    assert q["tokens_per_s"] == longest["max_q4_0"]["tokens_per_s"]
    assert q["decode_speedup_vs_float32"] == pytest.approx(record["decode_ms_per_token"] / q["decode_ms_per_token"])
    assert record["quantized_formats"] == ["q4_0"] and len(longest["tokens"]["max_q4_0"]) == 32

    hf = build_hf(QUICK)
    path = [*generate_prompt(type("Args", (), {"prompt_tokens": 16}), hf)[0].tolist(), *longest["tokens"]["hf_cache"]]
    with torch.no_grad():
        ids = torch.tensor([path])
        reference = hf(ids).logits[0, 15:-1].numpy()
        stored = hf_dequantized(hf, "q4_0")(ids).logits[0, 15:-1].numpy()
    # The weights' rounding dominates; MAX's 8-bit activations add little (measured: 0.6 % of the KL).
    assert q["kl_vs_fp32"] == pytest.approx(float(next_token_kl(reference, stored).mean()), rel=0.1)
    assert abs(q["greedy_agreement"] - greedy_agreement(reference, stored)) <= 2 / 32
    assert q["kl_vs_fp32"] > 0 and np.isfinite(q["kl_vs_fp32"])


def test_llama_cpp_on_the_same_weights(record):
    """The optional peer: when llama-cpp-python and llama.cpp's converter are here, llama.cpp's F32 on the
    converted weights is float32 (KL ~ 0, HF's greedy tokens) and its Q4_0 as far from it as the course's."""
    if not record["llama_cpp"].startswith("llama-cpp-python"):
        pytest.skip(f"llama.cpp {record['llama_cpp']}")
    peer = record["llama_cpp_formats"]
    assert set(peer) == {"f32", "f16", "q8_0", "q4_0"}
    longest = record["generate"]["32"]
    assert peer["f32"]["kl_vs_fp32"] < 1e-4 and peer["f32"]["greedy_agreement"] == 1.0
    assert peer["f32"]["weight_bytes"] == record["decode_bytes"]
    assert longest["tokens"]["llama_f32"][:8] == longest["tokens"]["hf_cache"][:8]
    assert peer["q4_0"]["kl_vs_fp32"] == pytest.approx(record["q4_0"]["kl_vs_fp32"], rel=0.25)
    assert record["q4_0"]["llama_cpp"] == peer["q4_0"]
    assert record["q4_0"]["decode_speedup_vs_llama_cpp"] == pytest.approx(
        peer["q4_0"]["decode_ms_per_token"] / record["q4_0"]["decode_ms_per_token"])


# --- tests/bench_context.py: where a decode step's time goes as the context grows ---


def test_context_benchmark_times_the_engine_beside_the_model_alone():
    """The engine's graph (window, then model) and the model handed the cut cache give the same
    logits at every length, so their difference is the window's cost."""
    result = run_script("tests/bench_context.py", "--quick", "--repeats", "3", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["command"] == "python tests/bench_context.py --quick --repeats 3 --json"
    rows = record["paths"]["float32"]
    assert [row["cached"] for row in rows] == [4, 60]
    for row in rows:
        assert row["logit_gap"] <= 1e-4
        assert positive(row["step_ms"]) and positive(row["direct_ms"])
        assert math.isclose(row["window_ms"], row["step_ms"] - row["direct_ms"])


@pytest.mark.parametrize("script, args, fragment", [
    ("bench.py", ("--quick", "--quantize", "q6_k"), "q6_k cuts each weight row into blocks of 256"),
    ("bench.py", ("--quantize", "q3"), "--quantize must be one of q4_0, q4_k, q6_k"),
    ("bench.py", ("--quantize", "q4_0", "q4_0"), "--quantize names a format twice"),
    ("bench.py", ("--figure", "x.png"), "--figure draws the quantized formats: add --quantize"),
    ("bench.py", ("--new-tokens", "-3"), "--new-tokens must be >= 2"),
    ("bench.py", ("--threads", "0"), "--threads must be >= 1"),
    ("bench.py", ("--quick", "--memory-tokens", "500"), "exceed n_positions=128"),
    ("bench.py", ("--lengths", "x"), "invalid int value"),
    ("bench.py", ("--batch-sizes", "0"), "--batch-sizes must be >= 1"),
    ("tests/bench_context.py", ("--paths", "q9"), "unknown path 'q9'"),
    ("tests/bench_context.py", ("--quick", "--paths", "q6_k"), "--quick is 64 wide"),
    ("tests/bench_context.py", ("--lengths", "0"), "--lengths must be in [1, 1023]"),
    ("tests/bench_context.py", ("--repeats", "0"), "--repeats and --threads must be >= 1"),
    ("serve/bench_serve.py", ("--new-tokens", "5"), "one of the arguments --model --random-124m is required"),
    ("serve/bench_serve.py", ("--random-124m", "unused", "--new-tokens", "0"), "--new-tokens must be >= 1"),
    ("serve/bench_serve.py", ("--model", "no-such-folder"), "no config.json there"),
    ("serve/bench_serve.py", ("--random-124m", "unused", "--memory-tokens", "2000"), "--memory-tokens must be in [32, 1024]"),
])
def test_bad_input_is_one_line_and_exit_2(script, args, fragment):
    result = run_script(script, *args, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and fragment in result.stderr
    assert result.stdout == ""
