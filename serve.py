"""Serve the GPT-2 built in this course over HTTP, with MAX's OpenAI-compatible server.

examples:
  python serve.py --model ./my-gpt2           # a folder written by save_pretrained
  python serve.py --model gpt2                # a hub id, from the local HuggingFace cache
  python serve.py --model ./my-gpt2 --steps   # YOUR steps/step_15.py (many sequences at once)
  python serve.py --model ./my-gpt2 --port 8001 --max-batch-size 4
  python serve.py --model ./my-gpt2 --quantize q4_0   # lesson 17: 4-bit weights

It runs `max serve` with this course's model (serve/gpt2_arch) on the CPU,
on 127.0.0.1 only, offline (HF_HUB_OFFLINE=1, MAX_SERVE_DISABLE_TELEMETRY=1).
When the server answers, it prints the URL and a curl line to paste; Ctrl-C
stops it. The first start compiles the model (minutes for the 124M model
on 2 cores); later starts reuse MAX's compile cache.

Exit codes: 0 stopped with Ctrl-C; 1 the server failed; 2 bad input (one
line starting with "error: " on stderr, before anything is started).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.checkpoint import CheckpointError  # noqa: E402
from tools.cli import BadInput, OneLineParser  # noqa: E402
from tools.offline import go_offline, offline_env  # noqa: E402
from tools.steps import StepsNotReady  # noqa: E402

HOST = "127.0.0.1"
READY_TIMEOUT_S = 900  # the first start of the 124M model compiles for a few minutes
EXAMPLE = {"prompt": "The meaning of life is", "max_tokens": 20, "temperature": 0}


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="serve.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gpt2", metavar="NAME",
                   help="a folder written by save_pretrained (safetensors weights, tokenizer), or a hub id "
                   "already in the local HuggingFace cache (default: gpt2)")
    p.add_argument("--port", type=int, default=8000, help="the port on 127.0.0.1 (default: 8000)")
    p.add_argument("--steps", action="store_true",
                   help="serve YOUR steps/step_15.py instead of solutions/ (refused while a TODO is open)")
    p.add_argument("--steps-dir", type=Path, default=None, metavar="DIR",
                   help="for maintainers and tests: read step_15.py from DIR (implies --steps)")
    p.add_argument("--no-kernel", action="store_true",
                   help="decode without the Mojo ops (lesson 16's kernel, the in-place attention): lesson 15's "
                   "graph; by default they run in every decode step when they build here (with --steps: "
                   "lesson 15, always)")
    p.add_argument("--quantize", default=None, metavar="FORMAT",
                   help="lesson 17: every Linear's weight in q4_0, q4_k or q6_k (solutions/solution_17.py's "
                   "quantize_model), decoded by MAX's ops.qmatmul instead of the kernel (default: float32)")
    p.add_argument("--max-batch-size", type=int, default=8, metavar="N",
                   help="requests MAX handles together (default: 8; MAX's own default on a CPU is 1)")
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="the context of a request, prompt + new tokens, at most the model's n_positions; "
                   "the cache holds max-batch-size x N tokens (72 KiB each at 124M), allocated at start "
                   "(default: n_positions, 1024 for GPT-2)")
    p.add_argument("--trace", type=Path, default=None, help=argparse.SUPPRESS)  # tests: token ids per request
    return p


def check_input(args) -> tuple:
    """Everything that can be refused before MAX starts: (checkpoint, its config)."""
    from tools import checkpoint as ckpt

    go_offline()
    if not 1 <= args.port <= 65535:
        raise BadInput(f"--port must be in 1..65535, got {args.port}")
    if args.max_batch_size < 1:
        raise BadInput(f"--max-batch-size must be at least 1, got {args.max_batch_size}")
    if args.steps or args.steps_dir:
        from tools.steps import learner_batched_code

        learner_batched_code(args.steps_dir or REPO / "steps")  # StepsNotReady while a TODO is open
    found = ckpt.locate(args.model)
    config = ckpt.load_hf_config(found)
    if args.max_length is not None and not 1 <= args.max_length <= config.n_positions:
        raise BadInput(f"--max-length must be in 1..{config.n_positions} (the model's n_positions), "
                       f"got {args.max_length}")
    from tools.generation import quantize_problem

    problem = quantize_problem(args.quantize, n_embd=config.n_embd, name=lambda name: "--" + name)
    if problem:
        raise BadInput(problem)
    if "GPT2LMHeadModel" not in (config.architectures or []):
        raise BadInput(f"{args.model}: config.json's architectures {config.architectures} lack GPT2LMHeadModel, "
                       "which MAX looks for (save the model as a GPT2LMHeadModel)")
    if not any(found.folder.glob("*.safetensors")):
        raise BadInput(f"{args.model} has no *.safetensors weights, the only kind MAX reads here: "
                       "save it with save_pretrained(folder) (safetensors is its default)")
    with socket.socket() as s:
        try:
            s.bind((HOST, args.port))
        except OSError:
            raise BadInput(f"port {args.port} on {HOST} is in use: choose another with --port") from None
    return found, config


def max_serve_command(args, found, config) -> tuple[list[str], dict]:
    """`max serve` with the course's model, and its environment."""
    command = [
        sys.executable, "-m", "max.entrypoints.pipelines", "serve",  # the `max` command
        "--custom-architectures", str(REPO / "serve" / "gpt2_arch"),
        "--model-path", found.source,
        "--served-model-name", args.model,
        "--devices", "cpu",
        "--max-length", str(args.max_length or config.n_positions),
        # Without it MAX handles one request at a time on a CPU.
        "--max-batch-size", str(args.max_batch_size),
        "--port", str(args.port),
    ]
    env = offline_env()
    env["MAX_SERVE_HOST"] = HOST  # MAX's default is every address (0.0.0.0)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if args.quantize:
        env["GPT2_SERVE_QUANTIZE"] = args.quantize
    if args.steps or args.steps_dir:
        env["GPT2_SERVE_STEPS_DIR"] = str((args.steps_dir or REPO / "steps").resolve())
    elif not args.no_kernel:
        from tools.generation import kernel_or_note

        if kernel_or_note("serving"):  # built here, once, before MAX starts the model's process
            env["GPT2_SERVE_KERNEL"] = "1"
    if args.trace:
        env["GPT2_SERVE_TRACE"] = str(args.trace.resolve())
    return command, env


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def relay_output(server: subprocess.Popen) -> list[str]:
    """Copy MAX's log to stdout as it comes; returns the list of its error
    lines ("RuntimeError: ..."), filled as they come."""
    errors = []

    def relay():
        for line in server.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.split(":")[0].endswith("Error") and " " not in line.split(":")[0]:
                errors.append(line.strip())

    threading.Thread(target=relay, daemon=True).start()
    return errors


