"""Compile lesson 14's cached GPT-2 once, and run it on a KV cache in place.

Lesson 14 teaches the model (CachedGPT2LMHeadModel), the cache (KVCache:
fixed-size numpy buffers [n_layer, batch, n_head, capacity, head_dim] and
the number of positions filled) and the loop. This file is the plumbing
between them, and it is not a lesson: read it when you want to know how
the fast path is fast.

    compiled = compile_cached_model(model)      # one graph, compiled once
    cache = KVCache(model.config, batch_size=1, capacity=64)
    logits, keys, values = compiled(prompt_ids, cache)   # prefill
    cache.append(keys, values)
    logits, keys, values = compiled(next_ids, cache)     # one decode step

Why not Module.compile, as in step 12? In MAX 25.7 every Tensor that a
compiled module returns stays referenced until the process ends. A cache
handed in and back as Tensors at every step therefore piles up (840 MB
after 128 tokens at 124M). So this builds the graph the way Module.compile
does, keeps the engine's own model, and calls it with max.driver tensors,
which nothing keeps. The cache's numpy buffers are handed over without a
copy; the graph reads cache[..., :length, :] itself (the length is a
scalar input), so one graph serves the prefill (any number of tokens,
length 0) and every decode step (one token, any length): batch, tokens,
capacity and length are all symbolic. The engine returns only the new
tokens' keys and values, which KVCache.append writes into the buffers.

That window is a copy of the filled cache at every step. The commands
(generate.py, bench.py, serve.py) decode with in_place=True when the Mojo
ops build: a second graph for decode steps whose attention reads the
buffers in place (tools/decode_in_place.py). The lessons' checks run the
lessons' own graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from max import driver
from max.dtype import DType
from max.engine import InferenceSession
from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.graph import DeviceRef, Graph, TensorType, TensorValue
from max.nn.module_v3 import Module


class CacheWindow(Module):
    """The filled part of fixed-size cache buffers -> the model's past keys/values."""

    def __init__(self, model: Module):
        self.model = model

    def __call__(self, input_ids, key_buffer, value_buffer, length):
        # A slice whose end is known only at run time: a graph TensorValue
        # bound, and a name for the new symbolic dimension.
        filled = (slice(0, TensorValue(length)), "past")
        past_keys = key_buffer[:, :, :, filled, :]  # [n_layer, batch, n_head, past, head_dim]
        past_values = value_buffer[:, :, :, filled, :]
        outputs = self.model(input_ids, past_keys, past_values)
        if outputs is None:
            raise TypeError(f"{type(self.model).__name__}.__call__ returned None")
        return outputs


class BatchWindow(Module):
    """Lesson 15: some slots of fixed-size cache buffers, each with its own
    length -> the model's past keys/values (as long as the longest row) and lengths."""

    def __init__(self, model: Module):
        self.model = model

    def __call__(self, input_ids, key_buffer, value_buffer, rows, lengths):
        window = F.reshape(F.max(lengths), [])  # the longest row's cached length
        filled = (slice(0, TensorValue(window)), "past")
        past_keys = F.gather(key_buffer[:, :, :, filled, :], rows, axis=1)  # [n_layer, rows, n_head, past, head_dim]
        past_values = F.gather(value_buffer[:, :, :, filled, :], rows, axis=1)
        outputs = self.model(input_ids, past_keys, past_values, lengths)
        if outputs is None:
            raise TypeError(f"{type(self.model).__name__}.__call__ returned None")
        return outputs


def build_graph(module: Module, *input_types: TensorType, custom_extensions: Sequence[Path] = ()) -> tuple[Graph, dict[str, Any]]:
    """What Module.compile does before it loads: trace module with its
    parameters as named external weights. Returns (graph, weights by name).
    custom_extensions: Mojo packages whose ops the module calls (lesson 16)."""
    weights = dict(module.parameters)
    with Graph(type(module).__name__, input_types=input_types, custom_extensions=list(custom_extensions)) as graph:
        inputs = [Tensor(value=value.tensor) for value in graph.inputs]
        module.apply_to_parameters(lambda name, t: F.constant_external(name, t.type))
        try:
            outputs = module(*inputs)
        finally:
            module.apply_to_parameters(lambda name, t: weights[name])
        graph.output(*((outputs,) if isinstance(outputs, Tensor) else outputs))
    return graph, weights


def share_tied_head(weights: dict[str, Any], head: str, embedding: str) -> None:
    """GPT-2 ties its LM head to wte. Step 11 keeps a copy of its own; when
    the two hold the same numbers, hand the engine one array under both
    names, so a decode step reads those 154 MB (at 124M) once, not twice."""
    if head in weights and embedding in weights:
        a, b = np.from_dlpack(weights[head]), np.from_dlpack(weights[embedding])
        if a.shape == b.shape and np.array_equal(a, b):
            weights[head] = weights[embedding]


