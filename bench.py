"""Time the course's GPT-2 on MAX against HuggingFace transformers (PyTorch), with and without the KV cache.

examples:
  python bench.py                  # GPT-2 124M, float32, batch 1, 2 threads: a readable table
  python bench.py --json           # the same, and one JSON object as the last stdout line
  python bench.py --quick --json   # a small config and 2 repeats: seconds, for tests

What it measures, with the same random O(1)-scale weights in every model
(tests/twins.py randomize_; nothing is downloaded) and the same number of
threads for torch and MAX:
  - compile time of each MAX graph (MAX caches compiled graphs on disk, so a
    second run mostly loads them);
  - one forward pass over 16, 64 and 256 tokens: MAX (solution_12.compile_model,
    which returns the last position's logits) against HuggingFace
    GPT2LMHeadModel asked for the last position's logits only
    (logits_to_keep=1), so both do the same work;
  - greedy generation of 64 and 256 new tokens after a 16-token prompt, never
    stopping at end-of-text: MAX without a cache (solution_13.generate_tokens,
    the whole sequence at every step), MAX with the KV cache
    (solution_14.generate_tokens_cached), MAX with lesson 16's Mojo kernel in
    its decode steps and attention reading the cache in place (lesson 15's
    loop, tools/kv_engine.py's kernel engine, tools/decode_in_place.py;
    left out with --no-kernel, or when they do not build here, which the
    report says) and HuggingFace generate() with its cache: tokens/s over
    the whole call and decode ms per token (the median step). All must
    choose the same tokens, or no speed is reported. The top-level figures
    (decode_ms_per_token, generate_speedup_vs_hf) are those of the default
    path, the one generate.py runs: the kernel's when it is built;
  - the memory-bandwidth floor of a decode step: the bytes it must read (every
    weight once; the LM head is wte, counted once) over the best read
    bandwidth measured here (a large torch.sum at 1, 2, --threads and all
    cores; the most of them, its thread count stated), and decode_vs_floor,
    the default path's decode step over that floor;
  - with --quantize, lesson 17's formats (solution_17.quantize_model over
    lesson 15's engine, attention in place when the kernel is in the run):
    the bytes a decode step reads, decode ms/token, and
    how far each stays from float32 (KL of the next-token distributions and
    greedy agreement, teacher-forced along HuggingFace's greedy tokens);
  - llama.cpp, an optional peer (tools/llama_peer.py: llama-cpp-python and
    its converter; the course's set-up does not build it): the same weights
    in GGUF, F32 always, and with --quantize F16, Q8_0 and the same formats,
    decoded in the same rounds; the report says when it is absent and why;
  - peak memory (VmHWM) of a separate process generating 512 tokens with the
    cache, against its peak after the first 32 (the limit is 10 % more);
  - many sequences at once (lesson 15, solution_15.stream_batched): the time
    of one decode step at batch 1, 2, 4, 8 and 16 (--batch-sizes) and the
    decode tokens/s it buys, beside lesson 14's one-sequence path. Every row
    must write the tokens it writes in any other batch, and row 0 those of
    lesson 14 alone, or no speed is reported.

Contenders run interleaved, each round after the CPUs have been idle for a
second (at most --idle-wait seconds of waiting); figures are medians of
--repeats runs. Progress goes to stderr.

Exit codes: 0 done; 1 the contenders disagree (different tokens or logits:
no speed is reported); 2 bad input (one line starting with "error: " on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.cli import BadInput, OneLineParser  # noqa: E402
from tools.offline import go_offline  # noqa: E402

FULL = {}  # GPT-2 124M: the config's defaults
QUICK = dict(n_embd=64, n_head=4, n_layer=2, vocab_size=1000, n_positions=128)
SEED = 0
EARLY_TOKENS = 32  # the memory check compares the peak after this many tokens with the one at the end
MEMORY_LIMIT = 1.10
DEFAULTS = dict(  # option: (full run, --quick)
    repeats=(5, 2),
    lengths=([16, 64, 256], [16, 64]),
    new_tokens=([64, 256], [8, 32]),
    memory_tokens=(512, 96),
    idle_wait=(30.0, 0.0),
    bandwidth_mib=(1024, 256),
    batch_sizes=([1, 2, 4, 8, 16], [1, 2, 4]),
    batch_new_tokens=(32, 8),
)


class Disagreement(Exception):
    """The contenders computed different things; the message is one line."""


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="bench.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    full, quick = ({k: v[i] for k, v in DEFAULTS.items()} for i in (0, 1))

    def default(name):
        return f"(default: {full[name]}; with --quick: {quick[name]})"

    p.add_argument("--quick", action="store_true",
                   help="a small config (64 wide, 2 layers, vocabulary 1000) and the --quick defaults below")
    p.add_argument("--threads", type=int, default=2, help="threads for torch and for MAX's session (default: 2)")
    p.add_argument("--repeats", type=int, help=f"timed runs of each contender {default('repeats')}")
    p.add_argument("--lengths", type=int, nargs="+", metavar="N",
                   help=f"tokens of the forward passes {default('lengths')}")
    p.add_argument("--prompt-tokens", type=int, default=16, metavar="N",
                   help="prompt length for generation (default: 16)")
    p.add_argument("--new-tokens", type=int, nargs="+", metavar="N",
                   help=f"new tokens to generate, each >= 2; the speed-up is taken at the largest "
                   f"{default('new_tokens')}")
    p.add_argument("--memory-tokens", type=int, metavar="N",
                   help=f"tokens the memory check generates, > {EARLY_TOKENS} {default('memory_tokens')}")
    p.add_argument("--idle-wait", type=float, metavar="SECONDS",
                   help=f"before each round, wait at most this long for idle CPUs {default('idle_wait')}")
    p.add_argument("--bandwidth-mib", type=int, metavar="MIB",
                   help=f"size of the array summed to measure bandwidth {default('bandwidth_mib')}")
    p.add_argument("--batch-sizes", type=int, nargs="+", metavar="B",
                   help=f"batch sizes of the batched decode (lesson 15) {default('batch_sizes')}")
    p.add_argument("--batch-new-tokens", type=int, metavar="N",
                   help=f"new tokens per row in the batched decode, >= 3 {default('batch_new_tokens')}")
    p.add_argument("--no-kernel", action="store_true",
                   help="leave out lesson 16's Mojo kernel (by default it runs beside lesson 14's path when it "
                   "builds here, and is the default path the top-level figures report)")
    p.add_argument("--quantize", nargs="+", default=[], metavar="FORMAT",
                   help="lesson 17: also time and measure these weight formats (q4_0 q4_k q6_k; --quick: q4_0), "
                   "and llama.cpp in them when it is installed")
    p.add_argument("--figure", type=Path, default=None, metavar="PNG",
                   help="with --quantize: draw decode ms/token against bits per weight, both engines, to PNG")
    p.add_argument("--json", action="store_true",
                   help="also print every figure as one JSON object, the last stdout line")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)  # the memory check's own process
    return p


def parse(argv) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for name, values in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, values[args.quick])
    args.overrides = QUICK if args.quick else FULL
    n_positions = args.overrides.get("n_positions", 1024)
    checks = [
        (args.threads >= 1, f"--threads must be >= 1, got {args.threads}"),
        (args.repeats >= 1, f"--repeats must be >= 1, got {args.repeats}"),
        (all(1 <= n <= n_positions for n in args.lengths),
         f"--lengths must be in [1, {n_positions}], got {args.lengths}"),
        (args.prompt_tokens >= 1, f"--prompt-tokens must be >= 1, got {args.prompt_tokens}"),
        (all(n >= 2 for n in args.new_tokens),
         f"--new-tokens must be >= 2 (a prefill and a decode step), got {args.new_tokens}"),
        (args.memory_tokens > EARLY_TOKENS, f"--memory-tokens must be > {EARLY_TOKENS}, got {args.memory_tokens}"),
        (args.prompt_tokens + max(args.new_tokens + [args.memory_tokens]) <= n_positions,
         f"--prompt-tokens {args.prompt_tokens} + the most new tokens "
         f"{max(args.new_tokens + [args.memory_tokens])} exceed n_positions={n_positions}"),
        (0 <= args.idle_wait < math.inf, f"--idle-wait must be a number >= 0, got {args.idle_wait}"),
        (args.bandwidth_mib >= 1, f"--bandwidth-mib must be >= 1, got {args.bandwidth_mib}"),
        (all(b >= 1 for b in args.batch_sizes), f"--batch-sizes must be >= 1, got {args.batch_sizes}"),
        (args.batch_new_tokens >= 3, f"--batch-new-tokens must be >= 3, got {args.batch_new_tokens}"),
        (args.prompt_tokens + args.batch_new_tokens <= n_positions,
         f"--prompt-tokens {args.prompt_tokens} + --batch-new-tokens {args.batch_new_tokens} exceed n_positions={n_positions}"),
    ]
    for ok, message in checks:
        if not ok:
            raise BadInput(message)
    if args.quantize:
        from tools.generation import quantize_problem

        for fmt in args.quantize:
            problem = quantize_problem(fmt, n_embd=args.overrides.get("n_embd", 768), name=lambda n: "--" + n)
            if problem:
                raise BadInput(problem + (" (--quick is 64 wide)" if args.quick and "n_embd" in problem else ""))
        if len(set(args.quantize)) != len(args.quantize):
            raise BadInput(f"--quantize names a format twice: {' '.join(args.quantize)}")
    if args.figure is not None and not args.quantize:
        raise BadInput("--figure draws the quantized formats: add --quantize")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the machine: memory, other processes, bandwidth -----------------------------


def vm_mb(field: str) -> float:
    """A /proc/self/status field (VmHWM: peak resident memory, VmRSS) in MB; nan off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_peak() -> None:
    """Set VmHWM back to the current resident memory (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class OtherProcesses:
    """with OtherProcesses() as w: ... ; w.seconds is the CPU time other
    processes (other containers too) used meanwhile, from /proc/stat, and
    w.share that time as a part of all CPUs' time."""

    def _busy(self) -> float:
        try:
            with open("/proc/stat") as stat:
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
        except (OSError, ValueError):
            return float("nan")
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        self.start, self.busy, self.own = time.perf_counter(), self._busy(), sum(os.times()[:4])
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.start
        self.seconds = max(0.0, (self._busy() - self.busy) - (sum(os.times()[:4]) - self.own))
        self.share = cpu_share(self.seconds, wall)
        return False


