"""Step 16: the Mojo kernel, against numpy, then the whole model against HuggingFace.

The kernel (the learner's kernels_16/matvec.mojo) is built into a package
by tools/mojo_package.py; a Mojo compile error comes back as Mojo's own
lines (file, line, message). It then runs in a process of its own
(tests/kernel_probe.py), so that a crash or a loop that never ends is
reported instead of killing the checker: GPT-2's five weight shapes and
odd ones (K not a multiple of the SIMD width, N not a multiple of the rows
per block, M > 1), each against float64 numpy. Known mistakes are replayed
in numpy (a K tail dropped, W read in HuggingFace's [in, out] layout, sums
carried from one token to the next) or told by which outputs are wrong
(the last rows of W, whole blocks of rows, tokens after the first).

KernelLinear is compiled with the kernel and compared with x @ W.T + b;
the graph must call the kernel for one token per row and MAX's matmul for
a prefill. Then lesson 15's row-by-row check runs the model through
tools/kv_engine.py's kernel engine (prefill graph and decode graph) on the
small configs and 124M, and 124M's greedy tokens must equal HuggingFace
generate().
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.lessons import REPO
from tests.loading import OPEN_TODO, fail, shown
from tests.parity import assert_close, is_close, likely_cause
from tests.twins import FULL_CONFIG, SMALL_CONFIGS, cases, hf_generate

STEP = 16
THREADS = 2  # the kernel's rows are split over two workers even on a one-core machine
SEED = 16
GPT2_SHAPES = {  # (M, K, N): one token through each of GPT-2 124M's weights
    "attn.c_attn": (1, 768, 2304), "attn.c_proj": (1, 768, 768), "mlp.c_fc": (1, 768, 3072),
    "mlp.c_proj": (1, 3072, 768), "lm_head": (1, 768, 50257),
}
ODD_SHAPES = {  # K not a multiple of the SIMD width, N not a multiple of the rows per block, M > 1
    "odd K and N": (1, 37, 13), "3 tokens": (3, 70, 9), "K and N below one load": (4, 5, 3),
    "8 tokens": (8, 48, 80), "2 tokens, long": (2, 777, 131), "6 tokens": (6, 53, 7),
}
SHAPES = {**GPT2_SHAPES, **ODD_SHAPES}
PROBE_SECONDS = 600
SIMD_WIDTHS = (4, 8, 16)  # float32 lanes: NEON, AVX2, AVX-512
ROWS_TRIED = (2, 4, 8, 16)  # rows of W per block that a learner may choose
TOKENS_TRIED = (2, 4, 8)  # tokens per pass over a block


# --- building the kernel -------------------------------------------------------------


def kernel_folder(lesson) -> Path:
    folder = lesson.get("KERNELS")
    folder = Path(folder)
    if not (folder / "__init__.mojo").exists():
        fail(f"KERNELS in {lesson.shown} is {shown(folder)}, which is not a Mojo package (no __init__.mojo). "
             "Keep it as the skeleton has it: Path(__file__).parent / \"kernels_16\".")
    return folder


def kernel_package(lesson) -> Path:
    """The learner's Mojo package, built; open TODOs and compile errors fail with the learner's lines."""
    from tools.mojo_package import MojoBuildError, build_package, placeholders

    folder = kernel_folder(lesson)
    for path, lines in placeholders(folder).items():
        fail(f"{OPEN_TODO} in {shown(path)}: the placeholder `pass` at line{'s' * (len(lines) > 1)} "
             f"{', '.join(map(str, lines))}. Replace each with the code its # TODO asks for.")
    try:
        return build_package(folder)
    except MojoBuildError as err:
        fail(f"{err}\nFix the Mojo error above (file:line:column) and run the check again.")


def run_probe(lesson, package: Path, shapes: dict) -> list[np.ndarray]:
    """The kernel's output for each shape, from tests/kernel_probe.py in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.npz"
        command = [sys.executable, "-m", "tests.kernel_probe", str(package), str(out), str(THREADS), str(SEED),
                   *(",".join(map(str, s)) for s in shapes.values())]
        try:
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=PROBE_SECONDS)
        except subprocess.TimeoutExpired as err:
            running = re.findall(r"running (\d+)", err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or ""))
            at = list(shapes)[int(running[-1])] if running else "the first shape"
            fail(f"your kernel did not finish within {PROBE_SECONDS} s, on {at}.\n"
                 "Likely cause: a loop that never ends: does every while loop advance its counter (k += WIDTH)?")
        if done.returncode != 0:
            running = re.findall(r"running (\d+)", done.stdout)
            if "compiled" not in done.stdout:
                error = done.stderr.strip().splitlines()[-3:]
                fail("MAX could not compile a graph that calls your op gpt2_matvec:\n  " + "\n  ".join(error)
                     + "\nKeep the skeleton's @compiler.register(\"gpt2_matvec\") and execute's arguments "
                       "(output, x, weight, ctx).")
            name = list(shapes)[int(running[-1]) if running else 0]
            m, k, n = shapes[name]
            how = (f"was killed by signal {signal.Signals(-done.returncode).name}" if done.returncode < 0
                   else f"stopped with exit code {done.returncode}")
            fail(f"your kernel {how} on {name} (M={m}, K={k}, N={n}).\n"
                 "Likely cause: it reads or writes past the end of a buffer: x's row m starts at m * K, "
                 "W's row n at n * K, the output's row m at m * N; check every loop's bound (K, N, M).")
        saved = np.load(out)
        return [saved[f"out{i}"] for i in range(len(shapes))]


