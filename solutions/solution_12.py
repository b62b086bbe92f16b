"""
Solution for Step 12: Text generation

GPT-2 writes text one token at a time: run the model on the tokens so far,
take the logits of the last position, pick a token (the most likely one, or
a random draw from softmax(logits / temperature)), append it, repeat.

The model runs in MAX; choosing the token is a little numpy on one row of
logits. The model is compiled once (compile_model) so that each step takes
milliseconds instead of the seconds an eager call costs.
"""

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from max.dtype import DType
from max.experimental.tensor import Tensor
from max.graph import DeviceRef, TensorType
from max.nn.module_v3 import Module

from solutions.solution_11 import MaxGPT2LMHeadModel

# HuggingFace stores these as Conv1D weights of shape [in, out]; MAX's Linear
# wants [out, in].
CONV1D_SUFFIXES = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
# Non-parameter buffers some transformers versions keep in the state dict.
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def load_hf_weights(model: MaxGPT2LMHeadModel, hf_state_dict: Mapping[str, Any]) -> None:
    """Load a HuggingFace GPT2LMHeadModel state dict into model, in place.

    Conv1D weights are transposed, buffers are skipped, and a missing
    lm_head.weight is taken from transformer.wte.weight (the two are tied).

    Raises:
        KeyError: a parameter of model has no weight, or a weight has no parameter.
        ValueError: a weight's shape does not fit its parameter.
    """
    expected = {name: tuple(int(d) for d in p.shape) for name, p in model.parameters}
    state = {k: v for k, v in hf_state_dict.items() if not k.endswith(BUFFER_SUFFIXES)}
    if "lm_head.weight" not in state and "transformer.wte.weight" in state:
        state["lm_head.weight"] = state["transformer.wte.weight"]

    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise KeyError(
            f"state dict does not fit the model: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )

    weights = {}
    for name, shape in expected.items():
        array = np.asarray(state[name], dtype=np.float32)
        if name.endswith(CONV1D_SUFFIXES):
            array = array.T
        if array.shape != shape:
            raise ValueError(
                f"{name}: weight has shape {list(array.shape)}, the model expects {list(shape)}"
            )
        weights[name] = np.ascontiguousarray(array)
    model.load_state_dict(weights)


class LastPositionLogits(Module):
    """The model, returning only the last position's logits: [batch, 1, vocab_size].

    That row is all generation needs. It also keeps memory flat: MAX 25.7
    keeps every tensor a compiled call returns referenced until the process
    ends, so returning the full [batch, seq, vocab_size] logits at every
    step would cost the 124M model about 1 GB per hundred tokens.
    """

    def __init__(self, model: MaxGPT2LMHeadModel):
        self.model = model
        self.config = model.config

    def __call__(self, input_ids: Tensor) -> Tensor:
        return self.model(input_ids)[:, -1:, :]


def compile_model(model: MaxGPT2LMHeadModel) -> Callable[[Tensor], Tensor]:
    """Compile model once for any batch size and sequence length.

    The compiled model maps [batch, seq] token ids to the last position's
    logits, [batch, 1, vocab_size].
    """
    device = DeviceRef.from_device(model.lm_head.weight.device)
    token_type = TensorType(DType.int64, ("batch", "seqlen"), device=device)
    return LastPositionLogits(model).compile(token_type)


def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softmax(logits / temperature) over the last axis.

    Temperature < 1 sharpens the distribution, > 1 flattens it.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)  # avoid overflow in exp
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def as_token_array(input_ids: Any, model: Callable) -> np.ndarray:
    """Check input_ids and return them as a [batch, seq] int64 array."""
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"input_ids must have shape [batch, seq] with seq >= 1, got {list(ids.shape)}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"input_ids must be integer token ids, got dtype {ids.dtype}")
    config = getattr(model, "config", None)
    if config is not None:
        if ids.min() < 0 or ids.max() >= config.vocab_size:
            raise ValueError(f"token ids must be in [0, {config.vocab_size}), got {ids.min()} .. {ids.max()}")
        if ids.shape[1] > config.n_positions:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than n_positions={config.n_positions}")
    return np.ascontiguousarray(ids, dtype=np.int64)


def generate_next_token(
    model: Callable[[Tensor], Tensor],
    input_ids: Any,
    temperature: float = 1.0,
    do_sample: bool = True,
    *,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Choose the next token for each sequence in input_ids.

    Args:
        model: MaxGPT2LMHeadModel or its compiled form (token ids -> logits).
        input_ids: [batch, seq] token ids.
        temperature: Divides the logits before softmax when sampling (> 0).
        do_sample: Sample from the distribution; if False, take the argmax.
        rng: numpy random generator, for reproducible sampling.

    Returns:
        [batch] int64 array of next token ids.
    """
    ids = as_token_array(input_ids, model)
    logits = np.from_dlpack(model(Tensor.from_dlpack(ids)))
    next_logits = logits[:, -1, :]
    if not do_sample:
        return np.argmax(next_logits, axis=-1).astype(np.int64)
    probs = softmax_with_temperature(next_logits, temperature)
    rng = rng if rng is not None else np.random.default_rng()
    return np.array([rng.choice(len(p), p=p) for p in probs], dtype=np.int64)


def generate_tokens(
    model: Callable[[Tensor], Tensor],
    input_ids: Any,
    max_new_tokens: int = 10,
    temperature: float = 1.0,
    do_sample: bool = True,
    *,
    seed: int | None = None,
) -> np.ndarray:
    """Extend input_ids by max_new_tokens tokens, one at a time.

    Args:
        model: MaxGPT2LMHeadModel or its compiled form (token ids -> logits).
        input_ids: [batch, seq] token ids (the prompt).
        max_new_tokens: How many tokens to add.
        temperature: Sampling temperature (> 0), used when do_sample is True.
        do_sample: Sample (True) or take the most likely token (False).
        seed: Seed for sampling; the same seed gives the same tokens.

    Returns:
        [batch, seq + max_new_tokens] int64 array: the prompt and the new tokens.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if do_sample and temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    ids = as_token_array(input_ids, model)
    rng = np.random.default_rng(seed)
    for _ in range(max_new_tokens):
        next_token = generate_next_token(model, ids, temperature, do_sample, rng=rng)
        ids = np.concatenate([ids, next_token[:, None]], axis=1)
    return ids
