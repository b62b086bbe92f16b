# One decode step's attention, reading the KV cache where it lies.
#
# Lesson 15's graph cuts the filled part out of the cache buffers and
# concatenates the new token's key and value to it: at 380 cached tokens
# that is about 28 MB copied (124M, float32) before attention reads it.
# This op reads the buffers in place instead, one pass per row and head,
# with the softmax computed online (a running maximum and sum, as in
# flash-decoding), so nothing of the cache's size is ever written.
#
#   qkv           [rows, 3 * n_embd]  c_attn's output for each row's new token
#   key_buffer    [n_layer, slots, n_head, capacity, head_dim]  the cache
#   value_buffer  [n_layer, slots, n_head, capacity, head_dim]
#   layer         [1]      which layer's keys and values to read
#   slots_of_rows [rows]   the cache slot that each row's sequence lives in
#   lengths       [rows]   how many positions each of those slots holds
#   output        [rows, n_embd]  softmax(q k^T / sqrt(head_dim)) v, heads side by side
#
# Row r's new token attends to positions 0 ..< lengths[r] of its slot and
# to itself (its own key and value are in qkv; the engine writes them into
# the cache after the step).

import compiler
from algorithm import parallelize
from math import exp, sqrt
from memory import UnsafePointer
from runtime.asyncrt import DeviceContextPtr, parallelism_level
from sys import simd_width_of
from tensor import InputTensor, OutputTensor

alias WIDTH = simd_width_of[DType.float32]()


@always_inline
fn dot(a: UnsafePointer[Float32], b: UnsafePointer[Float32], n: Int) -> Float32:
    var acc = SIMD[DType.float32, WIDTH](0)
    var i = 0
    while i + WIDTH <= n:
        acc = a.load[width=WIDTH](i).fma(b.load[width=WIDTH](i), acc)
        i += WIDTH
    var total = acc.reduce_add()
    for j in range(i, n):
        total += a[j] * b[j]
    return total


@always_inline
fn scale_add(acc: UnsafePointer[mut=True, Float32], keep: Float32, weight: Float32, v: UnsafePointer[Float32], n: Int):
    """acc[0:n] = acc[0:n] * keep + weight * v[0:n]."""
    var i = 0
    while i + WIDTH <= n:
        acc.store(i, v.load[width=WIDTH](i).fma(SIMD[DType.float32, WIDTH](weight), acc.load[width=WIDTH](i) * keep))
        i += WIDTH
    for j in range(i, n):
        acc[j] = acc[j] * keep + weight * v[j]


@compiler.register("gpt2_decode_attention")
struct DecodeAttention:
    @staticmethod
    fn execute[
        target: StaticString
    ](
        output: OutputTensor[dtype = DType.float32, rank=2],
        qkv: InputTensor[dtype = DType.float32, rank=2],
        key_buffer: InputTensor[dtype = DType.float32, rank=5],
        value_buffer: InputTensor[dtype = DType.float32, rank=5],
        layer: InputTensor[dtype = DType.int64, rank=1],
        slots_of_rows: InputTensor[dtype = DType.int64, rank=1],
        lengths: InputTensor[dtype = DType.int64, rank=1],
        ctx: DeviceContextPtr,
    ) raises:
        var rows = qkv.dim_size(0)
        var width = qkv.dim_size(1) // 3  # n_embd
        var slots = key_buffer.dim_size(1)
        var heads = key_buffer.dim_size(2)
        var capacity = key_buffer.dim_size(3)
        var head_dim = key_buffer.dim_size(4)
        var first = Int(layer.unsafe_ptr()[0]) * slots  # the layer's first slot
        var scale = 1 / sqrt(Float32(head_dim))
        var qp = qkv.unsafe_ptr()
        var kp = key_buffer.unsafe_ptr()
        var vp = value_buffer.unsafe_ptr()
        var sp = slots_of_rows.unsafe_ptr()
        var lp = lengths.unsafe_ptr()
        var op = output.unsafe_ptr()

        @parameter
        fn one_head(task: Int):
            var r = task // heads
            var h = task % heads
            var q = qp + r * 3 * width + h * head_dim
            var new_key = q + width
            var new_value = q + 2 * width
            var out = op + r * width + h * head_dim
            var at = ((first + Int(sp[r])) * heads + h) * capacity * head_dim
            var keys = kp + at
            var values = vp + at
            # Start from the new token itself: its score is the running maximum,
            # its weight exp(0) = 1 the running sum, its value the running output.
            var top = dot(q, new_key, head_dim) * scale
            var total: Float32 = 1
            for d in range(head_dim):
                out[d] = new_value[d]
            for p in range(Int(lp[r])):
                var score = dot(q, keys + p * head_dim, head_dim) * scale
                if score > top:  # a new maximum: rescale what was summed so far
                    var keep = exp(top - score)
                    total = total * keep + 1
                    scale_add(out, keep, 1, values + p * head_dim, head_dim)
                    top = score
                else:
                    var weight = exp(score - top)
                    total += weight
                    scale_add(out, 1, weight, values + p * head_dim, head_dim)
            var inverse = 1 / total
            for d in range(head_dim):
                out[d] *= inverse

        # As many workers as the runtime has threads, each taking every
        # workers-th (row, head): more tasks than threads only queue up.
        var tasks = rows * heads
        var workers = max(1, min(parallelism_level(), tasks))

        @parameter
        fn work(worker: Int):
            for task in range(worker, tasks, workers):
                one_head(task)

        parallelize[work](workers)
