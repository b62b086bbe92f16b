# Lesson 16: the decode step's matrix-vector product, written in Mojo.
#
# output[m, n] = sum over k of x[m, k] * weight[n, k]
#
#   x       [M, K]  M tokens (1 per sequence in a decode step), K inputs
#   weight  [N, K]  one row of K numbers per output: Linear's own layout
#   output  [M, N]
#
# A decode step reads every weight once and does 2 FLOPs with each one, so
# what matters is how fast the weights stream in from memory. The kernel
# walks the rows of W in blocks of ROWS, reads each block once for all M
# tokens (TOKENS of them per pass, so that one load of W feeds TOKENS
# multiply-adds), WIDTH floats per load, and splits the blocks over the
# worker threads so that every core streams its own part of W.

import compiler
from algorithm import parallelize
from memory import UnsafePointer
from runtime.asyncrt import DeviceContextPtr, parallelism_level
from sys import simd_width_of
from tensor import InputTensor, OutputTensor

alias WIDTH = simd_width_of[DType.float32]()  # floats per SIMD load: 16 with AVX-512
alias ROWS = 4  # rows of W per block: ROWS independent sums keep the FMA units busy
alias TOKENS = 4  # tokens per pass over a block: each load of W serves TOKENS tokens (batches, lesson 15)


@always_inline
fn dot_rows[
    tokens: Int, rows: Int
](
    x: UnsafePointer[Float32],
    w: UnsafePointer[Float32],
    output: UnsafePointer[mut=True, Float32],
    K: Int,
    N: Int,
):
    """output[t * N + r] = dot(x[t * K : (t + 1) * K], w[r * K : (r + 1) * K])
    for t in 0 ..< tokens and r in 0 ..< rows: one accumulator per (token, row)."""
    var acc = InlineArray[SIMD[DType.float32, WIDTH], tokens * rows](fill=0)
    var k = 0
    while k + WIDTH <= K:  # WIDTH floats of each token and of each row at a time
        var xs = InlineArray[SIMD[DType.float32, WIDTH], tokens](fill=0)
        @parameter
        for t in range(tokens):
            xs[t] = x.load[width=WIDTH](t * K + k)
        @parameter
        for r in range(rows):
            var ws = w.load[width=WIDTH](r * K + k)
            @parameter
            for t in range(tokens):
                acc[t * rows + r] = ws.fma(xs[t], acc[t * rows + r])
        k += WIDTH

    @parameter
    for t in range(tokens):
        @parameter
        for r in range(rows):
            var total = acc[t * rows + r].reduce_add()
            for j in range(k, K):  # the last K % WIDTH inputs, one at a time
                total += x[t * K + j] * w[r * K + j]
            output[t * N + r] = total


@compiler.register("gpt2_matvec")
struct MatVec:
    @staticmethod
    fn execute[
        target: StaticString
    ](
        output: OutputTensor[dtype = DType.float32, rank=2],
        x: InputTensor[dtype = DType.float32, rank=2],
        weight: InputTensor[dtype = DType.float32, rank=2],
        ctx: DeviceContextPtr,
    ) raises:
        var M = x.dim_size(0)
        var K = x.dim_size(1)
        var N = weight.dim_size(0)
        var xp = x.unsafe_ptr()
        var wp = weight.unsafe_ptr()
        var op = output.unsafe_ptr()

        var blocks = N // ROWS
        var workers = max(1, min(parallelism_level(), blocks))
        var per_worker = (blocks + workers - 1) // workers

        @parameter
        fn work(worker: Int):
            # This worker's blocks of ROWS rows; each block is read once for all M tokens.
            var first = worker * per_worker
            var last = min(first + per_worker, blocks)
            for b in range(first, last):
                var n = b * ROWS
                var m = 0
                while m + TOKENS <= M:
                    dot_rows[TOKENS, ROWS](xp + m * K, wp + n * K, op + m * N + n, K, N)
                    m += TOKENS
                for t in range(m, M):  # the last M % TOKENS tokens, one at a time
                    dot_rows[1, ROWS](xp + t * K, wp + n * K, op + t * N + n, K, N)

        parallelize[work](workers)

        # The last N % ROWS rows of W, one at a time.
        for n in range(blocks * ROWS, N):
            for m in range(M):
                dot_rows[1, 1](xp + m * K, wp + n * K, op + m * N + n, K, N)
