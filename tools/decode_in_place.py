"""A decode step whose attention reads the KV cache where it lies.

Lesson 15's engine cuts each step's window out of the cache buffers
(tools/kv_engine.py's BatchWindow), and lesson 14's attention concatenates
the new token's key and value to it: two copies of the filled cache per
step, which cost more than attention's own arithmetic once the context
grows (tests/bench_context.py measures it). This module is the same decode
step with both copies gone: one Mojo op per layer
(tools/kernels/decode_attention.mojo) reads the buffers in place.

It is a deliberate copy of BatchWindow + lesson 15's BatchedGPT2LMHeadModel
(solutions/solution_15.py, solution_14.py) for one new token per row, over
the same submodules and weights. tests/test_kv_engine.py keeps the two
identical: every row's logits at every step (each step's keys and values
go into the cache that the next steps read). It is not a lesson; the
lessons' checks run their own graphs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from max.dtype import DType
from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.graph import TensorType
from max.nn.module_v3 import Module

from solutions.solution_08 import pre_norm_residual
from tools.kv_engine import build_graph
from tools.mojo_package import build_package

ATTENTION_KERNELS = Path(__file__).parent / "kernels"  # the Mojo package with the op "gpt2_decode_attention"

# How close a quantized model's in-place decode step is held to lesson 15's graph: the KL
# divergence of their next-token distributions, in nats. Not a logit tolerance: a quantized
# model is not continuous in its inputs (ops.qmatmul rounds activations to 8 bits), so float32
# rounding in attention can flip an activation's code. Measured at 124M in Q4_0 (random weights,
# 200 cached): a relative change of 1e-7 in the cached keys moved lesson 15's own logits by
# 0.063; the in-place step's largest KL from lesson 15's was 2e-5 (tests/bench_context.py).
QUANTIZED_KL = 1e-3


def decode_attention(qkv: Tensor, key_buffer: Tensor, value_buffer: Tensor, layer: int,
                     rows: Tensor, lengths: Tensor) -> Tensor:
    """qkv [rows, 3 * n_embd], one new token per row -> [rows, n_embd]: its
    attention over the first lengths[r] positions of slot rows[r] of the
    layer's buffers, and over itself."""
    width = qkv.shape[-1] // 3
    index = Tensor.constant(np.array([layer], dtype=np.int64), dtype=DType.int64, device=qkv.device)  # [1]
    out_type = TensorType(DType.float32, [qkv.shape[0], width], device=qkv.device)
    return F.custom("gpt2_decode_attention", qkv.device, [qkv, key_buffer, value_buffer, index, rows, lengths],
                    [out_type])[0]


class InPlaceDecode(Module):
    """One new token per row: (input_ids [rows, 1], key_buffer, value_buffer,
    rows, lengths) -> (logits, keys, values), as CompiledBatchedModel's graph."""

    def __init__(self, model: Module):
        self.model = model  # the same attribute name as BatchWindow's: the same weight names

    def __call__(self, input_ids, key_buffer, value_buffer, rows, lengths):
        transformer, width = self.model.transformer, self.model.config.n_embd
        hidden_states = transformer.wte(input_ids) + transformer.wpe(F.unsqueeze(lengths, 1))  # [rows, 1, n_embd]
        keys, values = [], []
        for i, block in enumerate(transformer.h):
            attn = block.attn
            qkv = attn.c_attn(block.ln_1(hidden_states))  # [rows, 1, 3 * n_embd]
            mixed = decode_attention(qkv.reshape([qkv.shape[0], 3 * width]), key_buffer, value_buffer, i,
                                     rows, lengths)  # [rows, n_embd]
            hidden_states = hidden_states + attn.c_proj(mixed.reshape([mixed.shape[0], 1, width]))
            hidden_states = pre_norm_residual(hidden_states, block.ln_2, block.mlp)
            _, key, value = F.split(qkv, [width] * 3, axis=-1)
            keys.append(attn._split_heads(key))  # [rows, n_head, 1, head_dim]
            values.append(attn._split_heads(value))
        hidden_states = transformer.ln_f(hidden_states)
        logits = self.model.lm_head(hidden_states[:, -1, :])  # [rows, vocab_size]
        return logits, F.stack(keys), F.stack(values)


def in_place_graph(model: Module, input_types, custom_extensions=()):
    """The graph of InPlaceDecode(model) for input_types (CompiledBatchedModel's, seq = 1),
    with the attention's Mojo package beside custom_extensions (lesson 16's, if any)."""
    graph, _ = build_graph(InPlaceDecode(model), *input_types,
                           custom_extensions=[*custom_extensions, build_package(ATTENTION_KERNELS)])
    return graph