# --- the kernel against numpy -----------------------------------------------------------


def kernel_mistakes(actual: np.ndarray, x: np.ndarray, w: np.ndarray) -> dict:
    """Known mistakes: replayed in numpy, or told by which outputs are right."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = x64 @ w64.T
    m, k = x.shape
    n = w.shape[0]
    right = np.isclose(actual, want, rtol=1e-4, atol=1e-3 * max(1.0, np.abs(want).max()))
    right_columns, right_rows = right.all(axis=0), right.all(axis=1)

    def when(condition: bool):
        if not condition:
            raise ValueError("not this mistake")
        return actual

    def first_match(replays):
        """The first of replays (functions of no arguments) whose output is actual's."""
        for replay in replays:
            try:
                out = replay()
            except (ValueError, IndexError):  # this variant cannot happen for these shapes
                continue
            if np.allclose(actual, out, rtol=1e-4, atol=1e-3):
                return out
        raise ValueError("no variant gives it")

    def k_tail(width: int):
        kept = k // width * width
        if kept == k:
            raise ValueError("no tail")
        return x64[:, :kept] @ w64[:, :kept].T

    def per_block(rows: int, of_block):
        """The blocks of `rows` rows computed as of_block(first row, rows) says; the N % rows rows left over right."""
        blocks = n // rows
        if blocks == 0 or rows == 1:
            raise ValueError("no blocks")
        out = want.copy()
        for b in range(blocks):
            out[:, b * rows : (b + 1) * rows] = of_block(b, rows)
        return out

    def some_rows(of_block):
        return first_match(lambda rows=rows: per_block(rows, of_block) for rows in ROWS_TRIED)

    def block_index_as_row(b, rows):  # W's rows b, b+1, ... instead of b * rows, b * rows + 1, ...
        return x64 @ w64[b : b + rows].T

    def sums_carried_within_block(b, rows):  # one running total for all the rows of a block
        return np.cumsum(want[:, b * rows : (b + 1) * rows], axis=1)

    def first_of_pass(tokens: int, width: int):  # every token of a full pass loads the pass's first x
        kept, full = k // width * width, m // tokens * tokens
        if full == 0 or tokens == 1:
            raise ValueError("no full pass")
        xs = x64.copy()
        for t in range(full):
            xs[t, :kept] = x64[t // tokens * tokens, :kept]
        return xs @ w64.T

    def token_tail(tokens: int) -> bool:  # rows from the last full pass on wrong, the rest right
        start = m // tokens * tokens
        return 0 < start < m and right_rows[:start].all() and not right_rows[start:].any()

    wrong_columns = np.flatnonzero(~right_columns)
    # some column of a whole block is right (not only the N % ROWS rows after the blocks)
    block_right = any(right_columns[: n - n % rows].any() for rows in ROWS_TRIED)
    tail_only = wrong_columns.size > 0 and wrong_columns.min() >= n - 15 and np.array_equal(
        wrong_columns, np.arange(wrong_columns.min(), n))
    mistakes = {
        f"the last K % WIDTH inputs (K = {k}) are dropped: after the SIMD loop, add x[j] * w[r * K + j] for "
        "j from where it stopped to K.": lambda: first_match(lambda width=width: k_tail(width) for width in SIMD_WIDTHS),
        "W is read as [K, N] (HuggingFace's Conv1D layout), but MAX's Linear keeps it as [N, K]: row n of W "
        "starts at n * K.": lambda: x64 @ w.reshape(k, n).astype(np.float64),
        "the rows of a block are read from W's row b (the block's index), not n = b * ROWS: the block's "
        "first row starts at n * K.": lambda: some_rows(block_index_as_row),
        "one running total is shared by the rows of a block: row r's total must start from row r's own "
        "accumulator (var total = acc[t * rows + r].reduce_add() inside the loop over r).":
            lambda: some_rows(sums_carried_within_block),
        "the sums carry over from one token to the next: every token and row has its own accumulator, "
        "acc[t * rows + r], starting at 0 in each call of dot_rows.": lambda: np.cumsum(want, axis=0),
        f"the last rows of W (N = {n} is not a multiple of ROWS) are never computed: after the blocks, compute "
        "the N % ROWS rows left over, one at a time.": lambda: when(tail_only),
        "some blocks of rows of W are never computed while the others are right: the workers' ranges must "
        "cover every block (round the blocks per worker up: (blocks + workers - 1) // workers).":
            lambda: when(wrong_columns.size > 0 and not tail_only and block_right
                         and not right[:, wrong_columns].any()),
        "only the first token is computed: loop over all M rows of x (x's row m starts at m * K, the "
        "output's at m * N).": lambda: when(m > 1 and right_rows[0] and not right_rows[1:].any()),
        f"the last M % TOKENS tokens (M = {m}) are never computed: after the passes of TOKENS tokens, run "
        "dot_rows[1, ROWS] for each token left over.": lambda: when(any(token_tail(t) for t in TOKENS_TRIED)),
        "every token of a pass reads the x of the pass's first token: token t's inputs start t * K floats "
        "after x (x.load[width=WIDTH](t * K + k)).": lambda: first_match(
            lambda t=t, width=width: first_of_pass(t, width) for t in TOKENS_TRIED for width in SIMD_WIDTHS),
    }
    return mistakes


def test_kernel_matches_numpy(lesson):
    package = kernel_package(lesson)
    from tests.kernel_probe import probe_inputs

    outputs = run_probe(lesson, package, SHAPES)
    results = list(zip(SHAPES.items(), probe_inputs(SHAPES.values(), SEED), outputs))

    def named(result) -> bool:  # a wrong output whose mistake the judge recognizes
        _, (x, w), got = result
        want = x.astype(np.float64) @ w.astype(np.float64).T
        return not is_close(got, want) and bool(likely_cause(got, kernel_mistakes(got, x, w)))

    # A mistake may show on several shapes and be recognizable on only some (a token tail dropped
    # leaves only uninitialized memory where M < TOKENS): the first shape that names it is reported first,
    # looking at the shapes of most tokens first (they tell more mistakes apart).
    most_tokens_first = sorted(results, key=lambda r: -r[0][1][0])
    for (name, (m, k, n)), (x, w), got in [r for r in most_tokens_first if named(r)][:1] + results:
        want = x.astype(np.float64) @ w.astype(np.float64).T
        assert_close(f"gpt2_matvec on {name}: x [{m}, {k}] @ W [{n}, {k}].T", got, want, ("token", "output"),
                     kernel_mistakes(got, x, w), reference="numpy (float64)", margins=lesson.margins)


# --- KernelLinear ---------------------------------------------------------------------------


def compile_with_kernel(module, package: Path, *input_types):
    """module traced into one graph that may call the Mojo package's ops, and loaded."""
    from max import driver
    from max.engine import InferenceSession
    from tools.kv_engine import build_graph

    graph, weights = build_graph(module, *input_types, custom_extensions=[package])
    model = InferenceSession(devices=[driver.CPU()], num_threads=THREADS).load(graph, weights_registry=weights)
    return graph, model


def check_use_kernel(lesson, kernel_linear) -> None:
    """use_kernel on a Linear two levels down: it becomes a KernelLinear with its weights, and the model comes back."""
    from max.nn.module_v3 import Linear, Sequential

    inner = Linear(4, 3, bias=True)
    model = Sequential(Sequential(inner))
    weight = np.from_dlpack(inner.weight).copy()
    doing = "use_kernel(Sequential(Sequential(Linear(4, 3))))"
    returned = lesson.call(doing, lesson.get("use_kernel"), model)
    if returned is not model:
        fail(f"{doing} returned {type(returned).__name__}, not the model it was given: return model.")
    if type(inner) is not kernel_linear:
        fail(f"after {doing}, the Linear inside is a {type(inner).__name__}, not a KernelLinear.\nLikely cause: "
             "use_kernel does not reach every Linear: walk model.descendants (every module inside, at any "
             "depth), not only the model's own children, and set each Linear's __class__ to KernelLinear.")
    if not np.array_equal(np.from_dlpack(inner.weight), weight):
        fail(f"after {doing}, the Linear's weight changed: swap its class (layer.__class__ = KernelLinear) "
             "and keep its weights.")


def test_kernel_linear(lesson):
    """KernelLinear(37, 13) on [batch, 1, 37] and [batch, 37] (the kernel) and [batch, seq, 37]
    (a prefill: MAX's matmul), all in one graph, against x @ W.T + b."""
    from max import driver
    from max.dtype import DType
    from max.graph import DeviceRef, TensorType
    from max.nn.module_v3 import Module
    from tests.twins import load_weights

    package = kernel_package(lesson)
    kernel_linear = lesson.get("KernelLinear")
    check_use_kernel(lesson, kernel_linear)
    with lesson.learner_code("KernelLinear(37, 13, bias=True)"):
        layer = kernel_linear(37, 13, bias=True)
    rng = np.random.default_rng(SEED)
    weight = rng.standard_normal((13, 37), dtype=np.float32)
    bias = rng.standard_normal(13, dtype=np.float32)
    load_weights(layer, {"weight": weight, "bias": bias}, "KernelLinear(37, 13)")

    one_token = lesson.get("one_token_per_row")

    class ThreeWays(Module):
        def __init__(self, layer):
            self.layer = layer

        def __call__(self, decode, rows, prefill):
            said = [lesson.call(f"one_token_per_row(x {shape})", one_token, x) for shape, x in
                    (("[batch, 1, 37]", decode), ("[batch, 37]", rows), ("[batch, seq, 37]", prefill))]
            if [bool(s) for s in said] != [True, True, False]:
                fail(f"one_token_per_row says {said} for x [batch, 1, 37], [batch, 37] and [batch, seq, 37]; "
                     "it must say True, True, False: one token per row is rank 2, or rank 3 with the static 1.")
            return self.layer(decode), self.layer(rows), self.layer(prefill)

    cpu = DeviceRef.CPU()
    types = [TensorType(DType.float32, ["batch", 1, 37], device=cpu), TensorType(DType.float32, ["batch", 37], device=cpu),
             TensorType(DType.float32, ["prefill_batch", "seq", 37], device=cpu)]
    with lesson.learner_code("compiling KernelLinear on [batch, 1, 37], [batch, 37] and [batch, seq, 37]"):
        graph, model = compile_with_kernel(ThreeWays(layer), package, *types)
    calls = str(graph).count("gpt2_matvec")
    if calls != 2:
        fail(f"the graph of KernelLinear on [batch, 1, 37], [batch, 37] and [batch, seq, 37] calls the Mojo op "
             f"{calls} times, not 2: the kernel is for one token per row (the first two); a prefill "
             "([batch, seq, 37]) keeps MAX's matmul.\nLikely cause: "
             + ("KernelLinear never calls matvec: when one_token_per_row(x), use the kernel."
                if calls == 0 else "one_token_per_row says True for [batch, seq, K]: seq must be the static 1."))
    inputs = [rng.standard_normal(shape, dtype=np.float32) for shape in ((3, 1, 37), (3, 37), (2, 5, 37))]
    with lesson.learner_code("running KernelLinear"):
        outputs = [np.from_dlpack(t).copy() for t in model.execute(*(driver.Tensor.from_numpy(a) for a in inputs))]
    for name, x, got in zip(("[3, 1, 37]", "[3, 37]", "[2, 5, 37]"), inputs, outputs):
        want = x.astype(np.float64) @ weight.T.astype(np.float64) + bias
        mistakes = {"the bias is not added: y = matvec(rows, self.weight) + self.bias.":
                    lambda: x.astype(np.float64) @ weight.T.astype(np.float64)}
        assert_close(f"KernelLinear(37, 13) on x {name}", got, want, ("row", "token", "output")[-got.ndim:],
                     mistakes, reference="numpy x @ W.T + b", margins=lesson.margins)


# --- the model ------------------------------------------------------------------------------


def compile_kernel(lesson):
    from tools.kv_engine import compile_kernel_model

    package_folder = kernel_folder(lesson)
    kernel_package(lesson)  # open TODOs and compile errors first, with the learner's lines
    return lambda model: compile_kernel_model(model, package_folder)


def test_every_row_matches_huggingface(lesson):
    """The small config: every row at every step against HuggingFace; every Linear of a decode step calls the kernel."""
    from tests.test_step_15 import check_rows

    compile_model = compile_kernel(lesson)
    for case in cases(SMALL_CONFIGS)[:1]:
        _, compiled = check_rows(lesson, case, seed=SEED, model_class="KernelGPT2LMHeadModel",
                                 compile_model=compile_model)
        linears = 4 * case.max.n_layer + 1  # c_attn, attn.c_proj, c_fc, mlp.c_proj per block; lm_head
        if compiled.kernel_calls != linears:
            fail(f"KernelGPT2LMHeadModel [{case.label}]: a decode step calls the Mojo op {compiled.kernel_calls} "
                 f"times, but the model has {linears} Linears (4 per block and the LM head): the others still run "
                 "MAX's matmul.\nLikely cause: use_kernel does not reach every Linear: walk model.descendants "
                 "(every module inside, at any depth), not only the model's own children.")


def test_gpt2_124m_with_the_kernel(lesson):
    """124M: every row at every step against HuggingFace, then greedy tokens as HuggingFace generate()."""
    from solutions.solution_15 import generate_batched
    from tests.test_step_15 import check_rows, expect_each_alone

    hf, compiled = check_rows(lesson, cases(FULL_CONFIG)[0], seed=SEED + 1, model_class="KernelGPT2LMHeadModel",
                              compile_model=compile_kernel(lesson))
    rng = np.random.default_rng(SEED)
    prompts = [rng.integers(0, hf.config.vocab_size, n) for n in (6, 11)]
    doing = "generate_batched(model, 2 prompts, 24, do_sample=False) with GPT-2 124M and the kernel"
    tokens = lesson.call(doing, generate_batched, compiled, prompts, 24, 1.0, False, max_batch_size=2)
    expected = [hf_generate(hf, p[None], 24, do_sample=False)[0] for p in prompts]
    expect_each_alone(doing, tokens, prompts, expected, "HuggingFace generate() on that prompt alone")
