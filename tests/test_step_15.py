"""Step 15: many sequences at once, each row against HuggingFace on that
row's prompt alone.

The cache is checked with plain numpy (which slot gets what, where). The
mask is compiled on its own and compared with its definition. The model
runs through tools/kv_engine.py's batched engine: prompts of different
lengths, each prefilled alone into its slot, then decoded together, and a
new prompt joining a freed slot midway; at every step each row's logits
must equal HuggingFace GPT2LMHeadModel's on that row's tokens alone, with
its own cache. Known mistakes are replayed by torch_rows, one batched step
written out in torch from the same weights and the same cache contents.
The loop must give each prompt HuggingFace generate()'s greedy tokens, and
with a seed the tokens of that prompt run alone.
"""

import math

import numpy as np
import torch

from tests.loading import construct, fail
from tests.parity import assert_close
from tests.test_step_14 import huggingface_steps
from tests.twins import FULL_CONFIG, SMALL_CONFIGS, cases, hf_generate, lm_twins

STEP = 15
SLOTS = 3


# --- the cache -------------------------------------------------------------------


def test_cache_has_one_length_per_slot(lesson):
    config = cases(SMALL_CONFIGS)[0].max
    cache = construct(lesson, "BatchedKVCache", config, SLOTS, 12)
    shape = (config.n_layer, SLOTS, config.n_head, 12, config.n_embd // config.n_head)
    for name in ("keys", "values"):
        buffer = getattr(cache, name)
        if not isinstance(buffer, np.ndarray) or buffer.shape != shape or buffer.dtype != np.float32:
            fail(f"BatchedKVCache(config, {SLOTS}, 12).{name} must be a float32 numpy array of shape {list(shape)} "
                 f"[n_layer, slot, n_head, capacity, head_dim]; got {getattr(buffer, 'shape', type(buffer).__name__)}.")
    if np.shape(cache.lengths) != (SLOTS,) or np.any(cache.lengths != 0):
        fail(f"a new BatchedKVCache has lengths {np.asarray(cache.lengths).tolist()}: one per slot, all 0.")
    slots = [lesson.call("cache.take()", cache.take) for _ in range(SLOTS)]
    if sorted(slots) != list(range(SLOTS)):
        fail(f"three calls of take() on a cache of {SLOTS} slots gave {slots}: each must return a different free slot.")
    rng = np.random.default_rng(15)
    want_keys, want_values = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    lengths = np.zeros(SLOTS, np.int64)
    for rows, seq in (([1], 5), ([0], 2), ([0, 1], 1), ([2, 0], 1), ([1, 2, 0], 1)):
        keys = rng.normal(size=(shape[0], len(rows), shape[2], seq, shape[4])).astype(np.float32)
        values = rng.normal(size=keys.shape).astype(np.float32)
        doing = f"cache.append(keys, values, rows={rows}) with {seq} new token(s) per row, lengths {lengths.tolist()}"
        with lesson.learner_code(doing):
            cache.append(keys, values, rows)
        for i, slot in enumerate(rows):
            want_keys[:, slot, :, lengths[slot] : lengths[slot] + seq] = keys[:, i]
            want_values[:, slot, :, lengths[slot] : lengths[slot] + seq] = values[:, i]
            lengths[slot] += seq
        got = np.asarray(cache.lengths)
        if not np.array_equal(got, lengths):
            cause = ("every slot's length is advanced, not only those of the rows given" if np.all(got != 0)
                     and not np.array_equal(got, lengths) and len(set(got.tolist())) == 1 else
                     "advance lengths[slot] by the new tokens' count for each slot in rows, and only those")
            fail(f"after {doing}, cache.lengths is {got.tolist()}, not {lengths.tolist()}.\nLikely cause: {cause}.")
        for name, buffer, want in (("keys", cache.keys, want_keys), ("values", cache.values, want_values)):
            if np.shape(buffer) != shape:
                fail(f"after {doing}, cache.{name} has shape {list(np.shape(buffer))}, not {list(shape)}: "
                     "write the new tokens into the buffers in place, never replace them.")
            if not np.array_equal(buffer, want):
                layer, slot, head, position, _ = np.argwhere(buffer != want)[0]
                fail(f"after {doing}, cache.{name} is wrong in slot {slot} at position {position}: row i of the "
                     "new tokens goes to slot rows[i], at that slot's own length (lengths[rows[i]]), after the "
                     "tokens it already holds; other slots stay as they were.\n"
                     + ("Likely cause: row i is written to slot i; write it to slot rows[i]."
                        if np.array_equal(buffer[:, :len(rows)], want[:, rows]) else ""))
    with lesson.learner_code("cache.free(1)"):
        cache.free(1)
    if cache.lengths[1] != 0 or bool(cache.in_use[1]):
        fail(f"after free(1), slot 1 has length {cache.lengths[1]} and in_use {bool(cache.in_use[1])}: "
             "a freed slot is empty (length 0) and free again.")
    slot = lesson.call("cache.take() after free(1)", cache.take)
    if slot != 1:
        fail(f"with slots 0 and 2 in use and slot 1 freed, take() returned {slot}: it must hand out the free slot, 1.")


# --- the mask --------------------------------------------------------------------


def mask_definition(lengths, past, seq, *, padding=True, causal=True, new_blocked=False):
    """[batch, 1, seq, past+seq]: key j is visible to new token q of row b when
    j < lengths[b] (a filled cached position) or past <= j <= past + q."""
    keys, queries = np.arange(past + seq)[None, None, :], np.arange(seq)[None, :, None]
    cached = keys < (np.asarray(lengths)[:, None, None] if padding else past)
    new = (keys >= past) & ((keys - past <= queries) if causal else True) & (not new_blocked)
    visible = np.broadcast_to(cached | new, (len(lengths), seq, past + seq))
    return np.where(visible, 0.0, -np.inf)[:, None]


def test_mask_from_the_lengths(lesson):
    from max.dtype import DType
    from max.graph import DeviceRef, TensorType
    from max.nn.module_v3 import Module

    batched_causal_mask = lesson.get("batched_causal_mask")

    class Probe(Module):
        def __call__(self, lengths, window, new):
            return batched_causal_mask(lengths, window.shape[0], new.shape[0], dtype=DType.float32,
                                       device=lengths.device)

    cpu = DeviceRef.CPU()
    types = [TensorType(DType.int64, ["batch"], device=cpu), TensorType(DType.float32, ["past"], device=cpu),
             TensorType(DType.float32, ["seq"], device=cpu)]
    with lesson.learner_code("compiling batched_causal_mask(lengths, past_length, num_tokens)"):
        compiled = Probe().compile(*types)
    from max.experimental.tensor import Tensor

    for lengths, past, seq in (([2, 0, 4], 4, 3), ([3, 5], 5, 1), ([0], 0, 4)):
        doing = f"batched_causal_mask(lengths={lengths}, past_length={past}, num_tokens={seq})"
        with lesson.learner_code(doing):
            got = np.from_dlpack(compiled(Tensor.from_dlpack(np.array(lengths, np.int64)),
                                          Tensor.from_dlpack(np.zeros(past, np.float32)),
                                          Tensor.from_dlpack(np.zeros(seq, np.float32)))).copy()
        want = mask_definition(lengths, past, seq)
        mistakes = {
            "the lengths are not used: a cached position past a row's length (padding, or what a finished "
            "sequence left behind) must be -inf for that row.": lambda: mask_definition(lengths, past, seq, padding=False),
            "the new tokens are not causal among themselves: add step 02's causal_mask(num_tokens, past_length).":
                lambda: mask_definition(lengths, past, seq, causal=False),
            "the padding mask also hides the new tokens: only cached positions (key < past_length) can be "
            "past a row's length.": lambda: mask_definition(lengths, past, seq, new_blocked=True),
        }
        assert_close(doing, got, want, ("row", "head", "new token", "key"), mistakes,
                     reference="the mask's definition", margins=lesson.margins)


# --- the model, row by row ---------------------------------------------------------


def torch_rows(hf, window_keys, window_values, lengths, ids, *, positions="own", padding=True):
    """One batched step in torch with hf's weights: window_keys/values [n_layer,
    rows, n_head, past, head_dim] as the cache holds them, lengths [rows], ids
    [rows, seq] -> logits [rows, vocab] of the last new token. Options replay
    mistakes: positions "window" (every row from the longest row's length)
    or "zero", the padding left visible."""
    t, n_head = hf.transformer, hf.config.n_head
    rows, seq = ids.shape
    past = window_keys.shape[3]
    start = {"own": torch.tensor(lengths)[:, None], "window": past, "zero": 0}[positions]
    keys_at, query_at = torch.arange(past + seq)[None, None, :], torch.arange(seq)[None, :, None]
    visible = (keys_at < (torch.tensor(lengths)[:, None, None] if padding else past)) | (
        (keys_at >= past) & (keys_at - past <= query_at))
    with torch.no_grad():
        x = t.wte(torch.from_numpy(ids)) + t.wpe(start + torch.arange(seq)[None, :])
        for layer, block in enumerate(t.h):
            q, k, v = block.attn.c_attn(block.ln_1(x)).split(hf.config.n_embd, dim=2)
            q, k, v = (z.view(rows, seq, n_head, -1).transpose(1, 2) for z in (q, k, v))
            keys = torch.cat([torch.from_numpy(window_keys[layer]), k], 2)
            values = torch.cat([torch.from_numpy(window_values[layer]), v], 2)
            scores = (q @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~visible[:, None], float("-inf"))
            mixed = (torch.softmax(scores, -1) @ values).transpose(1, 2).reshape(rows, seq, -1)
            x = x + block.attn.c_proj(mixed)
            x = x + block.mlp(block.ln_2(x))
        return hf.lm_head(t.ln_f(x))[:, -1].double().numpy()


def row_mistakes(hf, cache, ids, rows):
    lengths = cache.lengths[rows].tolist()
    past = max(lengths)
    window = [buffer[:, rows, :, :past] for buffer in (cache.keys, cache.values)]

    def replay(**mistake):
        return lambda: torch_rows(hf, *window, lengths, ids, **mistake)

    return {
        "every row's positions start at the longest row's length (lesson 14's arange(past_length, ...)): "
        "row b's new tokens sit at lengths[b], lengths[b]+1, ...": replay(positions="window"),
        "the positions start at 0: row b's new tokens sit at lengths[b], lengths[b]+1, ...": replay(positions="zero"),
        "the mask ignores the lengths: a row sees the cached positions past its own length (another row's "
        "padding, or what a finished sequence left in its slot); pass batched_causal_mask to every block.":
            replay(padding=False),
    }


# Prompt lengths of the rows, decode steps, and after how many of them the
# middle row is done and a new prompt (of JOINER tokens) takes its slot.
PROMPTS, DECODE_STEPS, JOIN_AFTER, JOINER = (1, 7, 20), 4, 2, 4


def check_rows(lesson, case, seed, model_class="BatchedGPT2LMHeadModel", compile_model=None):
    """Three prompts prefilled alone into their slots, then decoded together;
    after JOIN_AFTER steps the middle one is freed and a new prompt takes its
    slot. Every row's logits at every step equal HuggingFace on that row alone.
    Returns the HuggingFace twin and the compiled model. Lesson 16 passes its
    own model class and compile_model (tools/kv_engine.py's kernel engine)."""
    from solutions.solution_15 import BatchedKVCache
    from tools.kv_engine import compile_batched_model

    model = construct(lesson, model_class, case.max)
    hf, model = lm_twins(case, seed, model, f"{model_class} [{case.label}]")
    with lesson.learner_code(f"compiling {model_class} with tools/kv_engine.py"):
        compiled = (compile_model or compile_batched_model)(model)
    rng = np.random.default_rng(seed)
    cache = BatchedKVCache(case.max, SLOTS, max(PROMPTS) + DECODE_STEPS)
    fed = {}  # slot -> the chunks fed to it so far: its prompt, then one token per step

    def run(rows, ids, stage):
        doing = (f"{model_class} [{case.label}], {stage}: rows {rows} holding "
                 f"{cache.lengths[rows].tolist()} tokens, {ids.shape[1]} new each")
        mistakes = row_mistakes(hf, cache, ids, rows)
        with lesson.learner_code(doing):
            logits, keys, values = compiled(ids, cache, rows)
        cache.append(keys, values, rows)
        expected = np.stack([huggingface_steps(hf, fed[slot])[-1][0] for slot in rows])
        assert_close(doing + ": next-token logits, each row against HuggingFace on that row alone",
                     logits, expected, ("row", "token"), mistakes, margins=lesson.margins)

    def prefill(n, stage):
        slot = cache.take()
        fed[slot] = [rng.integers(0, case.max.vocab_size, (1, n))]
        run([slot], fed[slot][0], stage)

    for n in PROMPTS:
        prefill(n, f"prefill of a {n}-token prompt alone")
    for step in range(1, DECODE_STEPS + 1):
        if step == JOIN_AFTER + 1:
            cache.free(1)  # the middle sequence is done: a new prompt takes its slot
            del fed[1]
            prefill(JOINER, f"a {JOINER}-token prompt joining freed slot 1")
        rows = sorted(fed)
        new = rng.integers(0, case.max.vocab_size, (len(rows), 1))
        for i, slot in enumerate(rows):
            fed[slot].append(new[i : i + 1])
        run(rows, new, f"decode step {step}")
    return hf, compiled


def test_every_row_matches_huggingface_alone(lesson):
    for case in cases(SMALL_CONFIGS):
        check_rows(lesson, case, seed=15)


# --- the loop --------------------------------------------------------------------


class WatchedRows:
    """The compiled batched model, watched call by call: a prompt is prefilled
    alone into an empty slot; after that every call feeds one token per row
    and finds in each row's slot every token fed to it before, once."""

    def __init__(self, compiled):
        self.compiled, self.config = compiled, compiled.config
        self.doing, self.fed = "", {}

    def watch(self, doing: str) -> "WatchedRows":
        self.doing, self.fed = doing, {}
        return self

    def __call__(self, input_ids, cache, rows):
        rows, seq = [int(r) for r in np.reshape(rows, -1)], np.shape(input_ids)[-1]
        lengths = np.asarray(cache.lengths)[rows].tolist()
        if len(rows) == 1 and lengths[0] == 0:  # a prefill
            self.fed[rows[0]] = 0
        elif seq != 1:
            fail(f"{self.doing}: the model was fed {seq} tokens for rows {rows}, which hold {lengths} tokens.\n"
                 "Likely cause: the whole sequence is fed again. A prompt is prefilled once, alone into its "
                 "slot; after that each call feeds one new token per row.")
        for row, length in zip(rows, lengths):
            if length != self.fed.get(row, 0):
                cause = ("cache.append is called more than once per call" if length > self.fed.get(row, 0)
                         else "the new keys and values are not appended after every call")
                fail(f"{self.doing}: slot {row} holds {length} positions, but {self.fed.get(row, 0)} tokens had "
                     f"been fed to it.\nLikely cause: {cause}: append what each call returns, once (run_rows).")
        for row in rows:
            self.fed[row] = self.fed.get(row, 0) + seq
        return self.compiled(input_ids, cache, rows)


def compiled_rows(lesson, case, seed):
    from tools.kv_engine import compile_batched_model

    hf, model = lm_twins(case, seed, construct(lesson, "BatchedGPT2LMHeadModel", case.max))
    with lesson.learner_code("compiling BatchedGPT2LMHeadModel with tools/kv_engine.py"):
        return hf, compile_batched_model(model)


def expect_each_alone(doing, tokens, prompts, expected, reference, eos=None):
    tokens = [np.asarray(t) for t in tokens] if isinstance(tokens, (list, tuple)) else None
    if tokens is None or len(tokens) != len(prompts):
        fail(f"{doing} must return a list with one array per prompt ({len(prompts)}), got {type(tokens).__name__}.")
    for i, (got, want) in enumerate(zip(tokens, expected)):
        if not np.array_equal(got, want):
            ran_on = eos is not None and want[-1] == eos and len(got) > len(want) and np.array_equal(got[:len(want)], want)
            fail(f"{doing}: prompt {i} ({len(prompts[i])} tokens) differs from {reference}:\n"
                 f"  yours {got.tolist()}\n  {reference.split()[0]} {want.tolist()}"
                 + ("\nLikely cause: a row that writes eos_token_id goes on; it is finished there: free its slot."
                    if ran_on else ""))


def test_generation_in_batches_matches_each_prompt_alone(lesson):
    """Four prompts of different lengths through two slots: greedy tokens as
    HuggingFace generate() on each prompt alone, with and without a stop at
    end-of-text; a seed gives each prompt the tokens it gets alone."""
    from solutions.solution_15 import generate_batched as reference_loop

    generate_batched = lesson.get("generate_batched")
    case = cases(SMALL_CONFIGS)[0]
    hf, compiled = compiled_rows(lesson, case, seed=16)
    watched = WatchedRows(compiled)
    rng = np.random.default_rng(16)
    prompts = [rng.integers(0, case.max.vocab_size, n) for n in (5, 1, 9, 3)]
    free = [hf_generate(hf, p[None], 10, do_sample=False)[0] for p in prompts]
    eos = int(free[1][1 + 3])  # prompt 1 stops after 4 new tokens; the others (most likely) go on
    for options in ({}, {"eos_token_id": eos}):
        doing = (f"generate_batched(model, 4 prompts, 10, do_sample=False, max_batch_size=2"
                 f"{''.join(f', {k}={v}' for k, v in options.items())})")
        tokens = lesson.call(doing, generate_batched, watched.watch(doing), prompts, 10, 1.0, False,
                             max_batch_size=2, **options)
        stop = {"eos_token_id": eos, "pad_token_id": eos} if options else {}
        expected = [hf_generate(hf, p[None], 10, do_sample=False, **stop)[0] for p in prompts]
        expect_each_alone(doing, tokens, prompts, expected, "HuggingFace generate() on that prompt alone",
                          options.get("eos_token_id"))
    settings = dict(top_k=20, top_p=0.9, seed=7)
    doing = "generate_batched(model, 4 prompts, 8, temperature=1.3, top_k=20, top_p=0.9, seed=7, max_batch_size=3)"
    tokens = lesson.call(doing, generate_batched, watched.watch(doing), prompts, 8, 1.3, True, max_batch_size=3,
                         **settings)
    expected = [reference_loop(compiled, [p], 8, 1.3, True, top_k=20, top_p=0.9, seed=7 + i)[0]
                for i, p in enumerate(prompts)]
    expect_each_alone(doing, tokens, prompts, expected,
                      "solution's loop on that prompt alone with seed 7 + its index (each prompt its own generator)")


# --- the 124M model ----------------------------------------------------------------


def test_gpt2_124m_rows(lesson):
    """The default config: every row at every step as above, then three
    prompts through two slots, 24 greedy tokens each, as HuggingFace generate()."""
    hf, compiled = check_rows(lesson, cases(FULL_CONFIG)[0], seed=17)
    rng = np.random.default_rng(17)
    prompts = [rng.integers(0, hf.config.vocab_size, n) for n in (8, 3, 13)]
    doing = "generate_batched(model, 3 prompts, 24, do_sample=False, max_batch_size=2) with GPT-2 124M"
    tokens = lesson.call(doing, lesson.get("generate_batched"), compiled, prompts, 24, 1.0, False, max_batch_size=2)
    expected = [hf_generate(hf, p[None], 24, do_sample=False)[0] for p in prompts]
    expect_each_alone(doing, tokens, prompts, expected, "HuggingFace generate() on that prompt alone")
