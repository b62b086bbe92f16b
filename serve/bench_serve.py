"""How fast serve.py starts and writes, against generate.py on the same model.

    python serve/bench_serve.py --model FOLDER [--new-tokens 64] [--cold]
    python serve/bench_serve.py --random-124m DIR     # GPT-2 124M's shape, seeded random weights

--random-124m writes DIR first if it does not exist (tests/twins.py's
save_checkpoint: seeded O(1)-scale weights, a byte-level tokenizer padded
to GPT-2's 50257 tokens), so no download is needed.

1. start serve.py and time it until it answers, stop it, start it again:
   the first start pays for whatever MAX's compile cache lacks (all of it
   with --cold, which points MAX at an empty cache), the second is warm;
2. one greedy request of N new tokens, three times; one streamed (time to
   the first token); eight at once (all tokens / wall time), and their
   ratio to one request alone (eight_vs_one);
3. the memory of the model's process before and after; then a server
   started with --max-length T (T = --memory-tokens, 512): its peak
   resident memory (sampled every 20 ms) while eight requests of T tokens
   (prompt + new) run at once, against a budget: the process before them
   (weights, compiled graph, MAX, and the cache, 8 x T x 72 KiB at 124M:
   2 x 4 bytes x n_layer x n_embd per token, which the server makes
   resident at start) + 128 MB (MARGIN_MB), and, when the server runs
   lesson 15's graph instead of the in-place attention (its log says
   which), twice the cache for the window that graph copies per step
   (WINDOW_COPIES);
4. generate.py --greedy --json on the same model and prompt (its
   tokens_per_second), after the server has stopped.
Every request goes to 127.0.0.1 and asks for exactly N tokens (ignore_eos).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

# The memory budget, over the process before the requests (weights, compiled graph, MAX and
# the cache, whose pages serve/gpt2_arch/loader.py touches at start): a margin for the step's
# working memory (activations, logits, MAX's allocator keeping its high-water mark); and, on
# lesson 15's graph (--no-kernel, or the Mojo ops not built), the window it copies twice per
# step (the gathered past keys and values, then each layer's concatenation with the new ones),
# as large as the cache at the last step. The in-place attention copies nothing of the cache.
WINDOW_COPIES = 2
MARGIN_MB = 128
IN_PLACE = "attention in place"  # in the model process's log line when it compiled that path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tools.cli import BadInput, OneLineParser  # noqa: E402

# The memory check's prompts are 6 GPT-2 tokens, 24 with --random-124m's byte-level tokenizer:
# requests of at least this many tokens still write some new ones.
MEMORY_PROMPT_ROOM = 32
PROMPT = "The meaning of life is"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, env: dict, log: Path, *extra: str) -> tuple[subprocess.Popen, str, float]:
    """serve.py, running and ready: (process, base URL, seconds to ready)."""
    port = free_port()
    begin = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "serve.py"), "--model", model, "--port", str(port), *extra],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    while "ready after" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() - begin > 1800:
            os.killpg(proc.pid, signal.SIGKILL)
            raise SystemExit(f"serve.py did not start; its output is in {log}")
        time.sleep(0.2)
    return proc, f"http://127.0.0.1:{port}", time.monotonic() - begin


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)


def model_pid(proc: subprocess.Popen) -> int:
    """The model's process: the one with the largest resident memory among MAX's
    processes (serve.py starts them in a process group of their own)."""
    ps = [list(map(int, line.split())) for line in subprocess.run(["ps", "-eo", "pid=,ppid=,pgid=,rss="],
                                                                   capture_output=True, text=True).stdout.splitlines()]
    groups = {pgid for pid, ppid, pgid, rss in ps if ppid == proc.pid}
    return max((rss, pid) for pid, ppid, pgid, rss in ps if pgid in groups)[1]


def model_process_mb(proc: subprocess.Popen) -> float:
    """The resident memory of the model's process, MB."""
    return rss_mb(model_pid(proc))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_during(pid: int, work) -> float:
    """The largest resident memory of pid, sampled every 20 ms while work() runs."""
    import threading

    peak, done = [rss_mb(pid)], threading.Event()

    def sample():
        while not done.wait(0.02):
            peak.append(rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return max(peak + [rss_mb(pid)])


def complete(base: str, model: str, n: int, stream: bool = False, prompt: str = PROMPT) -> tuple[float, float]:
    """(seconds to the first token, seconds to the last) of one greedy request of n tokens."""
    body = {"model": model, "prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True, "stream": stream}
    begin, first = time.monotonic(), None
    with httpx.stream("POST", base + "/v1/completions", json=body, timeout=1200) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith("data:"):
                first = time.monotonic() - begin
    total = time.monotonic() - begin
    return first or total, total


def memory_check(model: str, env: dict, log: Path, tokens: int) -> dict:
    """A server of `--max-length tokens` (so its cache is 8 slots of `tokens`):
    its model process's resident memory after one small request (weights,
    compiled graph, MAX), and its peak while eight requests of `tokens` tokens
    each (eight prompts, no prefix shared) run at once, against a budget."""
    from transformers import AutoConfig, AutoTokenizer

    config, tokenizer = AutoConfig.from_pretrained(model), AutoTokenizer.from_pretrained(model)
    prompts = [f"{PROMPT} {i}" for i in range(8)]
    new = [tokens - len(tokenizer(p)["input_ids"]) for p in prompts]
    proc, base, _ = start(model, env, log, "--max-length", str(tokens))
    try:
        complete(base, model, 4)
        pid = model_pid(proc)
        before = rss_mb(pid)

        def work():
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda job: complete(base, model, job[1], prompt=job[0]), zip(prompts, new)))

        peak = peak_rss_during(pid, work)
    finally:
        stop(proc)
    in_place = IN_PLACE in log.read_text(errors="replace")
    cache_mb = 8 * tokens * 2 * 4 * config.n_layer * config.n_embd / 2**20
    copies_mb = 0 if in_place else WINDOW_COPIES * cache_mb
    budget = before + copies_mb + MARGIN_MB  # before holds the cache already
    return {"tokens_per_request": tokens, "requests": 8, "attention_in_place": in_place, "before_mb": round(before),
            "peak_mb": round(peak), "cache_mb": round(cache_mb), "window_copies_mb": round(copies_mb),
            "margin_mb": MARGIN_MB,
            "budget_mb": round(budget), "peak_over_before_mb": round(peak - before), "within_budget": peak <= budget}


