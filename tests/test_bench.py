"""bench.py end to end, in a subprocess, on its --quick config: every
figure is there and sane, and MAX with the KV cache chose HuggingFace's
tokens. No timing limits: the figures depend on the machine and its load."""

import json
import math
import statistics
import subprocess
import sys

import pytest

from tests.lessons import REPO
from tools.offline import offline_env


def run(*args, timeout=900):
    return subprocess.run([sys.executable, str(REPO / "bench.py"), *args], capture_output=True, text=True,
                          cwd=REPO, env=offline_env(), timeout=timeout)


@pytest.fixture(scope="module")
def record():
    result = run("--quick", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_every_figure_is_there_and_sane(record):
    assert record["command"] == "python bench.py --quick --json"
    assert record["date"] and record["machine"]["cpu"] and record["machine"]["cores"] >= 1
    assert record["threads"] == 2 and record["repeats"] >= 1
    assert set(record["compile_seconds"]) == {"max_no_cache", "max_kv_cache", "max_batched", "max_kernel"}
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
    assert record["llama_cpp"].startswith(("absent", "installed"))


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


@pytest.mark.parametrize("args, fragment", [
    (("--new-tokens", "-3"), "--new-tokens must be >= 2"),
    (("--threads", "0"), "--threads must be >= 1"),
    (("--quick", "--memory-tokens", "500"), "exceed n_positions=128"),
    (("--lengths", "x"), "invalid int value"),
    (("--batch-sizes", "0"), "--batch-sizes must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    result = run(*args, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and fragment in result.stderr
    assert result.stdout == ""