class CompiledCachedModel:
    """A CachedGPT2LMHeadModel compiled once: (input_ids, cache) -> (logits, keys, values).

    input_ids [batch, seq] int64; the cache holds cache.length positions.
    Returns numpy arrays: logits [batch, vocab_size] of the last new token,
    keys and values [n_layer, batch, n_head, seq, head_dim] of the new tokens.
    """

    graphs_compiled = 0  # over the whole process: one per compiled model
    window = CacheWindow

    @staticmethod
    def input_types(config) -> list[TensorType]:
        cpu, head_dim = DeviceRef.CPU(), config.n_embd // config.n_head
        buffer = TensorType(DType.float32, [config.n_layer, "batch", config.n_head, "capacity", head_dim], device=cpu)
        return [
            TensorType(DType.int64, ["batch", "seq"], device=cpu),  # the new tokens
            buffer,  # keys
            buffer,  # values
            TensorType(DType.int64, [], device=cpu),  # how many positions are filled
        ]

    def __init__(self, model: Module, *, num_threads: int | None = None, custom_extensions: Sequence[Path] = (),
                 session: InferenceSession | None = None):
        """session: load into this one instead of a new one of num_threads (a benchmark that takes
        turns between engines hands them one: measured, two sessions' thread pools taking turns
        made each other's decode steps a third to two thirds slower on average, docs/speed.md)."""
        self.config = model.config
        device = model.lm_head.weight.device
        if device.label != "cpu":
            raise NotImplementedError("the KV-cache engine runs on the CPU only (its cache lives in host memory)")
        graph, weights = build_graph(self.window(model), *self.input_types(model.config),
                                     custom_extensions=custom_extensions)
        share_tied_head(weights, "model.lm_head.weight", "model.transformer.wte.weight")
        self.session = session or InferenceSession(devices=[driver.CPU()], num_threads=num_threads)
        self.engine_model = self.session.load(graph, weights_registry=weights)
        self.weights = weights  # the engine reads these arrays in place: keep them alive
        CompiledCachedModel.graphs_compiled += 1  # subclasses count here too

    def __call__(self, input_ids: Any, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"input_ids must be [batch, seq] with seq >= 1, got shape {list(ids.shape)}")
        capacity, batch = cache.keys.shape[3], cache.keys.shape[1]
        if ids.shape[0] != batch:
            raise ValueError(f"{ids.shape[0]} sequences, but the cache was made for batch_size={batch}")
        if cache.length + ids.shape[1] > capacity:
            raise ValueError(
                f"the cache is full: {cache.length} cached + {ids.shape[1]} new tokens > capacity {capacity}"
            )
        outputs = self.engine_model.execute(
            driver.Tensor.from_numpy(ids),
            driver.Tensor.from_numpy(self._float32(cache.keys)),
            driver.Tensor.from_numpy(self._float32(cache.values)),
            np.int64(cache.length),
        )
        logits, keys, values = (np.from_dlpack(t) for t in outputs)
        return logits, keys, values

    @staticmethod
    def _float32(buffer: np.ndarray) -> np.ndarray:
        if buffer.dtype != np.float32 or not buffer.flags.c_contiguous:
            raise ValueError("the cache buffers must be C-contiguous float32 numpy arrays")
        return buffer


