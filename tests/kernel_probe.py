"""Run lesson 16's Mojo op on the check's inputs, in a process of its own.

A kernel that reads past the end of a buffer can kill the process it runs
in, and one whose loop never advances never returns. Run here, in a child
process, either one becomes a message for the learner instead of a dead
or hung checker (tests/test_step_16.py starts it and reads its output).

    python -m tests.kernel_probe PACKAGE.mojopkg OUT.npz THREADS SEED M,K,N [M,K,N ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def probe_inputs(shapes, seed: int):
    """x [M, K] and weight [N, K] for each (M, K, N), the same in every process."""
    rng = np.random.default_rng(seed)
    for m, k, n in shapes:
        yield rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((n, k), dtype=np.float32)


def compile_op(package: str, threads: int):
    """One graph, x [M, K] and weight [N, K] symbolic -> gpt2_matvec's output [M, N]."""
    from max import driver
    from max.dtype import DType
    from max.engine import InferenceSession
    from max.graph import DeviceRef, Graph, TensorType, ops

    cpu = DeviceRef.CPU()
    types = [TensorType(DType.float32, ["M", "K"], device=cpu), TensorType(DType.float32, ["N", "K"], device=cpu)]
    with Graph("gpt2_matvec_probe", input_types=types, custom_extensions=[Path(package)]) as graph:
        x, weight = (value.tensor for value in graph.inputs)
        out = TensorType(DType.float32, [x.shape[0], weight.shape[0]], device=cpu)
        graph.output(ops.custom("gpt2_matvec", cpu, [x, weight], [out])[0])
    model = InferenceSession(devices=[driver.CPU()], num_threads=threads).load(graph)
    return lambda x, w: np.from_dlpack(model.execute(driver.Tensor.from_numpy(x), driver.Tensor.from_numpy(w))[0]).copy()


def main(argv: list[str]) -> None:
    package, out_path, threads, seed, *shapes = argv
    shapes = [tuple(int(d) for d in shape.split(",")) for shape in shapes]
    run = compile_op(package, int(threads))
    print("compiled", flush=True)  # the parent tells a compile that fails from a kernel that crashes
    outputs = {}
    for i, (x, w) in enumerate(probe_inputs(shapes, int(seed))):
        print(f"running {i}", flush=True)
        outputs[f"out{i}"] = run(x, w)
    np.savez(out_path, **outputs)


if __name__ == "__main__":
    main(sys.argv[1:])
