"""Lesson 14's cached GPT-2, built from the checkpoint MAX opened and compiled.

Which code builds it: solutions/solution_14.py, or, when serve.py --steps
set GPT2_SERVE_STEPS_DIR (max serve passes its environment on to the
process that runs the model), the learner's step_14.py in that folder.
Either way tools/checkpoint.py's build_max_model puts the weights in (with
solutions/solution_12.py's load_hf_weights), and tools/kv_engine.py
compiles the model once.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # solutions/ and tools/

STEPS_DIR_ENV = "GPT2_SERVE_STEPS_DIR"
logger = logging.getLogger("max.pipelines")


def hf_state_dict(weights: Any) -> dict[str, np.ndarray]:
    """MAX's view of the safetensors file -> {HuggingFace name: float32 array}.

    save_pretrained of a GPT2LMHeadModel writes "transformer.h.0...."; the
    hub's own gpt2 was saved from GPT2Model, without "transformer.".
    """
    state = {}
    for name, weight in weights.items():
        if not name.startswith(("transformer.", "lm_head.")):
            name = "transformer." + name
        state[name] = np.from_dlpack(weight.data()).astype(np.float32, copy=False)
    return state


def course_code(steps_dir: str | None = None):
    """(CachedGPT2LMHeadModel, KVCache, compile) of the solutions or of steps_dir/step_14.py."""
    steps_dir = steps_dir or os.environ.get(STEPS_DIR_ENV)
    if steps_dir:
        from tools.steps import learner_cached_code

        return learner_cached_code(Path(steps_dir))
    from solutions.solution_14 import CachedGPT2LMHeadModel, KVCache
    from tools.kv_engine import compile_cached_model

    return CachedGPT2LMHeadModel, KVCache, compile_cached_model


def load_cached_model(hf_config: Any, weights: Any):
    """(compiled model, new_cache(capacity) -> an empty KVCache of batch 1)."""
    from tools.checkpoint import build_max_model, default_device_for, max_config
    from tools.steps import StepsNotReady

    start = time.perf_counter()
    config = max_config(hf_config)
    try:
        CachedGPT2LMHeadModel, KVCache, compile_model = course_code()
        # CPU and float32, whatever MAX's defaults are; solution_12's load_hf_weights.
        model = build_max_model(hf_state_dict(weights), config, model_class=CachedGPT2LMHeadModel)
        loaded = time.perf_counter()
        with default_device_for(None):
            compiled = compile_model(model)
    except StepsNotReady as err:  # the learner's code: one line, then MAX stops
        raise RuntimeError(f"serve.py --steps: {err}") from None
    logger.info(
        "GPT-2 (%d layers, %d wide): weights loaded in %.1f s, compiled in %.1f s",
        config.n_layer, config.n_embd, loaded - start, time.perf_counter() - loaded,
    )
    return compiled, lambda capacity: KVCache(config, batch_size=1, capacity=capacity)