def generate_py(model: str, n: int, env: dict) -> dict:
    command = [sys.executable, str(REPO / "generate.py"), "--model", model, "--prompt", PROMPT,
               "--max-new-tokens", str(n), "--greedy", "--ignore-eos", "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse(argv) -> argparse.Namespace:
    """The options; bad input is a BadInput of one line, before any server starts."""
    ap = OneLineParser(prog="serve/bench_serve.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a GPT-2 folder written by save_pretrained")
    which.add_argument("--random-124m", type=Path, metavar="DIR",
                       help="GPT-2 124M's shape with random weights, written to DIR unless it exists")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--cold", action="store_true", help="first start with an empty MAX compile cache")
    ap.add_argument("--memory-tokens", type=int, default=512,
                    help="tokens (prompt + new) of each of the eight requests of the memory check")
    args = ap.parse_args(argv)
    if args.new_tokens < 1:
        raise BadInput(f"--new-tokens must be >= 1, got {args.new_tokens}")
    if args.model is not None:
        config = Path(args.model) / "config.json"
        if not config.is_file():
            raise BadInput(f"--model {args.model}: no config.json there (a folder written by save_pretrained)")
        n_positions = json.loads(config.read_text()).get("n_positions", 1024)
    else:
        n_positions = 1024  # GPT-2 124M
    if not MEMORY_PROMPT_ROOM <= args.memory_tokens <= n_positions:
        raise BadInput(f"--memory-tokens must be in [{MEMORY_PROMPT_ROOM}, {n_positions}], got {args.memory_tokens}")
    return args


def main(argv=None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.random_124m is not None:
        if not (args.random_124m / "config.json").is_file():
            from tests.twins import save_checkpoint

            args.random_124m.mkdir(parents=True, exist_ok=True)
            save_checkpoint(args.random_124m, {})
        args.model = args.random_124m
    n, model = args.new_tokens, str(args.model)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    logs = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    if args.cold:
        env["XDG_DATA_HOME"] = str(logs / "empty-cache")  # where MAX keeps its compile cache
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "model": model, "new_tokens": n, "load_average_start": round(os.getloadavg()[0], 1)}

    proc, base, seconds = start(model, env, logs / "first.log")
    res["first_start_s" + ("_empty_cache" if args.cold else "")] = round(seconds, 1)
    stop(proc)
    proc, base, seconds = start(model, env, logs / "warm.log")
    res["warm_start_s"] = round(seconds, 1)
    complete(base, model, 4)  # the first request also warms MAX's sampler
    res["model_process_mb_before"] = round(model_process_mb(proc))
    singles = [complete(base, model, n)[1] for _ in range(3)]
    res["one_request_tokens_per_s"] = [round(n / s, 1) for s in singles]
    first, total = complete(base, model, n, stream=True)
    res["streamed_first_token_s"], res["streamed_tokens_per_s"] = round(first, 3), round(n / total, 1)
    begin = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: complete(base, model, n), range(8)))
    res["eight_at_once_tokens_per_s"] = round(8 * n / (time.monotonic() - begin), 1)
    res["eight_vs_one"] = round(res["eight_at_once_tokens_per_s"] / statistics.median(res["one_request_tokens_per_s"]), 2)
    res["model_process_mb_after"] = round(model_process_mb(proc))
    stop(proc)
    res["memory"] = memory_check(model, env, logs / "memory.log", args.memory_tokens)

    record = generate_py(model, n, env)
    res["generate_py_tokens_per_s"] = record.get("tokens_per_second", record)
    res["load_average_end"] = round(os.getloadavg()[0], 1)
    res["logs"] = str(logs)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