def cpu_share(cpu_seconds: float, wall_seconds: float) -> float:
    return cpu_seconds / ((os.cpu_count() or 1) * wall_seconds) if wall_seconds > 0 else 0.0


def wait_until_idle(most_seconds: float, window: float = 1.0, threshold: float = 0.05) -> None:
    deadline = time.perf_counter() + most_seconds
    while time.perf_counter() + window <= deadline:
        with OtherProcesses() as w:
            time.sleep(window)
        if not w.share >= threshold:  # nan (no /proc/stat) counts as idle
            return


def bandwidth_gb_s(thread_counts: list[int], mib: int, repeats: int = 9) -> dict[str, float]:
    """Read bandwidth by thread count: bytes / median seconds of torch.sum
    over a float32 array of mib MiB."""
    import torch

    before = torch.get_num_threads()
    array = torch.ones(mib << 18)  # mib MiB of float32
    result = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        array.sum()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            array.sum()
            seconds.append(time.perf_counter() - start)
        result[str(threads)] = array.numel() * 4 / statistics.median(seconds) / 1e9
    torch.set_num_threads(before)
    return result


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        pass
    import platform

    return {"cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "system": f"{platform.system()} {platform.machine()}", "python": platform.python_version()}


# --- the models ----------------------------------------------------------------------


def use_threads(threads: int):
    """torch and MAX on the same number of threads. Module.compile (solution_12)
    loads into max.experimental's one global session, made on first use with
    MAX's default thread count: make it here first, with ours. Returns it: the
    engines load into it too, so that the contenders, which take turns, share
    one pool of threads (two sessions taking turns slowed each other down)."""
    import torch
    from max import driver
    from max.engine import InferenceSession
    from max.experimental import tensor

    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    session = InferenceSession(devices=[driver.CPU()], num_threads=threads)
    tensor._SESSION.set(session)
    return session


def build_hf(overrides: dict):
    """HuggingFace GPT2LMHeadModel with seeded O(1)-scale weights; generate() never stops early."""
    from tests.twins import hf_config, seeded_hf_lm

    return seeded_hf_lm(hf_config(overrides), SEED)


def build_max(cls, overrides: dict, hf):
    from solutions.solution_12 import load_hf_weights
    from tests.twins import max_config

    model = cls(max_config(overrides))
    load_hf_weights(model, hf.state_dict())
    return model


def decode_bytes(model) -> int:
    """Bytes of weights one decode step reads: every parameter once (in its
    own dtype: lesson 17's packed uint8 blocks too), but of the embeddings
    only one row of wte and one of wpe. The LM head is wte (tied): it is
    counted once, as the LM head."""
    embeddings = ("transformer.wte.weight", "transformer.wpe.weight")
    total = 0
    for name, p in model.parameters:
        if name not in embeddings:
            total += p.dtype.size_in_bytes * math.prod(int(d) for d in p.shape)
    return total + 2 * 4 * model.config.n_embd


def decode_weights(model) -> int:
    """How many numbers those bytes hold: the float32 model's parameter count, as decode_bytes counts them."""
    return decode_bytes(model) // 4


class Stamped:
    """A model whose every call records when it returned (and, at the calls
    named in peaks_at, the peak memory so far). Call k yields new token k."""

    def __init__(self, model, peaks_at: tuple[int, ...] = ()):
        self.model, self.config, self.peaks_at = model, model.config, peaks_at
        self.stamps: list[float] = []
        self.peaks: dict[int, float] = {}

    def __call__(self, *args):
        out = self.model(*args)
        self.stamps.append(time.perf_counter())
        if len(self.stamps) in self.peaks_at:
            self.peaks[len(self.stamps)] = vm_mb("VmHWM")
        return out


class KeepsLogits:
    """A model whose every call keeps the logits of the last position (numpy)."""

    def __init__(self, model):
        self.model, self.config, self.logits = model, model.config, []

    def __call__(self, *args):
        import numpy as np

        out = self.model(*args)
        logits = np.from_dlpack(out[0] if isinstance(out, tuple) else out)
        self.logits.append(np.array(logits[:, -1] if logits.ndim == 3 else logits))
        return out


def cache_logit_gap(compiled, cached, prompt, n: int) -> float:
    """Greedy, n new tokens, untimed: the largest |difference| between the logits the
    KV cache path and the no-cache path give at the same step (they write the same tokens)."""
    import numpy as np

    from solutions.solution_13 import generate_tokens
    from solutions.solution_14 import generate_tokens_cached

    with_cache, without = KeepsLogits(cached), KeepsLogits(compiled)
    same = np.array_equal(generate_tokens_cached(with_cache, prompt, n, do_sample=False),
                          generate_tokens(without, prompt, n, do_sample=False))
    if not same:
        raise Disagreement(f"with and without the cache, greedy generation of {n} tokens chose different tokens")
    return max(float(np.max(np.abs(a - b))) for a, b in zip(with_cache.logits, without.logits))


def hf_generate(hf, prompt, new_tokens: int):
    """HuggingFace generate(), greedy with its cache; (token ids, when each new token was ready)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    stamps: list[float] = []

    class Stamp(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            stamps.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    ids = torch.from_numpy(prompt)
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False,
                      use_cache=True, stopping_criteria=StoppingCriteriaList([Stamp()]))
    return out.numpy(), stamps


# --- measuring -----------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    output: Any
    stamps: list[float]  # when each new token was ready (generation only)
    start: float
    others: float  # CPU seconds other processes used during the run


def interleaved(contenders: dict[str, Callable[[], tuple[Any, list[float]]]], repeats: int, idle_wait: float,
                check: Callable[[dict[str, Any]], None], warm_up: bool = True) -> dict[str, list[Run]]:
    """Rounds of every contender once, the order rotating from round to round,
    each round after idle CPUs; check(outputs by name) after every round, so
    that a disagreement stops the benchmark at once. The warm-up round is not timed."""
    names = list(contenders)
    if warm_up:
        check({name: contenders[name]()[0] for name in names})
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_ in range(repeats):
        wait_until_idle(idle_wait)
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            with OtherProcesses() as w:
                start = time.perf_counter()
                output, stamps = contenders[name]()
                seconds = time.perf_counter() - start
            runs[name].append(Run(seconds, output, stamps, start, w.seconds))
        check({name: runs[name][-1].output for name in names})
    return runs


def others_share(runs: dict[str, list[Run]]) -> list[tuple[float, float]]:
    """(CPU seconds of other processes, wall seconds) of every run."""
    return [(run.others, run.seconds) for rs in runs.values() for run in rs]


def median(values) -> float:
    return float(statistics.median(values))


def summary(runs: list[Run], new_tokens: int) -> dict:
    import numpy as np

    return {
        "tokens_per_s": new_tokens / median(r.seconds for r in runs),
        "decode_ms_per_token": 1e3 * median(float(np.median(np.diff(r.stamps))) for r in runs),
        "prefill_ms": 1e3 * median(r.stamps[0] - r.start for r in runs),
        "seconds": median(r.seconds for r in runs),
    }


def bench_forward(args, compiled, hf) -> tuple[dict, list[tuple[float, float]]]:
    import numpy as np
    import torch
    from max.experimental.tensor import Tensor

    from tests.parity import max_error

    rng = np.random.default_rng(SEED)
    results, shares = {}, []
    for length in args.lengths:
        ids = rng.integers(0, hf.config.vocab_size, (1, length), dtype=np.int64)
        errors = []

        def check(outputs):
            error, allowed = max_error(outputs["max"], outputs["hf"])
            if not error <= allowed:
                raise Disagreement(f"the last position's logits over {length} tokens differ by {error:.3g} "
                                   f"(allowed {allowed:.3g}): MAX and HuggingFace do not compute the same thing")
            errors.append(error)

        log(f"forward pass over {length} tokens")
        runs = interleaved({
            "max": lambda: (np.from_dlpack(compiled(Tensor.from_dlpack(ids)))[:, -1], []),
            "hf": lambda: (hf(torch.from_numpy(ids), logits_to_keep=1).logits[:, -1].numpy(), []),
        }, args.repeats, args.idle_wait, check)
        max_ms, hf_ms = (1e3 * median(r.seconds for r in runs[name]) for name in ("max", "hf"))
        results[str(length)] = {"max_ms": max_ms, "hf_ms": hf_ms, "speedup_vs_hf": hf_ms / max_ms,
                                "max_abs_diff": max(errors)}
        shares += others_share(runs)
    return results, shares


EXACT = ("max_kernel", "max_kv_cache", "max_no_cache", "hf_cache")  # float32: must choose HF's tokens


def bench_generate(args, compiled, cached, hf, kernel=None, quantized=None, peers=None
                   ) -> tuple[dict, list[tuple[float, float]], float]:
    """Greedy generation, every contender in the same rounds. quantized: {format: lesson 17's
    compiled model}, peers: {format: llama.cpp's Greedy}; their numbers differ from float32's,
    so their tokens are reported, not checked (bench_quality measures how far they are)."""
    import numpy as np

    from solutions.solution_13 import generate_tokens
    from solutions.solution_14 import generate_tokens_cached
    from solutions.solution_15 import generate_batched

    prompt = generate_prompt(args, hf)

    def no_cache(n):
        model = Stamped(compiled)
        return generate_tokens(model, prompt, n, do_sample=False), model.stamps

    def with_cache(n):
        model = Stamped(cached)
        return generate_tokens_cached(model, prompt, n, do_sample=False), model.stamps

    def one_row(engine):  # lesson 15's loop, one sequence (lesson 16's kernel, lesson 17's formats)
        def run(n):
            model = Stamped(engine)
            ids = generate_batched(model, [prompt[0]], n, do_sample=False, max_batch_size=1)[0]  # prompt + new tokens
            return np.asarray(ids)[None], model.stamps
        return run

    def peer(greedy):
        def run(n):
            ids, stamps = greedy(prompt[0].tolist(), n)
            return np.asarray(ids)[None], stamps
        return run

    contenders = {"max_kv_cache": with_cache, "max_no_cache": no_cache,
                  "hf_cache": lambda n: hf_generate(hf, prompt, n)}
    if kernel is not None:
        contenders = {"max_kernel": one_row(kernel), **contenders}
    contenders |= {f"max_{fmt}": one_row(engine) for fmt, engine in (quantized or {}).items()}
    contenders |= {f"llama_{fmt}": peer(greedy) for fmt, greedy in (peers or {}).items()}
    for generate in contenders.values():
        generate(2)  # warm-up
    results, shares = {}, []
    for n in args.new_tokens:

        def check(outputs):
            expected = outputs["hf_cache"][0, args.prompt_tokens:].tolist()
            for name in EXACT:
                if name not in outputs:
                    continue
                tokens = outputs[name][0, args.prompt_tokens:].tolist()
                if tokens != expected:
                    first = next(i for i, (a, b) in enumerate(zip(tokens, expected)) if a != b)
                    raise Disagreement(f"{name} and hf_cache chose different tokens generating {n}: new token "
                                       f"{first} is {tokens[first]} against {expected[first]}; no speed is reported")

        log(f"generating {n} tokens after a {args.prompt_tokens}-token prompt")
        runs = interleaved({name: (lambda generate=generate: generate(n)) for name, generate in contenders.items()},
                           args.repeats, args.idle_wait, check, warm_up=False)
        results[str(n)] = {name: summary(rs, n) for name, rs in runs.items()}
        results[str(n)]["tokens"] = {name: rs[0].output[0, args.prompt_tokens:].tolist() for name, rs in runs.items()}
        shares += others_share(runs)
    longest = max(args.new_tokens)
    log(f"the logits of both MAX paths at each of {longest} steps (untimed)")
    return results, shares, cache_logit_gap(compiled, cached, prompt, longest)


def bench_quality(args, hf, path: list[int], quantized: dict, peers: dict) -> dict:
    """Each format's next-token distributions against HuggingFace float32 on the same weights,
    teacher-forced along path (prompt + HF's greedy tokens): mean KL and greedy agreement."""
    import numpy as np
    import torch

    from solutions.solution_15 import BatchedKVCache
    from tools.quality import greedy_agreement, logits_along, next_token_kl

    ids = np.asarray(path, dtype=np.int64)[None]
    with torch.no_grad():
        reference = hf(torch.from_numpy(ids)).logits[0, args.prompt_tokens - 1 : -1].numpy()  # [steps, vocab]
    found = {}
    for engine, models in (("max", quantized), ("llama", peers)):
        for fmt, model in models.items():
            if engine == "max":
                cache = BatchedKVCache(model.config, 1, ids.shape[1])
                logits = logits_along(model, cache, ids, args.prompt_tokens)
            else:
                logits = model.logits_along(list(path), args.prompt_tokens)
            found[f"{engine}_{fmt}"] = {"kl_vs_fp32": float(next_token_kl(reference, logits).mean()),
                                        "greedy_agreement": greedy_agreement(reference, logits)}
    return found


def bench_batches(args, batched, cached) -> tuple[dict, list[tuple[float, float]]]:
    """One decode step at each batch size (lesson 15), beside lesson 14's batch-1 path, interleaved."""
    import numpy as np

    from solutions.solution_14 import generate_tokens_cached
    from solutions.solution_15 import stream_batched

    n, largest = args.batch_new_tokens, max(args.batch_sizes)
    prompts = np.random.default_rng(SEED + 2).integers(0, cached.config.vocab_size, (largest, args.prompt_tokens))

    def rows(batch):
        model = Stamped(batched)
        tokens = [[] for _ in range(batch)]
        for index, token in stream_batched(model, prompts[:batch], n, do_sample=False, max_batch_size=batch):
            tokens[index].append(token)
        return tokens, model.stamps[batch - 1 :]  # after the prefills, one stamp per decode step

    def lesson_14():
        model = Stamped(cached)
        return [generate_tokens_cached(model, prompts[:1], n, do_sample=False)[0, args.prompt_tokens :].tolist()], model.stamps

    alone = lesson_14()[0][0]  # row 0's tokens must be these at every batch size
    contenders = {f"batch_{b}": (lambda b=b: rows(b)) for b in args.batch_sizes}

    def check(outputs):
        every = outputs[f"batch_{largest}"]
        for b in args.batch_sizes:
            got = outputs[f"batch_{b}"]
            if got[0] != alone or got != every[:b]:
                raise Disagreement(f"at batch {b} the rows wrote other tokens than alone (row 0 against lesson 14, "
                                   f"every row against batch {largest}); no speed is reported")

    def step_ms(run) -> float:
        return 1e3 * float(np.median(np.diff(run.stamps)))

    log(f"batched decode: {n} new tokens per row at batch {', '.join(map(str, args.batch_sizes))}")
    runs = interleaved(contenders, args.repeats, args.idle_wait, check)
    ms = {name: median(step_ms(r) for r in rs) for name, rs in runs.items()}
    one = ms[f"batch_{args.batch_sizes[0]}"]
    by_batch = {str(b): {"decode_ms_per_step": ms[f"batch_{b}"], "decode_tokens_per_s": b * 1e3 / ms[f"batch_{b}"],
                         "step_vs_first": ms[f"batch_{b}"] / one} for b in args.batch_sizes}
    # One sequence, lesson 15's engine against lesson 14's, in pairs back to back (the
    # order swapped from pair to pair): the ratio of each pair, then their median.
    log(f"batch 1 through lesson 15's engine against lesson 14's, {2 * args.repeats} pairs")

    def same(outputs):
        if outputs["lesson_14"][0] != alone or outputs["batch_1"][0] != alone:
            raise Disagreement("lesson 14 and lesson 15's engine wrote other tokens for one sequence; no speed is reported")

    pairs = interleaved({"lesson_14": lesson_14, "batch_1": lambda: rows(1)}, 2 * args.repeats, args.idle_wait, same)
    ratios = [step_ms(b) / step_ms(a) for a, b in zip(pairs["lesson_14"], pairs["batch_1"])]
    result = {"new_tokens_per_row": n, "prompt_tokens": args.prompt_tokens, "by_batch": by_batch,
              "lesson_14_decode_ms_per_token": median(step_ms(r) for r in pairs["lesson_14"]),
              "batch_1_decode_ms_per_token": median(step_ms(r) for r in pairs["batch_1"]),
              "batch_1_vs_lesson_14": median(ratios), "pair_ratios": ratios}
    return result, others_share(runs) + others_share(pairs)


def memory_child(args) -> dict:
    """In this process only the cached model: compile (a cache hit after the
    parent's), warm up, reset the peak, generate --memory-tokens tokens."""
    import gc

    import numpy as np

    from solutions.solution_14 import CachedGPT2LMHeadModel, generate_tokens_cached
    from tools.kv_engine import compile_cached_model

    use_threads(args.threads)
    hf = build_hf(args.overrides)
    model = build_max(CachedGPT2LMHeadModel, args.overrides, hf)
    del hf
    gc.collect()
    compiled = compile_cached_model(model, num_threads=args.threads)
    prompt = np.random.default_rng(SEED + 1).integers(0, model.config.vocab_size, (1, args.prompt_tokens))
    generate_tokens_cached(compiled, prompt, 4, do_sample=False)
    load_peak = vm_mb("VmHWM")
    reset_peak()
    stamped = Stamped(compiled, peaks_at=(EARLY_TOKENS, args.memory_tokens))
    generate_tokens_cached(stamped, prompt, args.memory_tokens, do_sample=False)
    early, late = stamped.peaks[EARLY_TOKENS], stamped.peaks[args.memory_tokens]
    return {"tokens": args.memory_tokens, "early_tokens": EARLY_TOKENS, "peak_mb_early": early, "peak_mb_late": late,
            "growth_mb": late - early, "ratio": late / early, "limit": MEMORY_LIMIT,
            "within_limit": late / early <= MEMORY_LIMIT, "load_peak_mb": load_peak}


def run_memory_child(args) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", "--threads", str(args.threads),
               "--prompt-tokens", str(args.prompt_tokens), "--memory-tokens", str(args.memory_tokens)]
    command += ["--quick"] if args.quick else []
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"the memory check failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.splitlines()[-1])


# --- putting it together -------------------------------------------------------------


def bench(args) -> dict:
    import importlib.metadata as metadata

    from solutions.solution_11 import MaxGPT2LMHeadModel
    from solutions.solution_12 import compile_model
    from solutions.solution_14 import CachedGPT2LMHeadModel
    from solutions.solution_15 import BatchedGPT2LMHeadModel
    from tools.kv_engine import compile_batched_model, compile_cached_model

    session = use_threads(args.threads)  # every MAX contender's, shared
    log("building the models (random weights)")
    hf = build_hf(args.overrides)
    model = build_max(MaxGPT2LMHeadModel, args.overrides, hf)
    cached_model = build_max(CachedGPT2LMHeadModel, args.overrides, hf)
    log("compiling the three MAX graphs (a minute or more each the first time; later runs reuse MAX's cache)")
    stamps = [time.perf_counter()]
    compiled = compile_model(model)
    stamps.append(time.perf_counter())
    cached = compile_cached_model(cached_model, session=session)
    stamps.append(time.perf_counter())
    batched = compile_batched_model(build_max(BatchedGPT2LMHeadModel, args.overrides, hf), session=session)
    stamps.append(time.perf_counter())
    compile_seconds = dict(zip(("max_no_cache", "max_kv_cache", "max_batched"), (b - a for a, b in zip(stamps, stamps[1:]))))
    kernel, kernel_state = None, "left out (--no-kernel)"
    if not args.no_kernel:
        from solutions.solution_16 import KERNELS, KernelGPT2LMHeadModel
        from tools.generation import kernel_problem
        from tools.kv_engine import compile_kernel_model

        problem = kernel_problem()
        kernel_state = f"not built: {problem}" if problem else True
        if problem is None:
            log("compiling the Mojo kernel's model (lesson 16: a prefill graph and a decode graph, "
                "whose attention reads the cache in place)")
            start = time.perf_counter()
            kernel = compile_kernel_model(build_max(KernelGPT2LMHeadModel, args.overrides, hf), KERNELS,
                                          session=session, in_place=True)
            compile_seconds["max_kernel"] = time.perf_counter() - start
        else:
            log(f"lesson 16's kernel {kernel_state}")
    quantized, weight_bytes = {}, {}
    if args.quantize:
        from solutions.solution_17 import quantize_model

        for fmt in args.quantize:
            in_place = kernel is not None  # the Mojo ops build here: the in-place attention too
            log(f"compiling GPT-2 in {fmt} (lesson 17: ops.qmatmul on lesson 15's cache"
                + (", attention in place)" if in_place else ")"))
            start = time.perf_counter()
            q_model = quantize_model(build_max(BatchedGPT2LMHeadModel, args.overrides, hf), fmt)
            weight_bytes[f"max_{fmt}"] = decode_bytes(q_model)
            quantized[fmt] = compile_batched_model(q_model, session=session, in_place=in_place)
            compile_seconds[f"max_{fmt}"] = time.perf_counter() - start
    peers, llama_state = llama_peers(args, hf, weight_bytes)
    forward, forward_shares = bench_forward(args, compiled, hf)
    generate, generate_shares, logit_gap = bench_generate(args, compiled, cached, hf, kernel, quantized, peers)
    batches, batch_shares = bench_batches(args, batched, cached)

    log("bandwidth")
    wait_until_idle(args.idle_wait)
    bandwidth = bandwidth_gb_s(sorted({1, 2, args.threads, os.cpu_count() or 1}), args.bandwidth_mib)
    best_threads = max(bandwidth, key=bandwidth.get)  # the floor is taken at the best bandwidth measured
    nbytes = decode_bytes(cached_model)
    floor_ms = {t: 1e3 * nbytes / (gb * 1e9) for t, gb in bandwidth.items()}
    log(f"memory: a separate process generates {args.memory_tokens} tokens")
    memory = run_memory_child(args)
    memory["bench_peak_mb"] = vm_mb("VmHWM")

    longest = str(max(args.new_tokens))
    row = generate[longest]
    default_path = "max_kernel" if "max_kernel" in row else "max_kv_cache"  # what generate.py runs by default
    kv = row[default_path]
    formats = {}
    if quantized or peers:
        log(f"each format against HuggingFace float32 along its greedy path, {longest} steps (untimed)")
        path = [*generate_prompt(args, hf)[0].tolist(), *row["tokens"]["hf_cache"]]
        quality = bench_quality(args, hf, path, quantized, peers)
        n_weights = decode_weights(cached_model)
        for name, q in quality.items():
            engine, fmt = name.split("_", 1)
            formats.setdefault(engine, {})[fmt] = {
                "weight_bytes": weight_bytes[name], "bits_per_weight": 8 * weight_bytes[name] / n_weights,
                "decode_ms_per_token": row[name]["decode_ms_per_token"], "tokens_per_s": row[name]["tokens_per_s"],
                **q, "decode_speedup_vs_float32": kv["decode_ms_per_token"] / row[name]["decode_ms_per_token"]}
        for fmt, f in formats.get("max", {}).items():
            peer = formats.get("llama", {}).get(fmt)
            f["llama_cpp"] = peer
            f["decode_speedup_vs_llama_cpp"] = peer["decode_ms_per_token"] / f["decode_ms_per_token"] if peer else None
    kernel_ms = row["max_kernel"]["decode_ms_per_token"] if "max_kernel" in row else None
    no_kernel_ms = row["max_kv_cache"]["decode_ms_per_token"]
    others = forward_shares + generate_shares + batch_shares
    config = model.config
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "command": shlex.join(["python", "bench.py", *args.argv]),
        "versions": {p: metadata.version(p) for p in ("max", "torch", "transformers")},
        "model": {"name": "small (--quick)" if args.quick else "gpt2 124M", "n_layer": config.n_layer,
                  "n_embd": config.n_embd, "n_head": config.n_head, "vocab_size": config.vocab_size,
                  "dtype": "float32", "batch": 1, "weights": "random O(1)-scale (tests/twins.py randomize_)"},
        "threads": args.threads,
        "repeats": args.repeats,
        "compile_seconds": compile_seconds,
        "forward": forward,
        "forward_speedup_vs_hf": {n: f["speedup_vs_hf"] for n, f in forward.items()},
        "prompt_tokens": args.prompt_tokens,
        "generate": generate,
        "generate_new_tokens": int(longest),
        "generate_speedup_vs_hf": kv["tokens_per_s"] / generate[longest]["hf_cache"]["tokens_per_s"],
        "decode_ms_per_token": kv["decode_ms_per_token"],
        "default_path": default_path,
        "kernel": kernel_state,
        "decode_ms_per_token_kernel": kernel_ms,
        "decode_ms_per_token_no_kernel": no_kernel_ms,
        "kernel_speedup": no_kernel_ms / kernel_ms if kernel_ms else None,
        **formats.get("max", {}),  # one object per --quantize format, under its name
        "quantized_formats": list(formats.get("max", {})),
        "llama_cpp": llama_state,
        "llama_cpp_formats": formats.get("llama", {}),
        "tokens_identical": True,
        "cache_logit_max_abs_diff": logit_gap,
        "decode_bytes": nbytes,
        "kv_cache_bytes_per_token": 2 * 4 * config.n_layer * config.n_embd,
        "bandwidth_method": f"torch.sum over a {args.bandwidth_mib} MiB float32 array (read only), median of 9",
        "bandwidth_gb_s": bandwidth,
        "bandwidth_best_gb_s": bandwidth[best_threads],
        "bandwidth_best_threads": int(best_threads),
        "bandwidth_floor_ms": floor_ms[best_threads],
        "bandwidth_floor_ms_by_threads": floor_ms,
        "decode_vs_floor": kv["decode_ms_per_token"] / floor_ms[best_threads],
        "memory": memory,
        "batched": batches,
        "others_cpu_share": cpu_share(sum(o for o, _ in others), sum(s for _, s in others)),
    }


def generate_prompt(args, hf):
    """The prompt of the generation contenders, [1, prompt_tokens] int64."""
    import numpy as np

    return np.random.default_rng(SEED + 1).integers(0, hf.config.vocab_size, (1, args.prompt_tokens), dtype=np.int64)


def llama_peers(args, hf, weight_bytes: dict) -> tuple[dict, str]:
    """llama.cpp, an optional peer (tools/llama_peer.py): the same weights converted to GGUF,
    in F32 and, with --quantize, F16, Q8_0 and the formats asked for. ({format: Greedy}, state)."""
    import atexit
    import shutil
    import tempfile

    from tools import llama_peer

    why = llama_peer.available()
    if why:
        return {}, f"absent: {why}"
    import llama_cpp

    from tests.twins import save_byte_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="bench-llama-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # GGUF files of 124M: about 1.2 GB
    log(f"llama.cpp {llama_cpp.__version__}: converting the same weights to GGUF in {folder}")
    hf.save_pretrained(folder / "hf")
    save_byte_tokenizer(folder / "hf", hf.config.vocab_size)
    try:
        f32 = llama_peer.convert(folder / "hf", folder)
        peers, left_out = {}, []
        for fmt in ["f32", *(["f16", "q8_0", *args.quantize] if args.quantize else [])]:
            gguf = f32 if fmt == "f32" else llama_peer.quantize(f32, fmt, folder / f"{fmt}.gguf")
            crash = llama_peer.crash_here(gguf, args.threads)
            if crash:
                log(f"note: {crash}: llama.cpp's {fmt} is left out")
                left_out.append(f"{fmt} ({crash})")
                continue
            weight_bytes[f"llama_{fmt}"] = llama_peer.weight_bytes(gguf)
            peers[fmt] = llama_peer.Greedy(gguf, args.prompt_tokens + max(args.new_tokens), args.threads)
    except llama_peer.LlamaPeerError as err:
        return {}, f"failed: {err}"
    return peers, (f"llama-cpp-python {llama_cpp.__version__}: the same weights converted by llama.cpp's "
                   "convert_hf_to_gguf.py and quantized by llama.cpp (every matrix in the format)"
                   + (f"; left out: {', '.join(left_out)}" if left_out else ""))


def table(r: dict) -> str:
    m, g, mem = r["model"], r["generate"], r["memory"]
    names = {"max_kernel": "MAX, Mojo kernel", "max_kv_cache": "MAX, KV cache", "max_no_cache": "MAX, no cache",
             "hf_cache": "HF generate()", "max_batched": "MAX, batched"}
    names |= {f"max_{fmt}": f"MAX, {fmt}" for fmt in r["quantized_formats"]}
    names |= {f"llama_{fmt}": f"llama.cpp, {fmt}" for fmt in r["llama_cpp_formats"]}
    lines = [
        f"{m['name']}, {m['dtype']}, batch 1, {r['threads']} threads (torch and MAX), "
        f"median of {r['repeats']} interleaved runs",
        f"{r['machine']['cpu']}, {r['machine']['cores']} cores; {r['date']}; {r['command']}",
        f"other processes used {r['others_cpu_share']:.0%} of the CPUs' time while it timed",
        "",
        "compile: " + ", ".join(f"{names[n]} {s:.1f} s" for n, s in r["compile_seconds"].items()),
        "",
        "forward pass over the whole sequence (both compute the last position's logits only: HF with logits_to_keep=1)",
        f"{'tokens':>6} | {'MAX ms':>8} | {'HF ms':>8} | {'MAX speed-up':>12} | max |diff|",
    ]
    for n, f in r["forward"].items():
        lines.append(f"{n:>6} | {f['max_ms']:8.1f} | {f['hf_ms']:8.1f} | {f['speedup_vs_hf']:11.2f}x | "
                     f"{f['max_abs_diff']:.1e}")
    lines += ["", f"greedy generation after a {r['prompt_tokens']}-token prompt (the same tokens from all of them)",
              f"{'new':>4} | {'':16} | {'tokens/s':>8} | {'decode ms/token':>15} | {'prefill ms':>10}"]
    for n, row in g.items():
        for i, name in enumerate(n for n in names if n in row):
            s = row[name]
            lines.append(f"{n if i == 0 else '':>4} | {names[name]:16} | {s['tokens_per_s']:8.1f} | "
                         f"{s['decode_ms_per_token']:15.1f} | {s['prefill_ms']:10.1f}")
    floors = ", ".join(f"{t} thread{'s' * (t != '1')} {gb:.1f} GB/s" for t, gb in r["bandwidth_gb_s"].items())
    kernel = (f"lesson 16's Mojo kernel: decode {r['decode_ms_per_token_kernel']:.1f} ms/token against "
              f"{r['decode_ms_per_token_no_kernel']:.1f} without it, {r['kernel_speedup']:.2f}x"
              if r["kernel"] is True else f"lesson 16's Mojo kernel: {r['kernel']}")
    lines += [
        f"MAX ({names[r['default_path']]}): {r['generate_speedup_vs_hf']:.2f}x HuggingFace's tokens/s at "
        f"{r['generate_new_tokens']} new tokens",
        kernel,
        f"llama.cpp: {r['llama_cpp']}",
        *quantized_table(r),
        f"largest logit difference, KV cache against no cache, over the {r['generate_new_tokens']} steps: "
        f"{r['cache_logit_max_abs_diff']:.1e}",
        "",
        f"decode step floor: {r['decode_bytes'] / 1e6:.1f} MB of weights, each read once (the LM head is wte)",
        f"  bandwidth, {r['bandwidth_method']}: {floors}",
        f"  floor at the best bandwidth ({r['bandwidth_best_threads']} threads) {r['bandwidth_floor_ms']:.1f} ms; "
        f"MAX's decode step ({names[r['default_path']]}) {r['decode_ms_per_token']:.1f} ms is "
        f"{r['decode_vs_floor']:.2f}x the floor",
        "",
        f"peak memory of a process generating {mem['tokens']} tokens with the cache: {mem['peak_mb_late']:.0f} MB, "
        f"after {mem['early_tokens']}: {mem['peak_mb_early']:.0f} MB, ratio {mem['ratio']:.3f} "
        f"(limit {mem['limit']:.2f}: {'within' if mem['within_limit'] else 'OVER'})",
        f"peak memory of this benchmark process (compiles included): {mem['bench_peak_mb']:.0f} MB",
        "",
        f"many sequences at once (lesson 15): {r['batched']['new_tokens_per_row']} new tokens per row after a "
        f"{r['batched']['prompt_tokens']}-token prompt",
        f"{'batch':>5} | {'decode ms/step':>14} | {'decode tokens/s':>15} | {'step vs first':>13}",
    ]
    for b, row in r["batched"]["by_batch"].items():
        lines.append(f"{b:>5} | {row['decode_ms_per_step']:14.1f} | {row['decode_tokens_per_s']:15.1f} | "
                     f"{row['step_vs_first']:12.2f}x")
    b = r["batched"]
    lines.append(f"one sequence, {len(b['pair_ratios'])} pairs back to back: lesson 15's engine "
                 f"{b['batch_1_decode_ms_per_token']:.1f} ms/step, lesson 14's {b['lesson_14_decode_ms_per_token']:.1f} ms; "
                 f"median ratio {b['batch_1_vs_lesson_14']:.3f}x")
    return "\n".join(lines)


def quantized_table(r: dict) -> list[str]:
    """Lesson 17's formats and llama.cpp's, from the longest generation (the same rounds)."""
    rows = [("MAX", fmt, r[fmt]) for fmt in r["quantized_formats"]]
    rows += [("llama.cpp", fmt, f) for fmt, f in r["llama_cpp_formats"].items()]
    if not rows:
        return []
    lines = ["", f"weight formats: greedy decode of {r['generate_new_tokens']} tokens (the rounds above); KL and "
             "agreement against HF float32 along its greedy path",
             f"{'engine':>9} | {'format':>6} | {'bits/weight':>11} | {'MB read':>7} | {'ms/token':>8} | "
             f"{'vs float32':>10} | {'KL nats':>8} | {'agree':>5}"]
    for engine, fmt, f in rows:
        lines.append(f"{engine:>9} | {fmt:>6} | {f['bits_per_weight']:11.2f} | {f['weight_bytes'] / 1e6:7.1f} | "
                     f"{f['decode_ms_per_token']:8.1f} | {f['decode_speedup_vs_float32']:9.2f}x | "
                     f"{f['kl_vs_fp32']:8.4f} | {f['greedy_agreement']:5.0%}")
    lines.append("vs float32: the course's default float32 path's decode ms/token over the row's")
    for fmt in r["quantized_formats"]:
        if r[fmt]["decode_speedup_vs_llama_cpp"] is not None:
            lines.append(f"{fmt}: MAX decodes {r[fmt]['decode_speedup_vs_llama_cpp']:.2f}x llama.cpp's speed")
    return lines


def draw_figure(r: dict, path: Path) -> None:
    """Decode ms/token against bits per weight, one line per engine (the float32 paths included)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = r["generate"][str(r["generate_new_tokens"])]
    engines = {"MAX (the course)": [(32.0, g[r["default_path"]]["decode_ms_per_token"], "f32")]
               + [(r[f]["bits_per_weight"], r[f]["decode_ms_per_token"], f) for f in r["quantized_formats"]],
               "llama.cpp": [(f["bits_per_weight"], f["decode_ms_per_token"], fmt)
                             for fmt, f in r["llama_cpp_formats"].items()]}
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for (label, points), marker in zip(engines.items(), "os"):
        if points:
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=label)
            below = 4 if marker == "o" else -11  # MAX's labels above its points, llama.cpp's below
            for i, (x, y, fmt) in enumerate(points):
                left = any(p[0] == x for p in points[:i])  # a second format of the same size: label on the left
                ax.annotate(fmt, (x, y), textcoords="offset points", xytext=(-30 if left else 4, below), fontsize=8)
    ax.axhline(g["hf_cache"]["decode_ms_per_token"], color="grey", ls=":", label="HF generate(), float32")
    ax.set_xlabel("bits per weight read by a decode step")
    ax.set_ylabel("decode ms per token (median)")
    ax.set_xlim(0, 34)
    ax.set_ylim(0, None)
    ax.set_title(f"{r['model']['name']}, batch 1, {r['threads']} threads, "
                 f"{r['generate_new_tokens']} new tokens", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse(argv)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.argv = argv
    go_offline()
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return 0
    try:
        result = bench(args)
    except Disagreement as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(table(result))
    if args.figure is not None:
        draw_figure(result, args.figure)
        log(f"figure: {args.figure}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
