"""
Step 12: Text generation

GPT-2 writes one token at a time: run the model on the tokens so far, take
the logits of the LAST position (logits[:, -1, :], one row of 50257 scores
per sequence), choose a token, append it, repeat. There is no cache here:
every step runs the model over the whole sequence again, one token longer.

Loading weights (load_hf_weights). Parameter names already match
HuggingFace's state dict, with three differences to handle:
  - HuggingFace stores attn.c_attn, attn.c_proj, mlp.c_fc and mlp.c_proj as
    Conv1D with weights [in, out]; MAX's Linear wants [out, in]: transpose
    them (c_attn: [768, 2304] -> [2304, 768]). attn.c_proj is [768, 768]
    either way, so a shape check cannot catch a forgotten transpose there.
  - Some transformers versions keep buffers ending in .attn.bias and
    .attn.masked_bias in the state dict. They are not weights: skip them.
  - lm_head.weight is tied to transformer.wte.weight and may be missing:
    take it from wte (38,597,376 numbers copied into our own lm_head).
Raise KeyError when a parameter has no weight or a weight has no parameter,
and ValueError when a shape does not fit: model.load_state_dict does not
check shapes itself.

Compiling (compile_model, given). Called directly, a MAX module runs
eagerly and builds a new graph every call: seconds per call on a CPU.
model.compile(...) traces it once, for symbolic "batch" and "seqlen", and
the compiled model then takes milliseconds per call, for every length.
It returns only the last position's logits, [batch, 1, vocab_size]: all
that generation needs, so logits[:, -1, :] works on both forms.

Choosing the token happens in numpy: it is a little arithmetic on one row
of logits, numpy does it at once with no graph to build, and a seeded numpy
Generator makes it reproducible. Feed the model Tensor.from_dlpack(ids) and
read its output with np.from_dlpack(logits).

Greedy or sampling. Greedy decoding (do_sample=False) takes the argmax: the
same prompt always gives the same text, often repetitive. Sampling draws
the token at random from p = softmax(logits / T).

Temperature T rescales the logits BEFORE softmax:
  - T < 1 sharpens the distribution (towards greedy), T > 1 flattens it
    (more surprising tokens), T = 1 is the model's own distribution.
  - Divide the logits, not the probabilities: p / T renormalized is just p.
  - T must be > 0 (ValueError otherwise).
softmax_with_temperature works in float64 and subtracts each row's maximum
before exp: exp of a large logit overflows, and subtracting a constant from
a row does not change its softmax. float64 also keeps the sum of 50257
probabilities close enough to 1 for rng.choice, which checks it.

Seeds. generate_tokens makes ONE generator, rng = np.random.default_rng(seed),
and passes it to every generate_next_token call. The same seed, model and
prompt then give the same tokens; seed=None gives fresh randomness.

Tasks:
  1. load_hf_weights: filter buffers, tie lm_head, check names, transpose
     Conv1D weights, check shapes, load
  2. softmax_with_temperature
  3. generate_next_token: logits of the last position, argmax or sample
  4. generate_tokens: validate, make the rng, loop and concatenate

compile_model and as_token_array (input checks) are given; all imports
are given too.

Run: pixi run s12

Measure it: `python generate.py --no-cache --greedy --ignore-eos --max-new-tokens 64`
writes 64 tokens the way this lesson does (the whole sequence through the
model for every token; add --steps for your own step 12 and 13) and
prints tokens/s at the end; run it
again with --max-new-tokens 256 and see each token cost more as the text
grows (lesson 14 removes that cost).
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
    # TODO: Map each parameter name of the model to its shape as a tuple of ints
    # Hint: a dict comprehension over model.parameters (name, parameter pairs): each shape as a tuple of Python ints
    # (Parameter shapes are fixed numbers, so int() is fine here.)
    expected = None

    # TODO: Copy the state dict without the buffers
    # Hint: a dict comprehension that keeps every key not ending with one of BUFFER_SUFFIXES
    state = None

    # TODO: If lm_head.weight is missing, take the tied transformer.wte.weight
    # Hint: GPT-2 ties its head to wte: when the state has no lm_head.weight but has transformer.wte.weight, store the latter under the former's name
    pass

    # TODO: Find the names the model expects but the state lacks, and the reverse
    # Hint: set differences of the two key sets, in both directions, sorted so the message is stable
    missing = None
    unexpected = None
    if missing or unexpected:
        raise KeyError(
            f"state dict does not fit the model: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )

    weights = {}
    for name, shape in expected.items():
        # TODO: Read the weight as a float32 numpy array
        # Hint: np.asarray with dtype float32: torch tensors and numpy arrays alike become float32 numpy
        array = None

        # TODO: Transpose the Conv1D weights from [in, out] to [out, in]
        # Hint: the names ending with one of CONV1D_SUFFIXES hold [in, out] weights; a MAX Linear wants [out, in]
        pass

        # TODO: Raise ValueError if the shape does not fit the parameter
        # Hint: compare array.shape with the expected shape and raise ValueError naming the weight, both shapes as lists
        pass

        # TODO: Store a contiguous copy (a transpose is only a strided view)
        # Hint: np.ascontiguousarray makes a real copy in row-major order
        pass

    # TODO: Load all weights into the model
    # Hint: the module's own load_state_dict takes the whole name -> array dict
    pass


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
    # Given. An eager call builds and compiles a new graph every time (seconds
    # on a CPU); the compiled model runs in milliseconds. The named dimensions
    # "batch" and "seqlen" are symbolic: one compilation serves every shape.
    device = DeviceRef.from_device(model.lm_head.weight.device)
    token_type = TensorType(DType.int64, ("batch", "seqlen"), device=device)
    return LastPositionLogits(model).compile(token_type)


def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softmax(logits / temperature) over the last axis.

    Temperature < 1 sharpens the distribution, > 1 flattens it.
    """
    # TODO: Reject temperatures that are not positive
    # Hint: a temperature of 0 or below cannot divide the logits; raise ValueError saying what was given
    pass

    # TODO: Divide the logits (as float64) by the temperature, BEFORE softmax
    # Hint: turn the logits into a float64 numpy array, then divide by the temperature
    scaled = None

    # TODO: Subtract each row's maximum so exp cannot overflow
    # Hint: subtract the row maxima (max over the last axis, keepdims=True so it broadcasts)
    pass

    # TODO: Exponentiate and normalize over the last axis
    # Hint: np.exp, then divide by the sum over the last axis (keepdims=True)
    return None


