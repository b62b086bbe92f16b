"""
Step 13: Top-k and top-p (nucleus) sampling

Sampling from softmax(logits / T) (step 12) gives every one of the 50257
tokens a chance. Most of them are absurd continuations, and although each
is unlikely, together they are not: now and then a draw lands in that long
tail, and one wrong token can derail the rest of the text. Most text
generators therefore cut the tail off before they sample.

Top-k keeps the k most likely tokens of each row and sets every other logit
to -inf, so softmax gives it probability exactly 0:

    logits   [2.0, 1.0, 3.0, 0.5, 1.0]     top_k=3
    kept     [2.0, 1.0, 3.0, -inf, 1.0]    the 3rd largest is 1.0; both 1.0s stay

A logit equal to the k-th largest stays too (HuggingFace's rule), so with
ties more than k tokens can stay. A top_k larger than the vocabulary keeps
everything. Compare each logit with the k-th largest value:
np.sort(logits, axis=-1)[..., -k] (np.sort sorts ascending).

Top-p ("nucleus" sampling) adapts to the distribution instead: it keeps the
smallest set of most likely tokens whose probabilities add up to at least
top_p. When the model is sure, that is one or two tokens; when it is
unsure, many. HuggingFace's rule, which this lesson follows step by step
(it keeps the same set of tokens; HuggingFace computes in float32 and this
lesson in float64, so the probabilities agree only up to float32 rounding,
and a running sum that lands right on 1 - top_p may fall either side):
  1. sort each row's logits ascending (np.argsort(logits, axis=-1), least
     likely first) and take softmax of the sorted row;
  2. running sum: np.cumsum(sorted_probs, axis=-1);
  3. drop every token whose running sum is <= 1 - top_p. The least likely
     tokens, together holding at most 1 - top_p of the probability, go; the
     token that crosses the line stays;
  4. the most likely token (the last in ascending order) always stays;
  5. put the drop marks back into vocabulary order (np.put_along_axis with
     the same order) and set the dropped logits to -inf.

    probs    [0.5, 0.3, 0.15, 0.05]       top_p=0.75
    sorted   [0.05, 0.15, 0.3, 0.5]       running sum [0.05, 0.2, 0.5, 1.0]
    dropped  0.05 and 0.15 (sums 0.05 and 0.2 are <= 0.25); kept 0.5 and 0.3

top_p=1.0 drops nothing. Use a stable sort (kind="stable"): equal logits
then keep their index order. (HuggingFace sorts with torch.sort, whose
order among equal logits is arbitrary; equal logits have equal
probabilities, so the distribution is the same either way.)

The order matters. HuggingFace applies temperature first, then top-k, then
top-p. Top-k does not care about the temperature (dividing by T > 0 keeps
the order of the logits), but top-p does: at T = 2 the distribution is
flatter and more tokens are needed to reach top_p. warp_logits applies the
three in that order; probabilities are softmax(warped logits) (step 12's
softmax_with_temperature with T = 1.0; exp(-inf) is 0).

End of text. GPT-2 marks the end of a document with the token
<|endoftext|> (id 50256). generate_tokens stops a sequence there: once a
sequence has produced eos_token_id it is finished, and it gets
eos_token_id as padding while the other sequences of the batch go on;
generation stops early when every sequence is finished. HuggingFace's
generate() does exactly this with pad_token_id = eos_token_id.

Shapes: logits [batch, vocab_size] in, the same shape out (float64, -inf
where dropped). generate_tokens returns [batch, prompt + n] with
n <= max_new_tokens.

Tasks:
  1. Import what your code uses (the first TODO)
  2. top_k_filter: the k-th largest of each row, -inf below it
  3. top_p_filter: HuggingFace's rule above
  4. warp_logits: temperature, then top-k, then top-p
  5. choose_next_token: argmax, or a draw from softmax(warp_logits(...));
     generate_next_token runs the model and calls it (step 14 reuses it)
  6. pad_finished and generate_tokens: the loop of step 12, with the
     end-of-text stop

Run: pixi run s13

Measure it: `python plot_sampling.py --top-k 10 --top-p 0.8` draws one
next-token distribution at three temperatures with the top-k and top-p
cuts marked (sampling.png): count how many tokens top-p keeps at each
temperature, while top-k keeps 10.
"""

from typing import Any

import numpy as np

# TODO: Import what your code below uses (the lines above are given)
# Hint: from max.experimental.tensor import Tensor
# Hint: from solutions.solution_12 import as_token_array, softmax_with_temperature


def top_k_filter(logits: np.ndarray, top_k: int) -> np.ndarray:
    """Keep the top_k largest logits of each row, and any tied with the k-th; -inf elsewhere."""
    # TODO: Refuse a top_k below 1
    # Hint: raise ValueError when top_k is below 1, saying what was given
    pass

    # TODO: Work on float64 logits
    # Hint: np.asarray with dtype float64
    logits = None

    # TODO: A top_k larger than the vocabulary keeps every token
    # Hint: the smaller of top_k and the vocabulary size (the last axis of logits)
    k = None

    # TODO: The k-th largest logit of each row, as a column: [batch, 1]
    # Hint: np.sort sorts ascending, so the k-th largest is at index -k of the last axis; keep that axis (None) so it broadcasts
    kth_largest = None

    # TODO: Set every logit below it to -inf
    # Hint: np.where: -inf where a logit is strictly below the k-th largest, the logit itself elsewhere
    return None


