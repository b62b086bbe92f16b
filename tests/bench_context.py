"""Where a decode step's time goes as the context grows.

    python tests/bench_context.py                       # 124M, Q4_0 and the Mojo kernel, 16..380 cached
    python tests/bench_context.py --paths float32 q6_k  # other paths
    python tests/bench_context.py --json                # last line: one JSON object
    python tests/bench_context.py --quick               # a small config: seconds

A decode step of lessons 15-17 (tools/kv_engine.py) runs one graph: the
window (BatchWindow: each row's filled part of the cache buffers, sliced
out, then the rows gathered) and then the model. This times, for one
sequence (batch 1) with L positions cached, three graphs over the same
weights in one session, interleaved:

  step      lesson 15's graph: the window, then the model;
  direct    the model alone, handed past keys and values already cut to L
            (contiguous arrays made before the clock starts): no window;
  in place  the decode step whose attention reads the cache buffers where
            they lie (tools/decode_in_place.py, a Mojo op): neither the
            window nor attention's concatenation copies anything.

step - direct is what the window costs; how direct grows with L is the
model's own growth: attention (each layer's concatenation of cached and
new keys and values, one query per head against L keys, and the mask)
is the only part whose work depends on L. in place is what generate.py,
bench.py and serve.py run when the Mojo packages build here.
All three must give the same logits (a quantized path's in-place graph: the
same next-token distribution, tools/decode_in_place.py's QUANTIZED_KL), or no time is reported
(exit 1).

This is a benchmark, not a test: timings depend on the machine and its load.
Random O(1)-scale weights (tests/twins.py); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import FULL, QUICK, Disagreement, build_hf, build_max, machine, median, use_threads, wait_until_idle  # noqa: E402
from tools.cli import BadInput, OneLineParser  # noqa: E402
from tools.offline import go_offline  # noqa: E402
from tools.decode_in_place import QUANTIZED_KL  # noqa: E402
from tools.quality import next_token_kl  # noqa: E402

PATHS = ("float32", "kernel", "q4_0", "q4_k", "q6_k")
AGREE = 1e-4  # the graphs run the same operations on the same numbers (in place: to float32 rounding)


def direct_module(model):
    """The model under the engine's name for it ("model."), so both graphs load the same weights."""
    from max.nn.module_v3 import Module

    class Direct(Module):
        def __init__(self):
            self.model = model

        def __call__(self, *inputs):
            return self.model(*inputs)

    return Direct()


