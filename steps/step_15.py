"""
Step 15: Many sequences at once

Lesson 14's decode step runs one new token through the model. To do it,
it reads every weight once: 494.6 MB at 124M in float32 (the tied LM head
counted once). For one token of one sequence that read buys about 0.25
GFLOP (two FLOPs per weight, a multiply and an add): half a FLOP per byte.
A CPU core can do tens of FLOPs in the time it reads one byte, so the
step waits on memory, and the arithmetic units sit idle.

Run B sequences through the same step and the weights are still read
once: B times the FLOPs for the same bytes. On this course's 2-core
machine (rows of equal length, lesson 14's engine, one thread) a decode
step at batch 8 cost about 1.4 times a step at batch 1,
so eight sequences got almost six times the tokens per second. This is
how every inference server (vLLM, TGI, MAX's own) serves many users from
one copy of the weights.

What stops lesson 14 from doing it: its cache has ONE length for all rows.
Real requests have prompts of different lengths, and they finish at
different times. So this lesson gives the cache one length per row:

    keys, values  [n_layer, slot, n_head, capacity, head_dim]   float32
    lengths       [slot]   how many positions each slot holds
    in_use        [slot]   which slots hold a sequence

A slot is a row of the cache that one sequence owns until it finishes.
Slot 0 may hold 25 tokens while slot 1 holds 3: slot 1's positions 3, 4,
... are padding, or what a finished sequence left behind. Nothing there
may be read. That is the mask's job.

The mask. One call runs some rows (rows = which slots) on their new
tokens. The engine (tools/kv_engine.py, given) reads each of those slots'
first past_length positions, where past_length is the longest row's
length, so the scores are [rows, n_head, seq, past_length + seq], as in
lesson 14. Row b may see:
  - cached position j only if j < lengths[b] (a position it filled);
  - its own new tokens causally, as step 02's causal_mask(seq, past) says.
Step 02's mask already allows every cached position; add -inf where
lengths[b] <= j < past_length:

    lengths = [2, 0], past_length = 3, one new token:
                    keys:  c0   c1   c2   n0
        row 0 (2 cached):  0    0   -inf  0
        row 1 (0 cached): -inf -inf -inf  0

The mask comes from the lengths INSIDE the graph, so one compiled graph
serves any mix of lengths.

Positions: row b's new tokens sit at lengths[b], lengths[b]+1, ..., not
at past_length + i (that is the longest row's position, not this row's):
positions = lengths[:, None] + arange(seq), a [rows, seq] array of
position ids. wpe looks up [rows, seq] ids as it looked up [seq] ones.

Prefill: alone, into its slot. A new prompt runs through the model by
itself (rows = [its slot], length 0), and its keys and values land in
its slot; then it joins the others' decode steps. Why alone: a prefill
is already matrix-matrix work (its tokens share one read of the
weights), so batching prompts gains little, and prompts of different
lengths would need padding (work thrown away) or a ragged attention.
The cost: while a prompt is prefilled, the other rows wait for that
call (servers such as vLLM split long prompts into chunks and mix them
into decode steps to shorten the wait).

Continuous batching. When a row finishes (end-of-text or its token
budget), free its slot; the next waiting prompt takes it while the
others go on. The batch never waits for its slowest member.

Randomness: prompt i draws from its own generator,
np.random.default_rng(seed + i), so a prompt's tokens do not depend on
which other prompts share its batch: run alone with seed + i, it writes
the same tokens.

The memory bill: each cached token costs 2 (keys and values) x 12 layers
x 768 x 4 bytes = 73728 bytes = 72 KiB per row at 124M, so a cache of
8 slots x 512 positions is 288 MiB, and 8 x 1024 is 576 MiB, more than
the weights. Capacity x slots is what a server must budget for, plus a
step's working memory: this lesson's graph copies the rows' filled
windows out of the buffers (tools/kv_engine.py), up to twice the cache
again at the longest window (docs/serving.md, "Memory", measured). The
commands' decode steps read the buffers in place instead, with a Mojo op
(tools/decode_in_place.py), and copy nothing of the cache.

Shapes, with rows = the slots in a call, seq = new tokens per row:
    input_ids                 [rows, seq]
    past_keys, past_values    [n_layer, rows, n_head, past, head_dim]
    lengths                   [rows]
    mask                      [rows, 1, seq, past + seq]
    logits                    [rows, vocab_size]  (last position)

The classes subclass lesson 14's: parameters keep their names, so step
12's load_hf_weights fills them. Lesson 14's attention and block take the
mask as an optional last argument: pass yours.

Tasks:
  1. Import what your code uses (the first TODO)
  2. batched_causal_mask: step 02's mask plus -inf past each row's length
  3. BatchedGPT2Model: positions per row, the mask, the blocks
  4. BatchedGPT2LMHeadModel: logits of the last position
  5. BatchedKVCache: take and free a slot, append rows
  6. stream_batched: continuous batching, prefill alone, one decode call per step

Stuck on a TODO? `pixi run hint s15` (or `python hint.py s15`) shows a
hint for your first open TODO, one step at a time.

Run: pixi run s15

Measure it: `python bench.py --batch-sizes 1 2 4 8 16` ends with the
time of one decode step at each batch size, the decode tokens per second
it buys, and batch 1 against lesson 14's step (the whole benchmark takes
many minutes on 2 cores; `python bench.py --quick` runs it on a small
model in about a minute).
"""

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from max.experimental.tensor import Tensor
from max.graph import DimLike

