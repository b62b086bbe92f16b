"""How fast serve.py starts and writes, against generate.py on the same model.

    python serve/bench_serve.py --model FOLDER [--new-tokens 64] [--cold]

1. start serve.py and time it until it answers, stop it, start it again:
   the first start pays for whatever MAX's compile cache lacks (all of it
   with --cold, which points MAX at an empty cache), the second is warm;
2. one greedy request of N new tokens, three times; one streamed (time to
   the first token); eight at once (all tokens / wall time);
3. the memory of the model's process before and after;
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
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PROMPT = "The meaning of life is"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, env: dict, log: Path) -> tuple[subprocess.Popen, str, float]:
    """serve.py, running and ready: (process, base URL, seconds to ready)."""
    port = free_port()
    begin = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "serve.py"), "--model", model, "--port", str(port)],
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


def model_process_mb(proc: subprocess.Popen) -> float:
    """The largest resident memory among MAX's processes (serve.py starts them
    in a process group of their own): the model's process."""
    ps = [line.split() for line in subprocess.run(["ps", "-eo", "pid=,ppid=,pgid=,rss="], capture_output=True,
                                                  text=True).stdout.splitlines()]
    groups = {pgid for pid, ppid, pgid, rss in ps if int(ppid) == proc.pid}
    return max(int(rss) / 1024 for pid, ppid, pgid, rss in ps if pgid in groups)


def complete(base: str, model: str, n: int, stream: bool = False) -> tuple[float, float]:
    """(seconds to the first token, seconds to the last) of one greedy request of n tokens."""
    body = {"model": model, "prompt": PROMPT, "max_tokens": n, "temperature": 0, "ignore_eos": True, "stream": stream}
    begin, first = time.monotonic(), None
    with httpx.stream("POST", base + "/v1/completions", json=body, timeout=1200) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith("data:"):
                first = time.monotonic() - begin
    total = time.monotonic() - begin
    return first or total, total


def generate_py(model: str, n: int, env: dict) -> dict:
    command = [sys.executable, str(REPO / "generate.py"), "--model", model, "--prompt", PROMPT,
               "--max-new-tokens", str(n), "--greedy", "--ignore-eos", "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a GPT-2 folder written by save_pretrained")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--cold", action="store_true", help="first start with an empty MAX compile cache")
    args = ap.parse_args()
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
    res["model_process_mb_after"] = round(model_process_mb(proc))
    stop(proc)

    record = generate_py(model, n, env)
    res["generate_py_tokens_per_s"] = record.get("tokens_per_second", record)
    res["load_average_end"] = round(os.getloadavg()[0], 1)
    res["logs"] = str(logs)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
