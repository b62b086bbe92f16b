"""Step 14: the KV cache, against HuggingFace's own cache.

The cache itself is checked with plain numpy (what append must write
where). The model runs through tools/kv_engine.py, a prompt and then
single tokens, and at every step its logits must equal HuggingFace
GPT2LMHeadModel's with past_key_values. Known mistakes are replayed by
torch_steps, a cached GPT-2 written out in torch from the same weights.
The loop is watched call by call (tests/loops.py): on stand-in logits,
what it feeds, what the cache holds, what choose_next_token gets (every
setting, ONE generator from the seed), end-of-text, and the refusal of a
prompt plus new tokens beyond n_positions; then its tokens must equal
HuggingFace generate() and, sampling with a seed, step 13's generate_tokens.
"""

import re

import numpy as np
import torch

from tests.loading import LessonFailure, construct, fail
from tests.loops import (NEW_TOKENS, PROMPT_LENGTH, Watched, check_loop, end_of_text_for_the_test, logits_problem,
                         stand_in, stand_in_prompt, stand_in_table)
from tests.parity import assert_close, compile_lm
from tests.twins import FULL_CONFIG, SMALL_CONFIGS, cases, hf_generate, lm_twins

STEP = 14
PROMPT_LENGTHS = (1, 7, 70)
DECODE_STEPS = 4


# --- the cache ------------------------------------------------------------------