from solutions.solution_01 import GPT2Config
from solutions.solution_13 import check_generation_settings
from solutions.solution_14 import CachedGPT2LMHeadModel, CachedGPT2Model

# TODO: Import what your code below uses (the lines above are given)
# Hint: from collections import deque
# Hint: from max.experimental import functional as F
# Hint: from solutions.solution_02 import causal_mask
# Hint: from solutions.solution_12 import as_token_array
# Hint: from solutions.solution_13 import choose_next_token


def batched_causal_mask(lengths: Tensor, past_length: DimLike, num_tokens: DimLike, *, dtype, device) -> Tensor:
    """lengths [batch]: how many of the past_length cached positions each row holds.

    Returns the additive mask [batch, 1, num_tokens, past_length + num_tokens]:
    step 02's causal mask, plus -inf where a cached position is past the row's length.
    """
    # TODO: Start from step 02's mask for num_tokens new tokens after past_length cached ones
    # Hint: causal_mask(sequence_length, num_tokens, ...) from step 02; here the new tokens are num_tokens
    # Hint: and the cached ones past_length. It is [seq, past+seq]: call it causal.
    causal = None

    # TODO: Which keys are unfilled for which row: cached (key < past_length) but at or past lengths[b]
    # Hint: Number the keys 0 .. past+seq-1 with Tensor.arange (causal.shape[-1] of them, lengths' dtype).
    # Hint: Compare [1, keys] with [batch, 1] (F.unsqueeze) to get a [batch, past+seq] boolean; combine the two
    # Hint: conditions with &. A key index can be compared with past_length directly.
    unfilled = None

    # TODO: -inf where unfilled, 0 elsewhere, added to causal as [batch, 1, seq, past+seq]
    # Hint: F.where(condition, blocked, allowed) with two Tensor.constant scalars, as step 02 does.
    # Hint: Insert the head and query axes at 1 (F.unsqueeze twice) so it broadcasts against causal.
    return None


class BatchedGPT2Model(CachedGPT2Model):
    """Lesson 14's cached model for rows that hold different numbers of tokens."""

    def __call__(self, input_ids: Tensor, past_keys: Tensor, past_values: Tensor, lengths: Tensor):
        """input_ids [batch, seq]; past_keys, past_values [n_layer, batch, n_head, past, head_dim];
        lengths [batch]: row b's cache holds its first lengths[b] positions.

        Returns hidden states [batch, seq, n_embd] and the new tokens' keys
        and values, [n_layer, batch, n_head, seq, head_dim] each.
        """
        # TODO: Positions: row b's new tokens sit at lengths[b], lengths[b]+1, ...
        # Hint: past_length and seq_length as in lesson 14; Tensor.arange(seq_length) gives the steps 0, 1, ...
        # Hint: lengths as a column [batch, 1] plus the steps as a row [1, seq] -> positions [batch, seq].
        positions = None

        # TODO: Token plus position embeddings, and the mask for these rows
        # Hint: wte and wpe as in lesson 14 (wpe looks up a [batch, seq] array of ids just as well).
        # Hint: batched_causal_mask(lengths, past_length, seq_length, ...) with the hidden states' dtype.
        hidden_states, mask = None, None

        # TODO: Each block gets its layer's cache and the mask; collect the new keys and values
        # Hint: Lesson 14's loop over self.h, with the mask as the block's last argument.
        # Hint: Return ln_f of the hidden states and the keys and values stacked over the layers (F.stack).
        return None


