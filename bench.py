"""Time the course's GPT-2 on MAX against HuggingFace transformers (PyTorch).

    python bench.py                   # full GPT-2 124M, fp32, batch 1
    python bench.py --lengths 16 64   # other sequence lengths

Both models hold the same random weights (no download). It reports the
compile time, one forward pass over the whole sequence at each length, and
greedy generation per token, with the best and median of several runs.
Figures depend on the machine; run it on yours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def timed(fn, repeats: int) -> tuple[float, float]:
    """(best, median) seconds of fn() over repeats runs, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.new_tokens < 1 or any(n < 1 or n > 1024 - args.new_tokens for n in args.lengths):
        parser.error("--repeats and --new-tokens must be >= 1, lengths in [1, 1024 - new tokens]")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    import transformers
    from max.dtype import DType
    from max.experimental.tensor import Tensor
    from max.graph import DeviceRef, TensorType

    from solutions.solution_01 import GPT2Config
    from solutions.solution_11 import MaxGPT2LMHeadModel
    from solutions.solution_12 import compile_model, generate_tokens, load_hf_weights

    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    model = MaxGPT2LMHeadModel(GPT2Config())
    load_hf_weights(model, hf.state_dict())
    print(f"torch threads: {torch.get_num_threads()}, CPUs: {os.cpu_count()}")

    start = time.perf_counter()
    full = model.compile(TensorType(DType.int64, ("batch", "seqlen"), device=DeviceRef.CPU()))
    print(f"compile, full logits:        {time.perf_counter() - start:6.1f} s (a second run reuses MAX's cache)")
    start = time.perf_counter()
    last = compile_model(model)
    print(f"compile, last-position only: {time.perf_counter() - start:6.1f} s")

    rng = np.random.default_rng(0)
    print("\none forward pass, batch 1 (best / median of %d)" % args.repeats)
    print(f"{'tokens':>6} | {'MAX compiled':>20} | {'HF transformers':>20} | max |diff|")
    for length in args.lengths:
        ids = rng.integers(0, 50257, (1, length))
        ours = lambda: np.from_dlpack(full(Tensor.from_dlpack(ids)))  # noqa: E731

        def theirs():
            with torch.no_grad():
                return hf(torch.from_numpy(ids)).logits.numpy()

        max_best, max_median = timed(ours, args.repeats)
        hf_best, hf_median = timed(theirs, args.repeats)
        diff = float(np.abs(ours() - theirs()).max())
        print(
            f"{length:>6} | {max_best:8.3f} / {max_median:7.3f} s | {hf_best:8.3f} / {hf_median:7.3f} s | {diff:.1e}"
        )

    prompt = rng.integers(0, 50257, (1, 8))
    n = args.new_tokens
    start = time.perf_counter()
    tokens = generate_tokens(last, prompt, n, do_sample=False)
    max_seconds = time.perf_counter() - start
    hf.generation_config.eos_token_id = None
    start = time.perf_counter()
    with torch.no_grad():
        expected = hf.generate(torch.from_numpy(prompt), do_sample=False, max_new_tokens=n, pad_token_id=0)
    hf_seconds = time.perf_counter() - start
    same = np.array_equal(tokens, expected.numpy())
    print(f"\ngreedy generation, 8-token prompt + {n} tokens, batch 1")
    print(f"  MAX (no KV cache, whole sequence each step): {1000 * max_seconds / n:6.1f} ms/token")
    print(f"  HF generate (KV cache):                      {1000 * hf_seconds / n:6.1f} ms/token")
    print(f"  same tokens: {same}")
    print(f"\npeak memory of this process: {rss_mb():.0f} MB")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
