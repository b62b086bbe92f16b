"""
Step 16: Your first Mojo kernel

A decode step runs one new token per sequence through the model. Each
Linear multiplies that token's vector by its weight matrix: a
matrix-vector product. Count what it costs at 124M, float32:

    bytes read   every weight once: 494.6 MB (the tied LM head counted once)
    FLOPs        2 per weight (a multiply and an add): about 0.25 GFLOP

Half a FLOP per byte. One core of this course's machine does tens of
FLOPs in the time memory delivers one byte, so the arithmetic units wait
for the weights: a decode step is bound by memory, not by arithmetic. Its
floor is the time to read the weights once, bytes / read bandwidth
(`python bench.py` measures the bandwidth and reports the floor). The only
ways down are to read the bytes faster (this lesson) or to read fewer of
them (quantized weights).

MAX's matmul is built for matrices times matrices, where each weight is
used many times; with one token per row there is nothing to reuse, and
all that counts is how close the weights come in to the read bandwidth.
So you write the product yourself, in Mojo, the language MAX's own
kernels are written in, and the graph calls it in place of the matmul.
Measured on a 2-core Intel Xeon (124M, 2 threads, one run of
`python bench.py`, 2026-12-06, docs/speed.md), a decode step took 27.2 ms
through lesson 14's graph and 19.2 ms with the kernel (the commands'
path, whose attention also reads the cache in place), 1.18 times the
floor of 16.3 ms (494.6 MB at 30.4 GB/s, the best read bandwidth the
benchmark measured), and llama.cpp's float32 step 20.4 ms on the same
weights. Run it on yours.

The op (kernels_16/matvec.mojo, the Mojo TODOs):

    output[m, n] = sum over k of x[m, k] * W[n, k]

    x       [M, K]   M tokens: one per sequence in a decode step
    W       [N, K]   one row of K numbers per output, as Linear stores it
    output  [M, N]

GPT-2 124M's five weights, as (K, N): c_attn 768 x 2304, attn.c_proj
768 x 768, c_fc 768 x 3072, mlp.c_proj 3072 x 768, lm_head 768 x 50257.

How it streams memory:
  - SIMD: x.load[width=WIDTH](k) reads WIDTH floats at once (16 with
    AVX-512, 8 with AVX2, 4 on Arm), and a.fma(b, c) = a * b + c lane by
    lane in one instruction. Each row keeps a SIMD accumulator; at the end
    reduce_add() sums its lanes.
  - Blocks of ROWS rows: one load of x serves ROWS rows of W, and ROWS
    independent accumulators keep the multiply-add units busy while the
    loads are in flight. A block is read once for all M tokens (the loop
    over tokens sits inside the loop over blocks), so a batch of sequences
    costs one read of the weights, as lesson 15 promised.
  - Passes of TOKENS tokens: dot_rows[tokens, rows] keeps one accumulator
    per (token, row), tokens * rows of them in registers, and uses each
    vector of W it loads for all its tokens. At batch 8 with TOKENS = 4 a
    block comes in from the cache twice instead of eight times, and each
    load feeds 4 multiply-adds instead of 1: loads, not arithmetic, were
    what a batch cost. (At M = 1 a pass is one token: the same work as
    before.) The tokens left over, M % TOKENS, go one at a time.
  - Threads: the blocks are split into equal ranges, one per worker
    (parallelize[work](workers); parallelism_level() is the session's
    thread count). Each output element has exactly one writer, so no two
    threads ever write the same place: no race, no locks.
  - Tails: K need not be a multiple of WIDTH (the last K % WIDTH inputs go
    one at a time), N need not be a multiple of ROWS (the last rows go one
    at a time), M need not be a multiple of TOKENS. The check tries shapes
    where all three are odd.

What makes it an op MAX can call: @compiler.register("gpt2_matvec") on a
struct whose execute[target](output, x, weight, ctx) receives the tensors
(OutputTensor first, then InputTensors, then the DeviceContextPtr). The
folder kernels_16/ is a Mojo package (it has an __init__.mojo);
tools/mojo_package.py builds it once per content, and the graph names
the package in custom_extensions. In the graph, F.custom(name, device,
inputs, output types) calls the op (F.custom is the functional API's
ops.custom): you say what comes out (its dtype, shape and device), since
MAX cannot look inside Mojo to know.

Where the kernel pays (the Python TODOs): only where a Linear sees one
token per sequence. tools/kv_engine.py's CompiledKernelModel (given)
compiles lesson 15's model twice over one copy of the weights: a decode
graph traced with seq = 1, where x is [batch, 1, K], and a prefill graph
for any seq. KernelLinear asks, while the graph is built, whether x holds
one token per row: [batch, K], or [batch, 1, K] with the 1 known (static).
Then it runs the kernel on x as [batch, K]; otherwise (a prefill, many
tokens per row, matrix-matrix work) it keeps MAX's matmul. The LM head
sees one token per row in both graphs: lesson 15 takes the last position
before it.

use_kernel swaps every Linear of a model for a KernelLinear in place
(the object's class changes, its weights stay), so lesson 15's model and
its weight names are untouched and step 12's loader fills it.

Tasks:
  1. Mojo, kernels_16/matvec.mojo: the SIMD loop, the K tail, the blocks
     of a worker in passes of TOKENS tokens, the N tail (each TODO's
     `pass` is a placeholder)
  2. Import what your Python code uses (the first Python TODO)
  3. matvec: call the op from the graph
  4. one_token_per_row: is the token axis the static 1?
  5. KernelLinear: the kernel for one token per row, bias added
  6. use_kernel: every Linear becomes a KernelLinear

The check builds your kernel first: a Mojo compile error comes back as
Mojo's own message, with your file, line and column. It then runs the
kernel on GPT-2's five shapes and odd ones against numpy, in a process of
its own (a crash or an endless loop is reported, not fatal), then
KernelLinear, then the whole model row by row against HuggingFace (as
lesson 15), and 124M's greedy tokens against HuggingFace generate().

Stuck on a Python TODO? `pixi run hint s16` (or `python hint.py s16`)
shows a hint for your first open TODO; the Mojo TODOs have their hints
beside them.

Run: pixi run s16

Measure it: `python bench.py` times a decode step with the kernel and
without it (lesson 15's graph) in one run, against the floor, and
generate.py, serve.py and bench.py use the kernel by default (--no-kernel
turns it off). There its decode steps also read the cache in place, with a
second Mojo op (tools/decode_in_place.py); `python tests/bench_context.py`
shows what that saves as the context grows.
"""

