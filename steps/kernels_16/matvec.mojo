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
        # TODO: Load WIDTH floats of each token into xs; add each row's WIDTH floats times every xs[t] into acc; advance k
        # Hint: x.load[width=WIDTH](k) reads x[k], ..., x[k + WIDTH - 1] as one SIMD vector; token t's x starts t * K later.
        # Hint: Row r of W starts r * K floats after w. Load it once per r and use it for every token (that is the point).
        # Hint: Token t and row r own acc[t * rows + r]. a.fma(b, c) computes a * b + c lane by lane, in one instruction.
        # Hint: `@parameter for t in range(tokens)` loops are unrolled. Then k moves on by WIDTH.
        pass

    @parameter
    for t in range(tokens):
        @parameter
        for r in range(rows):
            # TODO: The total of token t and row r: acc's lanes summed, plus the last K % WIDTH products; store it
            # Hint: reduce_add() sums the lanes of a SIMD vector into one Float32.
            # Hint: The SIMD loop stopped at k: inputs k, ..., K - 1 are left, one multiply-add each (x[t * K + j], w[...]).
            # Hint: Store it at output[t * N + r]: the output's rows are N floats apart.
            pass


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
            # TODO: For each block b of this worker: its rows n = b * ROWS ..., for all M tokens, TOKENS at a time
            # Hint: Loop over the blocks from first to last; inside, over the tokens, so that a block's rows are
            # Hint: read once for all of them (they stay in the cache while the tokens go by): dot_rows[TOKENS, ROWS]
            # Hint: while TOKENS tokens are left, then dot_rows[1, ROWS] for each of the last M % TOKENS tokens.
            # Hint: x's row m starts at xp + m * K, W's row n at wp + n * K, output[m, n] at op + m * N + n.
            pass

        parallelize[work](workers)

        # TODO: The last N % ROWS rows of W (after the last whole block), one at a time, for every token
        # Hint: Rows blocks * ROWS, ..., N - 1, each with dot_rows[1, 1], for each of the M tokens.
        pass
