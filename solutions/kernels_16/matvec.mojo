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
# tokens, WIDTH floats per load, and splits the blocks over the worker
# threads so that every core streams its own part of W.

import compiler
from algorithm import parallelize
from memory import UnsafePointer
from runtime.asyncrt import DeviceContextPtr, parallelism_level
from sys import simd_width_of
from tensor import InputTensor, OutputTensor

alias WIDTH = simd_width_of[DType.float32]()  # floats per SIMD load: 16 with AVX-512
alias ROWS = 4  # rows of W per block: ROWS independent sums keep the FMA units busy


@always_inline
fn dot_rows[
    rows: Int
](
    x: UnsafePointer[Float32],
    w: UnsafePointer[Float32],
    out_row: UnsafePointer[mut=True, Float32],
    K: Int,
):
    """out_row[r] = dot(x[0:K], w[r * K : (r + 1) * K]) for r in 0 ..< rows."""
    var acc = InlineArray[SIMD[DType.float32, WIDTH], rows](fill=0)
    var k = 0
    while k + WIDTH <= K:  # WIDTH floats of x and of each row at a time
        var xs = x.load[width=WIDTH](k)
        @parameter
        for r in range(rows):
            acc[r] = w.load[width=WIDTH](r * K + k).fma(xs, acc[r])
        k += WIDTH

    @parameter
    for r in range(rows):
        var total = acc[r].reduce_add()
        for j in range(k, K):  # the last K % WIDTH inputs, one at a time
            total += x[j] * w[r * K + j]
        out_row[r] = total


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
                for m in range(M):
                    dot_rows[ROWS](xp + m * K, wp + n * K, op + m * N + n, K)

        parallelize[work](workers)

        # The last N % ROWS rows of W, one at a time.
        for n in range(blocks * ROWS, N):
            for m in range(M):
                dot_rows[1](xp + m * K, wp + n * K, op + m * N + n, K)