def top_p_filter(logits: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the most likely tokens until their probabilities add up to top_p; -inf elsewhere."""
    # TODO: Refuse a top_p outside (0, 1]
    # Hint: raise ValueError unless 0 < top_p <= 1, saying what was given
    pass

    # TODO: Work on float64 logits
    # Hint: np.asarray with dtype float64
    logits = None

    # TODO: Sort each row ascending (least likely first), keeping equal logits in index order
    # Hint: np.argsort over the last axis with kind="stable" gives the order, least likely first
    order = None

    # TODO: Probabilities of the sorted logits, and their running sum
    # Hint: gather the logits in that order (np.take_along_axis), softmax them at temperature 1.0, then np.cumsum over the last axis
    sorted_probs = None
    cumulative = None

    # TODO: Drop the tokens whose running sum is <= 1 - top_p, but never the most likely one
    # Hint: a boolean array: running sum <= 1 - top_p; then set its last column (the most likely token) to False
    drop_sorted = None

    # TODO: Put the drop marks back into vocabulary order
    # Hint: np.empty_like, then np.put_along_axis with the same order scatters each mark to its token's index
    drop = None

    # TODO: Set the dropped logits to -inf
    # Hint: np.where: -inf where dropped, the logit elsewhere
    return None


def warp_logits(
    logits: np.ndarray,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> np.ndarray:
    """Temperature, then top-k, then top-p, as HuggingFace applies them."""
    # TODO: Refuse a temperature that is not > 0 (`not temperature > 0` also catches NaN)
    # Hint: `not temperature > 0` is True for 0, negatives and NaN; raise ValueError then
    pass

    # TODO: Temperature first
    # Hint: float64 logits divided by the temperature
    scores = None

    # TODO: Then top-k, then top-p, each only when it is set
    # Hint: top_k_filter when top_k is not None, then top_p_filter when top_p is not None, each on scores
    pass

    # TODO: Return the warped logits
    # Hint: scores now holds the warped logits
    return None


def check_generation_settings(
    max_new_tokens: int, temperature: float, do_sample: bool, top_k: int | None, top_p: float | None
) -> None:
    """Refuse bad settings with a ValueError before the model runs (given)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if do_sample:
        warp_logits(np.zeros((1, 1)), temperature, top_k, top_p)  # checks temperature, top_k, top_p


def choose_next_token(
    next_logits: np.ndarray,
    temperature: float = 1.0,
    do_sample: bool = True,
    *,
    top_k: int | None = None,
    top_p: float | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One token per row of next_logits [batch, vocab]: argmax, or a draw from the warped distribution."""
    # TODO: Greedy decoding ignores temperature, top_k and top_p
    # Hint: when not sampling, return np.argmax over the last axis, as int64
    pass

    # TODO: Probabilities of the warped logits (the temperature is already applied: use 1.0)
    # Hint: warp_logits (temperature, top-k, top-p), then softmax_with_temperature with 1.0 since the temperature is applied already
    probs = None

    # TODO: Draw one token per row, with the given generator or a fresh one
    # Hint: as in step 12: keep the given rng or make np.random.default_rng(), then one rng.choice per row with p= its probabilities, as int64
    return None


def generate_next_token(
    model,
    input_ids: Any,
    temperature: float = 1.0,
    do_sample: bool = True,
    *,
    top_k: int | None = None,
    top_p: float | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Choose the next token of each sequence from the model's last-position logits."""
    # TODO: As in step 12: check the ids and run the model
    # Hint: as_token_array on the ids, then the model through Tensor.from_dlpack and back through np.from_dlpack
    logits = None

    # TODO: Choose from the last position's logits
    # Hint: choose_next_token (above) on the last position, passing every option on
    return None


def pad_finished(next_token: np.ndarray, finished: np.ndarray, eos_token_id: int | None):
    """Finished sequences get eos_token_id as padding; a sequence that produces
    it is finished from now on. Returns (tokens, finished)."""
    # TODO: Without an end-of-text token nothing changes
    # Hint: when eos_token_id is None, return next_token and finished unchanged
    pass

    # TODO: Pad the finished sequences, then mark the ones that produced eos_token_id
    # Hint: np.where puts eos_token_id in the finished rows; a row is finished if it was, or if its token is eos_token_id
    pass


def generate_tokens(
    model,
    input_ids: Any,
    max_new_tokens: int = 10,
    temperature: float = 1.0,
    do_sample: bool = True,
    *,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Extend input_ids by up to max_new_tokens tokens, stopping sequences at eos_token_id.

    Returns:
        [batch, seq + n] int64 array, n <= max_new_tokens.
    """
    # Given: bad settings stop here, before any model call.
    check_generation_settings(max_new_tokens, temperature, do_sample, top_k, top_p)

    # TODO: The prompt as ids, ONE generator, and no sequence finished yet
    # Hint: as_token_array on the prompt, one numpy default_rng from the seed, and a boolean np.zeros with one flag per row
    ids = None

    # TODO: Loop: choose the next tokens, pad the finished sequences, append,
    #       and stop when every sequence is finished
    # Hint: max_new_tokens rounds: generate_next_token with all options, pad_finished, np.concatenate the column onto ids, break when finished.all()
    pass

    # TODO: Return the prompt followed by the new tokens
    # Hint: ids holds the prompt and the new tokens
    return None