from pathlib import Path

from max.experimental.tensor import Tensor
from max.nn.module_v3 import Linear, Module

from solutions.solution_01 import GPT2Config
from solutions.solution_15 import BatchedGPT2LMHeadModel

KERNELS = Path(__file__).parent / "kernels_16"  # your Mojo package with the op "gpt2_matvec"

# TODO: Import what your code below uses (the lines above are given)
# Hint: from max.dtype import DType
# Hint: from max.experimental import functional as F
# Hint: from max.graph import TensorType


def matvec(x: Tensor, weight: Tensor) -> Tensor:
    """x [M, K] @ weight [N, K].T -> [M, N], computed by the Mojo op gpt2_matvec."""
    # TODO: Describe the op's output and call it
    # Hint: The output is float32, [x's M, weight's N], on x's device: a TensorType.
    # Hint: F.custom(the op's registered name, the device, [the inputs in execute's order], [the output type])
    # Hint: returns a list with one tensor per output type.
    return None


def one_token_per_row(x: Tensor) -> bool:
    """True when x [..., K] is known, while the graph is built, to hold one token per sequence:
    [batch, K], or [batch, 1, K] (a decode step)."""
    # TODO: Rank 2, or rank 3 with the token axis the static 1
    # Hint: x.rank is the number of axes; x.shape[1] compares equal to 1 only when it is the static 1
    # Hint: (a symbolic "seq" does not).
    return None


class KernelLinear(Linear):
    """Linear that runs the Mojo kernel on one token per sequence, MAX's matmul otherwise (a prefill)."""

    def __call__(self, x: Tensor) -> Tensor:
        if not one_token_per_row(x):
            return super().__call__(x)
        # TODO: x as [batch, in_dim] rows, the kernel, the bias, and x's shape back with out_dim last
        # Hint: reshape to [x.shape[0], x.shape[-1]]; matvec with this layer's weight ([out_dim, in_dim]).
        # Hint: A Linear made with bias=False has self.bias None. The result takes x's shape, but its last axis
        # Hint: is the weight's out_dim (self.weight.shape[0]).
        return None


def use_kernel(model: Module) -> Module:
    """Every Linear in model becomes a KernelLinear, keeping its weights."""
    # TODO: Swap the class of every Linear inside the model, at any depth; return the model
    # Hint: model.descendants yields (name, module) for every module inside it, at any depth.
    # Hint: Check the exact type (a KernelLinear is a Linear too); setting an object's __class__ swaps its
    # Hint: methods and keeps its attributes, the weights included.
    return None


class KernelGPT2LMHeadModel(BatchedGPT2LMHeadModel):
    """Lesson 15's batched GPT-2 whose Linears run the Mojo kernel in decode steps."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        use_kernel(self)