def as_token_array(input_ids: Any, model: Callable) -> np.ndarray:
    """Check input_ids and return them as a [batch, seq] int64 array."""
    # Given: input checks, not the lesson.
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

    # TODO: Run the model and read its logits into numpy: [batch, seq, vocab_size]
    # Hint: wrap the ids with Tensor.from_dlpack, call the model, read the result back with np.from_dlpack
    logits = None

    # TODO: Keep only the last position's logits: [batch, vocab_size]
    # Hint: index the sequence axis with -1, keeping batch and vocabulary
    next_logits = None

    # TODO: Greedy decoding: return the most likely token of each row
    # Hint: when not sampling, return np.argmax over the last axis, as int64
    pass

    # TODO: Turn the logits into probabilities with the temperature
    # Hint: softmax_with_temperature (above) on the last position's logits
    probs = None

    # TODO: Use the given generator, or a fresh one if none was given
    # Hint: keep rng when one is given; otherwise np.random.default_rng() with no seed
    pass

    # TODO: Draw one token per row from its distribution
    # Hint: rng.choice over the vocabulary with p= the row's probabilities, one draw per row, as an int64 array
    return None


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
    # TODO: Validate the arguments before running the model
    # Hint: raise ValueError for a negative max_new_tokens, and for do_sample with a temperature <= 0
    pass

    # TODO: Check the prompt and turn it into a [batch, seq] int64 array
    # Hint: as_token_array (given above) checks the ids against the model and returns them as [batch, seq] int64
    ids = None

    # TODO: Make ONE random generator from the seed, for the whole loop
    # Hint: np.random.default_rng with the seed, once, before the loop
    rng = None

    # TODO: max_new_tokens times: choose the next token and append it as a new column
    # Hint: a for loop of max_new_tokens rounds: generate_next_token with rng=rng, then np.concatenate the [batch, 1] column onto ids along axis 1
    pass

    # TODO: Return the prompt followed by the new tokens
    # Hint: ids now holds the prompt and every new token
    return None