class BatchedGPT2LMHeadModel(CachedGPT2LMHeadModel):
    """GPT-2 over a cache with one length per row: next-token logits, new keys and values."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = BatchedGPT2Model(config)

    def __call__(self, input_ids: Tensor, past_keys: Tensor, past_values: Tensor, lengths: Tensor):
        """Returns logits [batch, vocab_size] of the last new token, keys, values."""
        # TODO: The transformer with the lengths, then the LM head on the last position only
        # Hint: As lesson 14's CachedGPT2LMHeadModel, passing lengths on to the transformer.
        return None


class BatchedKVCache:
    """Room for max_batch_size sequences (slots) of up to capacity tokens, one length per slot."""

    def __init__(self, config: GPT2Config, max_batch_size: int, capacity: int):
        # TODO: The buffers as in lesson 14 with a slot axis, one length and one in-use flag per slot
        # Hint: keys and values: float32 zeros [n_layer, max_batch_size, n_head, capacity, head_dim].
        # Hint: lengths: int64 zeros, one per slot. in_use: bool zeros, one per slot.
        self.keys = None
        self.values = None
        self.lengths = None
        self.in_use = None

    def take(self) -> int:
        """A free slot, now in use and empty."""
        # TODO: Find the first slot not in use (raise RuntimeError when there is none), mark it, empty it
        # Hint: np.flatnonzero(~self.in_use) lists the free slots; return a plain int.
        return None

    def free(self, slot: int) -> None:
        """The slot's sequence is done; its positions are never read again (the mask hides them)."""
        # TODO: Not in use, and length 0 (no need to zero the buffers: why?)
        pass

    def append(self, keys: np.ndarray, values: np.ndarray, rows: Sequence[int]) -> None:
        """keys/values [n_layer, len(rows), n_head, seq, head_dim]: row i's go to slot rows[i], after its own."""
        # TODO: For each row i and its slot: write at that slot's own length, then advance that length
        # Hint: Lesson 14's append, once per row: keys[:, i] goes to self.keys[:, slot, :, start : start + seq].
        pass


def run_rows(model, cache: BatchedKVCache, input_ids: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """One model call for the new tokens [len(rows), seq] of the given slots;
    their keys and values go into the cache. Returns logits [len(rows), vocab]."""
    # TODO: Call the model on (input_ids, cache, rows), append what it returns for those rows, return the logits
    # Hint: The model returns (logits, keys, values), as lesson 14's did.
    return None


def stream_batched(
    model,
    prompts: Sequence[Any],
    max_new_tokens: int = 10,
    temperature: float = 1.0,
    do_sample: bool = True,
    *,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    seed: int | None = None,
    max_batch_size: int = 8,
) -> Iterator[tuple[int, int]]:
    """Continuous batching: yields (prompt index, new token) as each token is chosen.

    model: a compiled batched model, (input_ids, cache, rows) -> (logits, keys, values).
    Prompt i draws from its own generator, np.random.default_rng(seed + i), so
    its tokens do not depend on the other prompts.
    """
    # Given: bad settings stop here, before any model call (step 13).
    check_generation_settings(max_new_tokens, temperature, do_sample, top_k, top_p)
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")

    # TODO: Each prompt as a 1-D int64 array; refuse the longest prompt plus new tokens beyond n_positions
    # Hint: as_token_array checks a [1, seq] array (np.reshape(prompt, (1, -1))); keep its row 0.
    # Hint: Raise ValueError naming both counts, as lesson 14 does.
    prompts, longest = None, None

    # TODO: One generator per prompt, a cache with a slot per running sequence, the queue of waiting prompts
    # Hint: np.random.default_rng(seed + i), or default_rng(None) when seed is None.
    # Hint: No more slots than prompts (at least one); capacity: the longest prompt plus max_new_tokens.
    # Hint: deque(range(len(prompts))) waits; running maps slot -> prompt index; made counts new tokens.
    rngs, cache, waiting, running, made, logits = None, None, None, None, None, None

    # TODO: The loop, while prompts wait or rows run: fill free slots (prefill each waiting prompt
    #       alone with run_rows), choose one token per running row with its own generator and yield it,
    #       free the finished rows, then one decode call for all the rows that go on
    # Hint: A prefill: slot = cache.take(), then run_rows on the prompt as [1, seq] with rows [slot].
    # Hint: choose_next_token(logits[None, :], ...) for one row, with all the settings and rng=rngs[index].
    # Hint: A row is finished at eos_token_id or after max_new_tokens; cache.free(slot) hands its slot on.
    # Hint: The rows that go on: their tokens as [rows, 1] in one run_rows call; keep each row's logits.
    pass


def generate_batched(model, prompts: Sequence[Any], max_new_tokens: int = 10, temperature: float = 1.0,
                     do_sample: bool = True, **options) -> list[np.ndarray]:
    """Each prompt followed by its new tokens (a list: the prompts may differ in length)."""
    # TODO: Start each output with its prompt, add every (index, token) that stream_batched yields
    # Hint: One list per prompt; return them as int64 arrays.
    return None
