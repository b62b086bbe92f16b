"""How long a learner waits for the check after editing their module.

    python tests/bench_feedback.py                 # steps 03-11
    python tests/bench_feedback.py --steps 07 10   # some steps
    python tests/bench_feedback.py --json          # last line: one JSON object
    python tests/bench_feedback.py --keep-cache    # on this machine's own MAX cache

MAX compiles the kernels of a graph it has not seen and caches them (under
$XDG_DATA_HOME/modular, by default ~/.local/share/modular), so the wait
depends on what the machine has compiled before. To measure what a learner
meets, the benchmark starts from an empty cache, as on a new machine, and
runs what the README's set-up runs (step 11's check on the solutions).
Then, for each step, it writes the reference solution into a temporary
folder as step_NN.py with one edit that changes the traced graph but not
the numbers (the module's output plus output * 0.0 * k, with a fresh k
each time), so that MAX cannot have seen that graph, as after a real edit.
It runs the step's check on that folder, as `pixi run sNN` would, three
times, and records the seconds until the check's closing line:

    first check    the step's first run on this machine (after the set-up)
    after an edit  another edit: what every later try costs (the target)
    unchanged      the same file again (everything cached)

The check passes, so every config is compiled and run: the worst case.
This is a benchmark, not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The object each step's check calls, wrapped so that its graph changes.
ENTRY = {
    3: ("class", "LayerNorm"),
    4: ("class", "GPT2MLP"),
    5: ("class", "GPT2Embeddings"),
    6: ("class", "GPT2PositionEmbeddings"),
    7: ("class", "GPT2MultiHeadAttention"),
    8: ("function", "pre_norm_residual"),
    9: ("class", "GPT2Block"),
    10: ("class", "GPT2Model"),
    11: ("class", "MaxGPT2LMHeadModel"),
}


def edited_solution(step: int, k: float) -> str:
    """The solution with a graph-changing, number-preserving edit."""
    kind, name = ENTRY[step]
    source = (REPO / "solutions" / f"solution_{step:02d}.py").read_text()
    if kind == "class":
        wrapper = (
            f"\n\n_original_call = {name}.__call__\n\n\n"
            f"def _edited_call(self, *args):\n"
            f"    out = _original_call(self, *args)\n"
            f"    return out + out * 0.0 * {k!r}\n\n\n"
            f"{name}.__call__ = _edited_call\n"
        )
    else:
        wrapper = (
            f"\n\n_original = {name}\n\n\n"
            f"def {name}(*args):\n"
            f"    out = _original(*args)\n"
            f"    return out + out * 0.0 * {k!r}\n"
        )
    return source + wrapper


def run_check(step: int, folder: Path | str, env: dict) -> tuple[float, bool, str]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", f"tests/test_step_{step:02d}.py", "--target", str(folder), "-q"],
        capture_output=True, text=True, cwd=REPO, env=env,
    )
    seconds = time.perf_counter() - start
    return seconds, result.returncode == 0, result.stdout[-2000:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=sorted(ENTRY))
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument("--keep-cache", action="store_true",
                        help="use this machine's MAX cache instead of an empty one (skips the set-up run)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.steps if s not in ENTRY]
    if unknown:
        parser.error(f"steps {unknown} are not benchmarked; choose from {sorted(ENTRY)}")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ)
        if not args.keep_cache:
            env["XDG_DATA_HOME"] = cache
        return measure(args, env)


def measure(args, env: dict) -> int:
    rows = {}
    setup = None
    if not args.keep_cache:
        setup, ok, output = run_check(11, "solutions", env)
        if not ok:
            print(output, file=sys.stderr)
            print("the set-up's check (step 11 on the solutions) failed", file=sys.stderr)
            return 1
        print(f"empty MAX cache; the set-up's check (step 11 on the solutions): {setup:.1f} s")
    print(f"{'step':>4} | {'first check':>11} | {'after an edit':>13} | {'unchanged':>9}")
    for step in args.steps:
        times = []
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for edit in (True, True, False):
                if edit:
                    (folder / f"step_{step:02d}.py").write_text(edited_solution(step, random.random()))
                seconds, ok, output = run_check(step, folder, env)
                if not ok:
                    print(output, file=sys.stderr)
                    print(f"step {step:02d}: the edited solution failed its check", file=sys.stderr)
                    return 1
                times.append(seconds)
        first, edited, unchanged = times
        rows[step] = {"first_seconds": round(first, 1), "edit_seconds": round(edited, 1),
                      "unchanged_seconds": round(unchanged, 1)}
        print(f"{step:>4} | {first:9.1f} s | {edited:11.1f} s | {unchanged:7.1f} s", flush=True)
    edits = [r["edit_seconds"] for r in rows.values()]
    print(f"after an edit: median {statistics.median(edits):.1f} s, worst {max(edits):.1f} s")
    if args.json:
        print(json.dumps({"setup_seconds": None if setup is None else round(setup, 1), "steps": rows,
                          "median_edit_seconds": statistics.median(edits), "worst_edit_seconds": max(edits)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
