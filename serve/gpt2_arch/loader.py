"""Lesson 15's batched GPT-2, built from the checkpoint MAX opened and compiled.

Which code builds it: solutions/solution_15.py (with lesson 16's Mojo
kernel and the in-place attention in the decode steps when serve.py set
GPT2_SERVE_KERNEL, lesson 17's quantized weights when it set
GPT2_SERVE_QUANTIZE), or, when serve.py --steps
set GPT2_SERVE_STEPS_DIR (max serve passes its environment on to the
process that runs the model), the learner's step_15.py in that folder.
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
KERNEL_ENV = "GPT2_SERVE_KERNEL"  # "1": the Mojo ops in the decode steps (serve.py checked they build)
QUANTIZE_ENV = "GPT2_SERVE_QUANTIZE"  # lesson 17's weight format (serve.py checked it fits the model)
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
    """Lesson 15 (tools/generation.py's LessonCode) of the solutions or of steps_dir/step_15.py,
    its weights quantized by lesson 17 when serve.py --quantize set GPT2_SERVE_QUANTIZE."""
    from tools.generation import reference_code, with_quantized

    steps_dir = steps_dir or os.environ.get(STEPS_DIR_ENV)
    quantize = os.environ.get(QUANTIZE_ENV) or None
    if steps_dir:
        from tools.steps import learner_batched_code

        code = learner_batched_code(Path(steps_dir))
        return with_quantized(code, quantize) if quantize else code
    mojo = os.environ.get(KERNEL_ENV) == "1"  # with quantize: the in-place attention only
    return reference_code(cache=True, kernel=mojo and not quantize, quantize=quantize, in_place=mojo)


def load_batched_model(hf_config: Any, weights: Any, max_batch_size: int, capacity: int, session: Any = None):
    """(compiled model, an empty BatchedKVCache of max_batch_size slots of capacity tokens, run_rows).
    session: MAX's InferenceSession to load the graphs into (None: a new one)."""
    from tools.checkpoint import build_max_model, default_device_for, max_config
    from tools.steps import StepsNotReady

    start = time.perf_counter()
    config = max_config(hf_config)
    try:
        code = course_code()
        # CPU and float32, whatever MAX's defaults are; solution_12's load_hf_weights.
        model = build_max_model(hf_state_dict(weights), config, code.load_hf_weights, model_class=code.model_class)
        loaded = time.perf_counter()
        with default_device_for(None):
            compiled = code.compile_model(model, session=session)
        # The whole bill, slots x capacity x 72 KiB at 124M, is paid once the slots are used:
        # numpy asks for 2 MB pages for arrays this large (madvise), and a page holds the
        # first positions of several (layer, slot, head) rows, so early writes make it all resident.
        cache = code.kv_cache(config, max_batch_size, capacity)
        # Pay it now, at start: a page first touched by a request's prefill costs that request
        # (measured: 120-260 ms per fresh slot, 8 slots of 1024 tokens at 124M, against 33 ms
        # for the 22-token prefill itself).
        for buffer in (getattr(cache, "keys", None), getattr(cache, "values", None)):
            if isinstance(buffer, np.ndarray):
                buffer.fill(0)
    except StepsNotReady as err:  # the learner's code: one line, then MAX stops
        raise RuntimeError(f"serve.py --steps: {err}") from None
    logger.info(
        "GPT-2 (%d layers, %d wide): weights loaded in %.1f s, compiled in %.1f s; %d slots of %d tokens; %s",
        config.n_layer, config.n_embd, loaded - start, time.perf_counter() - loaded, max_batch_size, capacity,
        code.path,
    )
    return compiled, cache, code.run_rows