def test_kv_cache_appends_keys_and_values_in_place(lesson):
    config = cases(SMALL_CONFIGS)[0].max
    cache = construct(lesson, "KVCache", config, 2, 12)
    shape = (config.n_layer, 2, config.n_head, 12, config.n_embd // config.n_head)
    for name in ("keys", "values"):
        buffer = getattr(cache, name)
        if not isinstance(buffer, np.ndarray) or buffer.shape != shape or buffer.dtype != np.float32:
            fail(f"KVCache(config, 2, 12).{name} must be a float32 numpy array of shape {list(shape)} "
                 "[n_layer, batch, n_head, capacity, head_dim]; got "
                 f"{getattr(buffer, 'shape', type(buffer).__name__)} {getattr(buffer, 'dtype', '')}.")
    if cache.length != 0:
        fail(f"a new KVCache has length {cache.length}: nothing is cached yet, so it starts at 0.")
    if np.shares_memory(cache.keys, cache.values):
        fail("KVCache's keys and values are one buffer: writing the values overwrites the keys.\n"
             "Likely cause: make two buffers, each its own np.zeros(shape, dtype=np.float32).")
    rng = np.random.default_rng(14)
    expected_keys, expected_values, length = np.zeros(shape, np.float32), np.zeros(shape, np.float32), 0
    for seq in (5, 1, 1):  # a prompt, then two decode steps
        keys = rng.normal(size=shape[:3] + (seq, shape[4])).astype(np.float32)
        values = rng.normal(size=keys.shape).astype(np.float32)
        append_checked(lesson, cache, keys, values, length, shape)
        expected_keys[:, :, :, length : length + seq] = keys
        expected_values[:, :, :, length : length + seq] = values
        length += seq
        doing = f"after appending {seq} token(s) to a cache that held {length - seq}"
        if cache.length != length:
            cause = {0: "the length is never advanced: add the new tokens' count (keys.shape[-2]).",
                     length - seq: "the length is never advanced: add the new tokens' count (keys.shape[-2]).",
                     length + seq: "the length grows twice per append: add keys.shape[-2] once.",
                     seq: "the length is set to the new tokens' count instead of advanced by it: self.length += seq_length.",
                     length - seq + 1: "the length advances by 1 per append: add the number of new tokens, keys.shape[-2].",
                     length - seq + shape[4]: "the length advances by head_dim: the new tokens are keys.shape[-2], "
                                              "keys.shape[-1] is head_dim."}
            fail(f"{doing}, cache.length is {cache.length}, not {length}.\n"
                 f"Likely cause: {cause.get(cache.length, 'add the number of new tokens, keys.shape[-2].')}")
        if np.array_equal(cache.keys, expected_values) and np.array_equal(cache.values, expected_keys):
            fail(f"{doing}, cache.keys holds the values and cache.values the keys.\n"
                 "Likely cause: keys are stored where values belong: write keys into self.keys, values into self.values.")
        for name, got, want, new in (("keys", cache.keys, expected_keys, keys), ("values", cache.values, expected_values, values)):
            if not np.array_equal(got, want):
                wrong = np.argwhere(got != want)[0]
                at_start = np.array_equal(got[:, :, :, :seq], new)
                cause = ("\nLikely cause: the new tokens overwrite positions 0 .. seq-1: write them after the cached "
                         "ones, at self.length : self.length + seq_length." if at_start and length > seq else "")
                fail(f"{doing}, cache.{name} is wrong at position {wrong[3]} (layer {wrong[0]}, sequence {wrong[1]}): "
                     f"the new tokens go to positions {length - seq} .. {length - 1}, after the cached ones, "
                     f"and earlier positions stay as they were.{cause}")


def append_checked(lesson, cache, keys, values, length, shape):
    """cache.append(keys, values), which must write into the buffers and keep their shape."""
    seq, before = keys.shape[-2], (cache.keys, cache.values)
    doing = f"cache.append(keys, values) with {seq} new token(s) [n_layer, batch, n_head, seq, head_dim] = {list(keys.shape)}"
    try:
        with lesson.learner_code(doing):
            cache.append(keys, values)
    except LessonFailure as failure:
        broadcast = "could not broadcast" in str(failure)
        fail(str(failure) + ("\nLikely cause: the slice written does not have the new keys' shape: write at "
                             "positions self.length : self.length + seq_length of axis 3 (the positions), with "
                             "seq_length = keys.shape[-2]: self.keys[:, :, :, a:b] = keys." if broadcast else ""))
    for name, old in zip(("keys", "values"), before):
        buffer = getattr(cache, name)
        got = getattr(buffer, "shape", None)
        if isinstance(buffer, np.ndarray) and got == shape and buffer.dtype == np.float32:
            continue
        if got is not None and tuple(got) == (*shape[:3], shape[3] + seq, shape[4]):
            cause = ("np.concatenate makes a new, longer array: the buffers have a fixed size (the capacity); "
                     "write the new tokens into them, self.keys[:, :, :, self.length : self.length + seq_length] = keys.")
        elif got is not None and tuple(got) == keys.shape:
            cause = (f"self.{name} = {name} replaces the buffer with the new tokens: write them into it, "
                     f"self.{name}[:, :, :, self.length : self.length + seq_length] = {name}.")
        else:
            cause = "append must write into the buffers in place, keeping their shape and dtype."
        fail(f"after {doing}, cache.{name} is {type(buffer).__name__} of shape {list(got) if got else '?'}"
             f"{' ' + str(getattr(buffer, 'dtype', '')) if hasattr(buffer, 'dtype') else ''}, not the float32 buffer "
             f"of shape {list(shape)} it was{' (a new object)' if buffer is not old else ''}.\nLikely cause: {cause}")


# --- the model, step by step ----------------------------------------------------------


def torch_steps(hf, chunks, *, offset=True, shifted_mask=True, swapped=False, last_only=True, scale=0.5,
                new_first=False, read_layer=None, head_at=-1):
    """A cached GPT-2 written out in torch with hf's weights: the logits
    [batch, vocab] of each chunk's last token, chunks run one after another.
    The options replay mistakes: positions not offset, a mask whose diagonal
    is not shifted by the cached tokens, keys and values swapped in the cache,
    the LM head on every position (or on head_at), scores divided by
    head_dim ** scale, the new keys put before the cached ones, every layer
    reading layer read_layer's cache."""
    t, n_head = hf.transformer, hf.config.n_head
    past = [None] * len(t.h)  # per layer: (keys, values) [batch, n_head, past, head_dim]
    length, outputs = 0, []
    with torch.no_grad():
        for chunk in chunks:
            ids, before = torch.from_numpy(chunk), list(past)
            batch, seq = ids.shape
            start = length if offset else 0
            x = t.wte(ids) + t.wpe(torch.arange(start, start + seq))
            for layer, block in enumerate(t.h):
                q, k, v = block.attn.c_attn(block.ln_1(x)).split(hf.config.n_embd, dim=2)
                q, k, v = (z.view(batch, seq, n_head, -1).transpose(1, 2) for z in (q, k, v))
                cached = before[layer if read_layer is None else read_layer]
                cached = cached[::-1] if cached is not None and swapped else cached
                keys, values = ((new if cached is None else torch.cat([new, cached[i]] if new_first else [cached[i], new], 2))
                                for i, new in enumerate((k, v)))
                scores = q @ keys.transpose(-1, -2) / q.shape[-1] ** scale
                query_at = torch.arange(seq)[:, None] + (keys.shape[2] - seq if shifted_mask else 0)
                scores = scores.masked_fill(torch.arange(keys.shape[2])[None, :] > query_at, float("-inf"))
                mixed = (torch.softmax(scores, -1) @ values).transpose(1, 2).reshape(batch, seq, -1)
                x = x + block.attn.c_proj(mixed)
                x = x + block.mlp(block.ln_2(x))
                mine = before[layer]
                past[layer] = (k, v) if mine is None else (torch.cat([mine[0], k], 2), torch.cat([mine[1], v], 2))
            length += seq
            logits = hf.lm_head(t.ln_f(x))  # [batch, seq, vocab]
            outputs.append((logits[:, head_at] if last_only else logits).double().numpy())
    return outputs


def huggingface_steps(hf, chunks):
    """HuggingFace's own cache: the logits of each chunk's last token."""
    outputs, past = [], None
    with torch.no_grad():
        for chunk in chunks:
            result = hf(torch.from_numpy(chunk), past_key_values=past, use_cache=True)
            past = result.past_key_values
            outputs.append(result.logits[:, -1].double().numpy())
    return outputs


def step_mistakes(hf, chunks, index):
    def replay(**mistake):
        return lambda: torch_steps(hf, chunks, **mistake)[index]

    return {
        "positions are not offset: the new tokens sit at positions past, past+1, ... "
        "(Tensor.arange(past_length, past_length + seq_length)), not 0, 1, ...": replay(offset=False),
        "the mask is not offset by the cached tokens: new token i sees every cached token and the new "
        "tokens up to i; use causal_mask(seq_length, past_length).": replay(shifted_mask=False),
        "keys and values are swapped: return (output, key, value), and write keys into the keys buffer.":
            replay(swapped=True),
        "the LM head runs on every new position: the loop needs the last one only, "
        "self.lm_head(hidden_states[:, -1, :]).": replay(last_only=False),
            "the scores are not scaled: divide query @ key^T by math.sqrt(self.head_dim).": replay(scale=0),
        "the scores are divided by head_dim: divide them by its square root, math.sqrt(self.head_dim).": replay(scale=1),
        "the new keys and values go before the cached ones: F.concat([past_key, key], axis=2), cached first.":
            replay(new_first=True),
        "every layer reads layer 0's cache: block i gets past_keys[i] and past_values[i].": replay(read_layer=0),
        "the LM head reads the first new position: the next token's logits are the last one's, "
        "hidden_states[:, -1, :].": replay(head_at=0),
    }


# Shapes that cannot meet, as MAX names them when the graph is built:
# (pattern of its message, what the learner most likely wrote).
SHAPE_CAUSES = [
    (r"Dim\('seq'\), Dim\('past'\)\]",
     "the scores cover the cached keys only: the new tokens' own keys and values are left out. "
     "Put them after the cached ones, F.concat([past_key, key], axis=2), and the same for the values."),
    (r"shape=\[Dim\('seq'\), Dim\('seq'\)\]",
     "the mask covers the new tokens only: the scores are [batch, n_head, seq, past+seq], and "
     "causal_mask(seq_length, past_length) is [seq, past+seq]."),
]


def compile_cached(lesson, model):
    from tools.kv_engine import compile_cached_model

    try:
        with lesson.learner_code("compiling CachedGPT2LMHeadModel with tools/kv_engine.py"):
            return compile_cached_model(model)
    except LessonFailure as failure:
        message = str(failure)
        cause = next((hint for pattern, hint in SHAPE_CAUSES if re.search(pattern, message)), None)
        fail(message + (f"\nLikely cause: {cause}" if cause else ""))


def cached_twins(lesson, case, seed):
    model = construct(lesson, "CachedGPT2LMHeadModel", case.max)
    return lm_twins(case, seed, model, f"CachedGPT2LMHeadModel [{case.label}]")


def check_every_step(lesson, case, seed):
    """Prefill then single tokens, batch 1 and 3, prompts of 1, 7 and 70
    tokens (and one prompt fed in two pieces): logits at every step.
    Returns the HuggingFace twin and the compiled model."""
    KVCache = lesson.get("KVCache")
    hf, model = cached_twins(lesson, case, seed)
    compiled = compile_cached(lesson, model)
    rng = np.random.default_rng(seed)
    runs = [(batch, [length]) for length in PROMPT_LENGTHS for batch in (1, 3)] + [(2, [4, 3])]
    for batch, pieces in runs:
        chunks = [rng.integers(0, case.max.vocab_size, (batch, n)) for n in pieces + [1] * DECODE_STEPS]
        expected = huggingface_steps(hf, chunks)
        cache = KVCache(case.max, batch, sum(pieces) + DECODE_STEPS)
        for index, chunk in enumerate(chunks):
            stage = "prefill" if index < len(pieces) else f"decode step {index - len(pieces) + 1}"
            doing = (f"CachedGPT2LMHeadModel [{case.label}], batch {batch}, prompt {'+'.join(map(str, pieces))}"
                     f" tokens, {stage} ({cache.length} cached, {chunk.shape[1]} new)")
            with lesson.learner_code(doing):
                logits, keys, values = compiled(chunk, cache)
            new_keys_shape(doing, np.shape(keys), chunk.shape, cache.length, case.max)
            with lesson.learner_code(doing):
                cache.append(keys, values)
            assert_close(doing + ": next-token logits", logits, expected[index], ("batch", "token"),
                         step_mistakes(hf, chunks, index), margins=lesson.margins)
    return hf, compiled


def new_keys_shape(doing, shape, chunk, cached, config):
    want = (config.n_layer, chunk[0], config.n_head, chunk[1], config.n_embd // config.n_head)
    if tuple(shape) == want:
        return
    cause = "the model returns the new tokens' keys, [n_layer, batch, n_head, seq, head_dim]."
    if len(shape) == 5 and shape[3] == cached + chunk[1]:
        cause = "the attention returns all keys and values, cached and new: return key, value (the new ones; the loop caches them)."
    elif len(shape) == 4 and shape[0] == config.n_layer * chunk[0]:
        cause = "F.concat joins the layers' keys along the batch axis: F.stack(keys) adds the layer axis."
    fail(f"{doing}: the keys returned have shape {list(shape)}, not {list(want)}.\nLikely cause: {cause}")


def test_cached_model_matches_huggingface_at_every_step(lesson):
    for case in cases(SMALL_CONFIGS):
        check_every_step(lesson, case, seed=14)


# --- the loop -------------------------------------------------------------------


def test_generation_loop_passes_its_settings_and_one_generator(lesson):
    """generate_tokens_cached on stand-in logits, the model and each
    choose_next_token call watched: the logits the model returned, every
    setting, ONE generator made by np.random.default_rng(seed), end-of-text."""
    from solutions.solution_13 import choose_next_token

    generate_tokens_cached = lesson.get("generate_tokens_cached")
    model, table = stand_in(), stand_in_table()

    def run(doing, prompt, n, temperature, do_sample, **options):
        try:
            return lesson.call(doing, generate_tokens_cached, model.watch(doing), prompt, n, temperature, do_sample, **options)
        except LessonFailure as failure:
            if "too many indices" not in str(failure):
                raise
            fail(f"{failure}\nLikely cause: the cached model returns the last position's logits only, [batch, vocab]: "
                 "pass them to choose_next_token as they are.")

    def step(ids, rng, settings):
        return choose_next_token(table[: len(ids), ids.shape[1] - 1], **settings, rng=rng)

    check_loop(lesson, "choose_next_token", choose_next_token, caller="generate_tokens_cached", run=run, step=step,
               inputs=lambda index, call, ids: logits_problem(index, call, ids, table))


def raises_before_running(lesson, doing: str, call, limit: int) -> None:
    """call() must raise ValueError whose message names the limit; a LessonFailure
    (e.g. a stand-in model that must not run) goes through as it is."""
    try:
        result = call()
    except LessonFailure:
        raise
    except ValueError as err:
        if str(limit) not in str(err) and "n_positions" not in str(err):
            fail(f"{doing} raised ValueError({str(err)!r}): say what the limit is (n_positions={limit}), "
                 "so that the caller knows what to change.")
        return
    except Exception as err:  # noqa: BLE001 - report whatever the lesson raised
        fail(lesson.describe_error(err, doing) + "\nIt should raise ValueError.")
    if result is None:
        lesson.fail_open_todo(f"{doing} returned None; it should raise ValueError.")
    fail(f"{doing} did not raise ValueError: a prompt plus new tokens beyond n_positions must stop with a clear message.")


def test_too_long_is_refused_before_the_model_runs(lesson):
    generate_tokens_cached = lesson.get("generate_tokens_cached")
    prompt, limit = stand_in_prompt(), PROMPT_LENGTH + NEW_TOKENS
    doing = f"generate_tokens_cached(model, {PROMPT_LENGTH}-token prompt, {NEW_TOKENS}, do_sample=False) with n_positions={limit}"
    try:
        lesson.call(doing, generate_tokens_cached, stand_in(limit).watch(doing), prompt, NEW_TOKENS, 1.0, False)
    except LessonFailure as failure:
        if "raised ValueError" not in str(failure):
            raise
        fail(f"{failure}\nLikely cause: {PROMPT_LENGTH} + {NEW_TOKENS} tokens fit in n_positions={limit}: refuse only "
             "when prompt_length + max_new_tokens > n_positions (>, not >=).")

    class MustNotRun:
        config = stand_in(limit).config

        def __call__(self, input_ids, cache):
            fail(f"{too_long}: the model ran, although {PROMPT_LENGTH} prompt tokens + {NEW_TOKENS + 1} new tokens > "
                 f"n_positions={limit}.\nLikely cause: the new tokens are not counted, or the check comes too late: before the "
                 "first model call, refuse prompt_length + max_new_tokens > model.config.n_positions with a ValueError.")

    too_long = doing.replace(f", {NEW_TOKENS},", f", {NEW_TOKENS + 1},")
    raises_before_running(lesson, too_long, lambda: generate_tokens_cached(MustNotRun(), prompt, NEW_TOKENS + 1, 1.0, False), limit)


def test_generation_with_the_cache_matches_huggingface(lesson):
    """Greedy tokens as HuggingFace generate(), with and without end-of-text;
    a seed gives the tokens of step 13's uncached generate_tokens."""
    from solutions.solution_13 import generate_tokens

    generate_tokens_cached = lesson.get("generate_tokens_cached")
    case = cases(SMALL_CONFIGS)[0]
    hf, model = cached_twins(lesson, case, seed=16)
    watched = Watched(compile_cached(lesson, model))
    prompt = np.random.default_rng(15).integers(0, case.max.vocab_size, (2, 5))
    free = hf_generate(hf, prompt, 12, do_sample=False)
    eos = end_of_text_for_the_test(free, prompt.shape[1])  # the first sequence stops early, the second goes on
    for options in ({}, {"eos_token_id": eos}):
        doing = f"generate_tokens_cached(model, prompt, 12, do_sample=False{''.join(f', {k}={v}' for k, v in options.items())})"
        tokens = np.asarray(lesson.call(doing, generate_tokens_cached, watched.watch(doing), prompt, 12, 1.0, False, **options))
        stop = {"eos_token_id": eos, "pad_token_id": eos} if options else {}
        expected = hf_generate(hf, prompt, 12, do_sample=False, **stop)
        if not np.array_equal(tokens, expected):
            fail(f"{doing} differs from HuggingFace generate():\n  yours       {tokens.tolist()}\n"
                 f"  HuggingFace {expected.tolist()}\nThe model's steps match HuggingFace, so look at the loop: "
                 "choose_next_token, then pad_finished, stop when every sequence is finished.")
    _, reference = lm_twins(case, seed=16)
    uncached = compile_lm(lesson, reference)
    settings = dict(top_k=20, top_p=0.9, seed=7)
    doing = "generate_tokens_cached(model, prompt, 10, temperature=1.3, top_k=20, top_p=0.9, seed=7)"
    tokens = np.asarray(lesson.call(doing, generate_tokens_cached, watched.watch(doing), prompt, 10, 1.3, True, **settings))
    expected = generate_tokens(uncached, prompt, 10, 1.3, True, **settings)
    if not np.array_equal(tokens, expected):
        fail(f"{doing} differs from step 13's generate_tokens with the same seed (no cache):\n"
             f"  yours   {tokens.tolist()}\n  step 13 {expected.tolist()}\n"
             "The model's steps match HuggingFace and the loop passed the stand-in check, so compare what your loop "
             "feeds the real model and passes to choose_next_token with step 13's.")


# --- the 124M model -------------------------------------------------------------


def test_gpt2_124m_with_the_cache(lesson):
    """The default config: logits at every step as above, then 64 greedy
    tokens equal to HuggingFace generate()."""
    hf, compiled = check_every_step(lesson, cases(FULL_CONFIG)[0], seed=16)
    prompt = np.random.default_rng(16).integers(0, hf.config.vocab_size, (1, 8))
    doing = "generate_tokens_cached(model, prompt, 64, do_sample=False) with GPT-2 124M"
    tokens = lesson.call(doing, lesson.get("generate_tokens_cached"), compiled, prompt, 64, 1.0, False)
    expected = hf_generate(hf, prompt, 64, do_sample=False)
    if not np.array_equal(tokens, expected):
        first = int(np.flatnonzero(np.asarray(tokens)[0] != expected[0])[0]) if np.shape(tokens) == expected.shape else 0
        fail(f"{doing} differs from HuggingFace generate() from token {first - prompt.shape[1]} of 64 on:\n"
             f"  yours       {np.asarray(tokens)[0, prompt.shape[1]:].tolist()}\n"
             f"  HuggingFace {expected[0, prompt.shape[1]:].tolist()}")

