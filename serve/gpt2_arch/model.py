"""GPT2PipelineModel: what MAX's text-generation pipeline asks of a model.

For every batch of requests, MAX's pipeline
(max/pipelines/lib/pipeline_variants/text_generation.py) does

    inputs = model.prepare_initial_token_inputs(contexts)  # one entry per request
    outputs = model.execute(inputs)                         # logits [batch, vocab]
    ... samples one token per request from outputs.logits (MAX's own sampler:
        temperature, top_k, top_p, seed), appends it to the request ...

and calls kv_manager.release(request_id) when a request ends (finished,
cancelled, or put back in the queue by the scheduler). The pipeline always
asks a model for a KV-cache manager (KVCacheMixin); this model keeps
lesson 15's cache itself (runner.py: one slot per request, one model call
per step for all the requests of a batch), so its manager only passes on
release, and tells MAX's memory planning that MAX allocates nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
from max.driver import Tensor
from max.dtype import DType
from max.engine import InferenceSession
from max.kv_cache import NullKVCacheManager
from max.nn.kv_cache import KVCacheInputs, KVCacheParams, KVCacheStrategy
from max.pipelines.core import TextContext
from max.pipelines.lib import KVCacheMixin, ModelInputs, ModelOutputs, PipelineModel, upper_bounded_default

from .loader import load_batched_model
from .runner import BatchedRunner, SequenceStep

# For the tests: a file that gets one JSON line per finished request with
# all its token ids (the API returns only text, decoded token by token).
TRACE_ENV = "GPT2_SERVE_TRACE"


class GPT2Inputs(ModelInputs):
    def __init__(self, steps: list[SequenceStep], kv_cache_inputs: KVCacheInputs | None = None):
        self.steps = steps
        self.kv_cache_inputs = kv_cache_inputs


class GPT2PipelineModel(PipelineModel[TextContext], KVCacheMixin):
    def __init__(self, *args, session: InferenceSession, **kwargs) -> None:
        super().__init__(*args, session=session, **kwargs)  # calls calculate_max_seq_len and load_kv_manager
        if not self.devices[0].is_host:
            raise ValueError("the course's GPT-2 serves on the CPU only (--devices cpu)")
        slots = self.pipeline_config.max_batch_size or 1
        # MAX's session, where its sampler runs after every step: one pool of threads for both
        # (two sessions taking turns slowed each other's steps down: docs/speed.md).
        compiled, cache, run_rows = load_batched_model(self.huggingface_config, self.weights, slots, self.max_seq_len,
                                                       session=session)
        self.runner = BatchedRunner(compiled, cache, run_rows)
        self.contexts: dict = {}  # request id -> context, for the trace

    @classmethod
    def calculate_max_seq_len(cls, pipeline_config, huggingface_config) -> int:
        """The context length: --max-length, at most the model's n_positions."""
        return upper_bounded_default(
            upper_bound=huggingface_config.n_positions, default=pipeline_config.max_length
        )

    def prepare_initial_token_inputs(
        self, context_batch: Sequence[TextContext], kv_cache_inputs=None, return_n_logits: int = 1
    ) -> GPT2Inputs:
        steps = []
        for ctx in context_batch:
            self.contexts[ctx.request_id] = ctx
            # tokens[:active_idx]: up to the newest token to run (MAX may split a long prompt).
            tokens = ctx.tokens[: ctx.active_idx].astype(np.int64)
            steps.append(SequenceStep(ctx.request_id, tokens, ctx.start_idx))
        return GPT2Inputs(steps, kv_cache_inputs)

    def prepare_next_token_inputs(self, next_tokens: Tensor, prev_model_inputs: ModelInputs) -> GPT2Inputs:
        """Only used with --max-num-steps > 1: the same requests, each one token longer."""
        assert isinstance(prev_model_inputs, GPT2Inputs)
        new = next_tokens.to_numpy().reshape(-1).astype(np.int64)
        steps = [
            SequenceStep(s.request_id, np.append(s.tokens, new[i]), len(s.tokens))
            for i, s in enumerate(prev_model_inputs.steps)
        ]
        return GPT2Inputs(steps, prev_model_inputs.kv_cache_inputs)

    def execute(self, model_inputs: ModelInputs) -> ModelOutputs:
        assert isinstance(model_inputs, GPT2Inputs)
        logits = self.runner.next_token_logits(model_inputs.steps)  # [batch, vocab]
        return ModelOutputs(logits=Tensor.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)))

    def release(self, request_id) -> None:
        self.runner.release(request_id)
        ctx = self.contexts.pop(request_id, None)
        if ctx is not None and os.environ.get(TRACE_ENV):
            record = {
                "request_id": str(getattr(request_id, "value", request_id)),
                "prompt": [int(t) for t in ctx.prompt_tokens],
                "generated": [int(t) for t in ctx.tokens[ctx._prompt_len : ctx.end_idx]],
                "largest_batch": self.runner.largest_batch,  # the most rows one model call ran
                "slots_in_use": int(self.runner.cache.in_use.sum()),  # after this request's slot was freed
            }
            with open(os.environ[TRACE_ENV], "a") as f:
                f.write(json.dumps(record) + "\n")

    # -- KVCacheMixin: the manager MAX's pipeline asks for ----------------------------

    @classmethod
    def get_kv_params(cls, huggingface_config, n_devices, kv_cache_config, cache_dtype) -> KVCacheParams:
        return KVCacheParams(
            dtype=DType.float32,
            n_kv_heads=huggingface_config.n_head,
            head_dim=huggingface_config.n_embd // huggingface_config.n_head,
            cache_strategy=KVCacheStrategy.PAGED,
            page_size=kv_cache_config.kv_cache_page_size,
            n_devices=n_devices,
        )

    @classmethod
    def get_num_layers(cls, huggingface_config) -> int:
        return huggingface_config.n_layer

    @classmethod
    def estimate_kv_cache_size(cls, *args, **kwargs) -> int:
        return 0  # MAX allocates no cache for this model

    def load_kv_manager(self, session: InferenceSession, available_cache_memory) -> NullKVCacheManager:
        return ReleaseToModel(self, session)


class ReleaseToModel(NullKVCacheManager):
    """MAX's do-nothing cache manager, passing release(request_id) on to the
    model. (Its start-up log line says "compile-only mode": that is only
    where MAX itself uses it.)"""

    def __init__(self, model: GPT2PipelineModel, session: InferenceSession) -> None:
        super().__init__(
            params=model.get_kv_params(model.huggingface_config, len(model.devices), model.kv_cache_config, DType.float32),
            max_batch_size=model.pipeline_config.max_batch_size or 1,
            max_seq_len=model.max_seq_len,
            num_layers=model.get_num_layers(model.huggingface_config),
            devices=model.devices,
            session=session,
            available_cache_memory=0,
        )
        self.model = model

    def release(self, request_id) -> None:
        super().release(request_id)
        self.model.release(request_id)