def stop(server: subprocess.Popen) -> None:
    """Ctrl-C to the server's process group, then harder signals if it lingers."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(server.pid, sig)
            server.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break
    try:  # MAX's API process can end before its worker processes
        os.killpg(server.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(argv) -> int:
    args = build_parser().parse_args(argv)
    found, config = check_input(args)
    command, env = max_serve_command(args, found, config)
    base = f"http://{HOST}:{args.port}"
    code = "your steps/step_15.py" if args.steps or args.steps_dir else "solutions/solution_15.py"
    code += f", its weights in {args.quantize} (solutions/solution_17.py)" if args.quantize else ""
    print(f"serve.py: serving {code} with: max {shlex.join(command[3:])}", flush=True)
    interrupted = []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    signal.signal(signal.SIGTERM, lambda *_: interrupted.append(True))
    start = time.monotonic()
    # Its own process group: Ctrl-C reaches MAX's processes only through stop().
    server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    errors = relay_output(server)
    try:
        while not answers(base + "/v1/models"):
            if server.poll() is not None:
                server.wait()
                why = errors[0] if errors else "its log above says why"
                print(f"serve.py: error: MAX stopped before it was ready: {why}", file=sys.stderr)
                return 1
            if interrupted:
                return 0
            if time.monotonic() - start > READY_TIMEOUT_S:
                print(f"serve.py: error: MAX was not ready after {READY_TIMEOUT_S} s", file=sys.stderr)
                return 1
            time.sleep(0.5)
        request = json.dumps({"model": args.model, **EXAMPLE})
        print(f"\nserve.py: ready after {time.monotonic() - start:.0f} s at {base}/v1 (model name {args.model!r}). "
              "Try:\n"
              f"curl {base}/v1/completions -H 'Content-Type: application/json' -d {shlex.quote(request)}\n"
              "serve.py: Ctrl-C stops the server\n", flush=True)
        failures = 0
        while not interrupted:
            if server.poll() is not None:
                print(f"serve.py: error: MAX stopped (exit code {server.returncode})", file=sys.stderr)
                return 1
            # If MAX's model process dies, its API process stops answering but does not exit.
            failures = 0 if answers(base + "/health") else failures + 1
            if failures >= 3:
                print("serve.py: error: the server stopped answering (its log above says why)", file=sys.stderr)
                return 1
            time.sleep(2)
        return 0
    finally:
        print("serve.py: stopping the server", file=sys.stderr, flush=True)
        stop(server)


def main(argv=None) -> int:
    try:
        return run(argv)
    except (BadInput, CheckpointError, StepsNotReady) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