def parse(argv) -> argparse.Namespace:
    p = OneLineParser(prog="tests/bench_context.py", description=__doc__.split("\n")[0])
    p.add_argument("--paths", nargs="+", default=None, metavar="PATH",
                   help=f"decode paths: {', '.join(PATHS)} (default: q4_0 kernel; --quick: float32)")
    p.add_argument("--lengths", type=int, nargs="+", default=None, metavar="L",
                   help="cached positions (default: 16 144 272 380; --quick: 4 60)")
    p.add_argument("--repeats", type=int, default=30, help="timed steps of each graph at each length (default: 30)")
    p.add_argument("--threads", type=int, default=2, help="threads of MAX's session (default: 2)")
    p.add_argument("--quick", action="store_true", help="a small config (64 wide, float32 by default)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    args.overrides = QUICK if args.quick else FULL
    args.paths = args.paths or (["float32"] if args.quick else ["q4_0", "kernel"])
    args.lengths = args.lengths or ([4, 60] if args.quick else [16, 144, 272, 380])
    n_positions = args.overrides.get("n_positions", 1024)
    if unknown := [path for path in args.paths if path not in PATHS]:
        raise BadInput(f"unknown path {unknown[0]!r}: choose from {', '.join(PATHS)}")
    if args.quick and set(args.paths) & {"q4_k", "q6_k"}:
        raise BadInput("q4_k and q6_k need rows of 256 weights: --quick is 64 wide")
    if not all(1 <= n < n_positions for n in args.lengths):
        raise BadInput(f"--lengths must be in [1, {n_positions - 1}], got {args.lengths}")
    if args.repeats < 1 or args.threads < 1:
        raise BadInput("--repeats and --threads must be >= 1")
    return args


def build_path(path: str, args, hf):
    """(engine, direct graph) for one decode path, both over the same weights in one session."""
    from max.dtype import DType
    from max.graph import DeviceRef, TensorType

    from solutions.solution_15 import BatchedGPT2LMHeadModel
    from tools.kv_engine import build_graph, compile_batched_model

    extensions = []
    if path == "kernel":
        from solutions.solution_16 import KERNELS, KernelGPT2LMHeadModel
        from tools.generation import kernel_problem
        from tools.kv_engine import compile_kernel_model

        if problem := kernel_problem():
            raise BadInput(f"lesson 16's kernel is not built here: {problem}")
        model = build_max(KernelGPT2LMHeadModel, args.overrides, hf)
        engine = compile_kernel_model(model, KERNELS, num_threads=args.threads)
        extensions = [engine.package]
    else:
        model = build_max(BatchedGPT2LMHeadModel, args.overrides, hf)
        if path != "float32":
            from solutions.solution_17 import quantize_model

            model = quantize_model(model, path)
        engine = compile_batched_model(model, num_threads=args.threads)
    config = model.config
    cpu, head_dim = DeviceRef.CPU(), config.n_embd // config.n_head
    past = TensorType(DType.float32, [config.n_layer, "batch", config.n_head, "past", head_dim], device=cpu)
    seq = 1 if path == "kernel" else "seq"  # as the engine's decode graph has it
    graph, _ = build_graph(direct_module(model), TensorType(DType.int64, ["batch", seq], device=cpu), past, past,
                           TensorType(DType.int64, ["batch"], device=cpu), custom_extensions=extensions)
    direct = engine.session.load(graph, weights_registry=engine.weights)
    from tools.decode_in_place import in_place_graph

    graph = in_place_graph(model, engine.input_types(config, seq=1), extensions)
    in_place = engine.session.load(graph, weights_registry=engine.weights)  # the graph generate.py decodes with
    return engine, direct, in_place


def time_path(engine, direct, in_place, args, quantized: bool) -> list[dict]:
    import numpy as np
    from max import driver

    from solutions.solution_15 import BatchedKVCache

    config, rng = engine.config, np.random.default_rng(0)
    cache = BatchedKVCache(config, 1, capacity=max(args.lengths) + 1)
    cache.keys[:] = rng.standard_normal(cache.keys.shape, dtype=np.float32)
    cache.values[:] = rng.standard_normal(cache.values.shape, dtype=np.float32)
    cache.in_use[0] = True
    token, rows = np.array([[11]], dtype=np.int64), np.array([0], dtype=np.int64)
    rows_out = []
    for length in args.lengths:
        cache.lengths[0] = length
        keys = np.ascontiguousarray(cache.keys[:, :, :, :length])  # [n_layer, 1, n_head, L, head_dim]
        values = np.ascontiguousarray(cache.values[:, :, :, :length])
        lengths = np.array([length], dtype=np.int64)

        def run_step():
            return engine(token, cache, rows)[0]

        def run_direct():
            inputs = (token, keys, values, lengths)
            return np.from_dlpack(direct.execute(*(driver.Tensor.from_numpy(a) for a in inputs))[0])

        def run_in_place():
            inputs = (token, cache.keys, cache.values, rows, lengths)
            return np.from_dlpack(in_place.execute(*(driver.Tensor.from_numpy(a) for a in inputs))[0])

        runs = {"step": run_step, "direct": run_direct, "in_place": run_in_place}
        logits = {name: run() for name, run in runs.items()}
        gap = float(np.abs(logits["step"] - logits["direct"]).max())
        in_place_gap = float(np.abs(logits["step"] - logits["in_place"]).max())
        kl = float(next_token_kl(logits["step"], logits["in_place"]).max())
        if not gap <= AGREE:
            raise Disagreement(f"at {length} cached positions the step's and the direct graph's logits differ by {gap:.2e}")
        if not (kl <= QUANTIZED_KL if quantized else in_place_gap <= AGREE):
            raise Disagreement(f"at {length} cached positions the in-place graph's logits differ from the step's by "
                               f"{in_place_gap:.2e} (KL {kl:.2e} nats)")
        wait_until_idle(5.0)
        seconds = {name: [] for name in runs}
        for _ in range(args.repeats):  # interleaved, so that all see the same machine
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
        step, plain, in_place_ms = (1e3 * median(seconds[name]) for name in runs)
        rows_out.append({"cached": length, "step_ms": step, "direct_ms": plain, "window_ms": step - plain,
                         "in_place_ms": in_place_ms, "logit_gap": gap, "in_place_logit_gap": in_place_gap,
                         "in_place_kl": kl})
    return rows_out


def run(argv) -> tuple[argparse.Namespace, dict]:
    args = parse(argv)
    go_offline()
    use_threads(args.threads)
    hf = build_hf(args.overrides)
    result = {"command": " ".join(["python tests/bench_context.py", *argv]),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "threads": args.threads, "repeats": args.repeats, "batch": 1, "paths": {}}
    for path in args.paths:
        print(f"compiling the {path} engine, its direct graph and the in-place one", file=sys.stderr, flush=True)
        result["paths"][path] = time_path(*build_path(path, args, hf), args, quantized=path.startswith("q"))
    return args, result


def report(result: dict) -> str:
    lines = [f"decode step, batch 1, {result['threads']} threads, median of {result['repeats']} ({result['date']})",
             f"{'path':8} {'cached':>6} {'step ms':>8} {'direct':>8} {'window':>8} {'growth':>8} {'in place':>8}"]
    for path, rows in result["paths"].items():
        for row in rows:
            growth = row["direct_ms"] - rows[0]["direct_ms"]
            lines.append(f"{path:8} {row['cached']:6d} {row['step_ms']:8.2f} {row['direct_ms']:8.2f} "
                         f"{row['window_ms']:8.2f} {growth:+8.2f} {row['in_place_ms']:8.2f}")
    lines.append("window = step - direct (the cache's slice and gather); growth = direct's rise from the first "
                 "length;\nin place = the decode step that reads the cache where it lies (no copies)")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, result = run(argv)
    except (BadInput, Disagreement) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, BadInput) else 1
    print(report(result))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