class CompiledBatchedModel(CompiledCachedModel):
    """Lesson 15: a BatchedGPT2LMHeadModel compiled once: (input_ids, cache, rows) -> (logits, keys, values).

    input_ids [len(rows), seq] int64, the new tokens of the cache's slots
    rows, which hold cache.lengths[rows] positions each. The graph reads the
    rows' cached positions up to the longest of them. Returns numpy arrays:
    logits [len(rows), vocab_size] of the last new token, keys and values
    [n_layer, len(rows), n_head, seq, head_dim] of the new tokens.

    With in_place, decode steps (one new token per row) run a second graph
    over the same weights, tools/decode_in_place.py's, whose attention reads
    the cache buffers where they lie: no window is cut out of them.
    """

    window = BatchWindow

    @staticmethod
    def input_types(config, seq: int | str = "seq") -> list[TensorType]:
        cpu, head_dim = DeviceRef.CPU(), config.n_embd // config.n_head
        buffer = TensorType(DType.float32, [config.n_layer, "slots", config.n_head, "capacity", head_dim], device=cpu)
        return [
            TensorType(DType.int64, ["batch", seq], device=cpu),  # the new tokens of some rows
            buffer,  # keys
            buffer,  # values
            TensorType(DType.int64, ["batch"], device=cpu),  # which slots they belong to
            TensorType(DType.int64, ["batch"], device=cpu),  # how many positions each slot holds
        ]

    def __init__(self, model: Module, *, num_threads: int | None = None, custom_extensions: Sequence[Path] = (),
                 session: InferenceSession | None = None, decode_graph: bool = False, in_place: bool = False):
        """decode_graph: trace a second graph for decode steps (seq = 1), over the
        same weights; in_place: in it, attention reads the cache buffers in place
        (tools/decode_in_place.py, a Mojo op) instead of the window's copy."""
        super().__init__(model, num_threads=num_threads, custom_extensions=custom_extensions, session=session)  # any seq
        self.decode_model, self.decode_graph, self.in_place = None, None, in_place
        if decode_graph or in_place:
            types = self.input_types(model.config, seq=1)
            if in_place:
                from tools.decode_in_place import in_place_graph

                self.decode_graph = in_place_graph(model, types, custom_extensions)
            else:
                self.decode_graph, _ = build_graph(self.window(model), *types, custom_extensions=custom_extensions)
            self.decode_model = self.session.load(self.decode_graph, weights_registry=self.weights)  # the same arrays
            CompiledCachedModel.graphs_compiled += 1

    def __call__(self, input_ids: Any, cache: Any, rows: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        rows = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"input_ids must be [rows, seq] with seq >= 1, got shape {list(ids.shape)}")
        capacity, slots = cache.keys.shape[3], cache.keys.shape[1]
        if ids.shape[0] != rows.size or rows.size == 0:
            raise ValueError(f"{ids.shape[0]} rows of new tokens for {rows.size} slots {rows.tolist()}")
        if rows.min() < 0 or rows.max() >= slots or np.unique(rows).size != rows.size:
            raise ValueError(f"rows {rows.tolist()} must be distinct slots of the cache, 0 .. {slots - 1}")
        lengths = np.ascontiguousarray(cache.lengths[rows], dtype=np.int64)
        if lengths.max() + ids.shape[1] > capacity:
            raise ValueError(
                f"the cache is full: {lengths.max()} cached + {ids.shape[1]} new tokens > capacity {capacity}"
            )
        outputs = self._execute(
            driver.Tensor.from_numpy(ids),
            driver.Tensor.from_numpy(self._float32(cache.keys)),
            driver.Tensor.from_numpy(self._float32(cache.values)),
            driver.Tensor.from_numpy(rows),
            driver.Tensor.from_numpy(lengths),
        )
        logits, keys, values = (np.from_dlpack(t) for t in outputs)
        return logits, keys, values

    def _execute(self, *inputs: Any) -> list:
        one_token = inputs[0].shape[1] == 1
        return (self.decode_model if one_token and self.decode_model else self.engine_model).execute(*inputs)


class CompiledKernelModel(CompiledBatchedModel):
    """Lesson 16: lesson 15's engine with two graphs over one copy of the weights.

    A decode step (one new token per row) runs a graph traced with seq = 1,
    in which every KernelLinear calls the Mojo kernel; a prefill runs the
    graph for any seq, in which they keep MAX's matmul (the LM head, which
    sees one token per row there too, calls the kernel in both). Called
    like CompiledBatchedModel: (input_ids, cache, rows) -> (logits, keys, values).
    """

    def __init__(self, model: Module, kernels: Path, *, num_threads: int | None = None,
                 session: InferenceSession | None = None, in_place: bool = False):
        from tools.mojo_package import build_package

        self.package = build_package(kernels)  # the Mojo package both graphs load
        super().__init__(model, num_threads=num_threads, custom_extensions=[self.package], session=session,
                         decode_graph=True, in_place=in_place)
        self.kernel_calls = str(self.decode_graph).count('"gpt2_matvec"')  # calls of the op in one decode step


def compile_kernel_model(model: Module, kernels: Path, *, num_threads: int | None = None,
                         session: InferenceSession | None = None, in_place: bool = False) -> CompiledKernelModel:
    """Compile a KernelGPT2LMHeadModel (weights loaded) with the Mojo package in the folder kernels;
    in_place: its decode steps' attention reads the cache in place (tools/decode_in_place.py)."""
    return CompiledKernelModel(model, Path(kernels), num_threads=num_threads, session=session, in_place=in_place)


def compile_batched_model(model: Module, *, num_threads: int | None = None, session: InferenceSession | None = None,
                          in_place: bool = False) -> CompiledBatchedModel:
    """Compile a BatchedGPT2LMHeadModel (weights loaded) for any rows, lengths, slots and cache size;
    in_place: a second graph for decode steps, whose attention reads the cache in place."""
    return CompiledBatchedModel(model, num_threads=num_threads, session=session, in_place=in_place)


def compile_cached_model(model: Module, *, num_threads: int | None = None,
                         session: InferenceSession | None = None) -> CompiledCachedModel:
    """Compile a CachedGPT2LMHeadModel (weights loaded) for any batch, length and cache size."""
    return CompiledCachedModel(model, num_threads=num_threads, session=session)
