"""Step 14: the KV cache, against HuggingFace's own cache.

The cache itself is checked with plain numpy (what append must write
where). The model runs through tools/kv_engine.py, a prompt and then
single tokens, and at every step its logits must equal HuggingFace
GPT2LMHeadModel's with past_key_values. Known mistakes are replayed by
torch_steps, a cached GPT-2 written out in torch from the same weights.
The loop is watched call by call (what it feeds, what the cache holds)
and its tokens must equal HuggingFace generate() and, sampling with a
seed, step 13's uncached generate_tokens.
"""

import math
import re

import numpy as np
import torch

from tests.loading import LessonFailure, construct, fail
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
    rng = np.random.default_rng(14)
    expected_keys, expected_values, length = np.zeros(shape, np.float32), np.zeros(shape, np.float32), 0
    for seq in (5, 1, 1):  # a prompt, then two decode steps
        keys = rng.normal(size=shape[:3] + (seq, shape[4])).astype(np.float32)
        values = rng.normal(size=keys.shape).astype(np.float32)
        with lesson.learner_code(f"cache.append(keys, values) with {seq} new token(s)"):
            cache.append(keys, values)
        expected_keys[:, :, :, length : length + seq] = keys
        expected_values[:, :, :, length : length + seq] = values
        length += seq
        doing = f"after appending {seq} token(s) to a cache that held {length - seq}"
        if cache.length != length:
            cause = {0: "the length is never advanced: add the new tokens' count (keys.shape[-2]).",
                     length - seq: "the length is never advanced: add the new tokens' count (keys.shape[-2]).",
                     length + seq: "the length grows twice per append: add keys.shape[-2] once."}
            fail(f"{doing}, cache.length is {cache.length}, not {length}.\n"
                 f"Likely cause: {cause.get(cache.length, 'add the number of new tokens, keys.shape[-2].')}")
        if np.array_equal(cache.keys, expected_values) and np.array_equal(cache.values, expected_keys):
            fail(f"{doing}, cache.keys holds the values and cache.values the keys.\n"
                 "Likely cause: keys are stored where values belong: write keys into self.keys, values into self.values.")
        for name, got, want in (("keys", cache.keys, expected_keys), ("values", cache.values, expected_values)):
            if not np.array_equal(got, want):
                wrong = np.argwhere(got != want)[0]
                fail(f"{doing}, cache.{name} is wrong at position {wrong[3]} (layer {wrong[0]}, sequence {wrong[1]}): "
                     f"the new tokens go to positions {length - seq} .. {length - 1}, after the cached ones, "
                     "and earlier positions stay as they were.")


# --- the model, step by step ----------------------------------------------------------


def torch_steps(hf, chunks, *, offset=True, shifted_mask=True, swapped=False, last_only=True):
    """A cached GPT-2 written out in torch with hf's weights: the logits
    [batch, vocab] of each chunk's last token, chunks run one after another.
    The options replay mistakes: positions not offset, a mask whose diagonal
    is not shifted by the cached tokens, keys and values swapped in the cache,
    the LM head on every position."""
    t, n_head = hf.transformer, hf.config.n_head
    past = [None] * len(t.h)  # per layer: (keys, values) [batch, n_head, past, head_dim]
    length, outputs = 0, []
    with torch.no_grad():
        for chunk in chunks:
            ids = torch.from_numpy(chunk)
            batch, seq = ids.shape
            start = length if offset else 0
            x = t.wte(ids) + t.wpe(torch.arange(start, start + seq))
            for layer, block in enumerate(t.h):
                q, k, v = block.attn.c_attn(block.ln_1(x)).split(hf.config.n_embd, dim=2)
                q, k, v = (z.view(batch, seq, n_head, -1).transpose(1, 2) for z in (q, k, v))
                stored = past[layer]
                if stored is not None and swapped:
                    stored = stored[::-1]
                keys = k if stored is None else torch.cat([stored[0], k], 2)
                values = v if stored is None else torch.cat([stored[1], v], 2)
                scores = q @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])
                query_at = torch.arange(seq)[:, None] + (keys.shape[2] - seq if shifted_mask else 0)
                scores = scores.masked_fill(torch.arange(keys.shape[2])[None, :] > query_at, float("-inf"))
                mixed = (torch.softmax(scores, -1) @ values).transpose(1, 2).reshape(batch, seq, -1)
                x = x + block.attn.c_proj(mixed)
                x = x + block.mlp(block.ln_2(x))
                past[layer] = (keys, values)
            length += seq
            logits = hf.lm_head(t.ln_f(x))  # [batch, seq, vocab]
            outputs.append((logits[:, -1] if last_only else logits).double().numpy())
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
                cache.append(keys, values)
            assert_close(doing + ": next-token logits", logits, expected[index], ("batch", "token"),
                         step_mistakes(hf, chunks, index), margins=lesson.margins)
    return hf, compiled


def test_cached_model_matches_huggingface_at_every_step(lesson):
    for case in cases(SMALL_CONFIGS):
        check_every_step(lesson, case, seed=14)


# --- the loop -------------------------------------------------------------------


class Watched:
    """The compiled model, watched call by call: each call must get the
    prompt (the first) or one token per sequence, and find in the cache
    every token fed before it, once."""

    def __init__(self, compiled):
        self.compiled, self.config = compiled, compiled.config
        self.doing, self.calls, self.fed = "", 0, 0

    def watch(self, doing: str) -> "Watched":
        self.doing, self.calls, self.fed = doing, 0, 0
        return self

    def __call__(self, input_ids, cache):
        tokens = np.asarray(input_ids).shape[-1]
        self.calls += 1
        if cache.length != self.fed:
            cause = ("cache.append is called more than once per step" if cache.length > self.fed
                     else "the new keys and values are not appended after every call")
            fail(f"{self.doing}: call {self.calls} of the model found {cache.length} positions in the cache, "
                 f"but {self.fed} tokens had been fed.\nLikely cause: {cause}: append what each call returns, once.")
        if self.calls > 1 and tokens != 1:
            fail(f"{self.doing}: call {self.calls} of the model was fed {tokens} tokens per sequence.\n"
                 "Likely cause: the whole sequence is fed again. After the prefill the cache holds it: "
                 "feed only the token just chosen, next_token[:, None].")
        self.fed += tokens
        return self.compiled(input_ids, cache)


def test_generation_with_the_cache_matches_huggingface(lesson):
    """Greedy tokens as HuggingFace generate(), with and without end-of-text;
    a seed gives the tokens of step 13's uncached generate_tokens."""
    from solutions.solution_13 import generate_tokens

    generate_tokens_cached = lesson.get("generate_tokens_cached")
    case = cases(SMALL_CONFIGS)[0]
    hf, model = cached_twins(lesson, case, seed=15)
    watched = Watched(compile_cached(lesson, model))
    prompt = np.random.default_rng(15).integers(0, case.max.vocab_size, (2, 5))
    free = hf_generate(hf, prompt, 12, do_sample=False)
    eos = int(free[0, 8])  # the first sequence stops there, the second (most likely) goes on
    for options in ({}, {"eos_token_id": eos}):
        doing = f"generate_tokens_cached(model, prompt, 12, do_sample=False{''.join(f', {k}={v}' for k, v in options.items())})"
        tokens = np.asarray(lesson.call(doing, generate_tokens_cached, watched.watch(doing), prompt, 12, 1.0, False, **options))
        stop = {"eos_token_id": eos, "pad_token_id": eos} if options else {}
        expected = hf_generate(hf, prompt, 12, do_sample=False, **stop)
        if not np.array_equal(tokens, expected):
            fail(f"{doing} differs from HuggingFace generate():\n  yours       {tokens.tolist()}\n"
                 f"  HuggingFace {expected.tolist()}\nThe model's steps match HuggingFace, so look at the loop: "
                 "choose_next_token, then pad_finished, stop when every sequence is finished.")
    _, reference = lm_twins(case, seed=15)
    uncached = compile_lm(lesson, reference)
    settings = dict(top_k=20, top_p=0.9, seed=7)
    doing = "generate_tokens_cached(model, prompt, 10, temperature=1.3, top_k=20, top_p=0.9, seed=7)"
    tokens = np.asarray(lesson.call(doing, generate_tokens_cached, watched.watch(doing), prompt, 10, 1.3, True, **settings))
    expected = generate_tokens(uncached, prompt, 10, 1.3, True, **settings)
    if not np.array_equal(tokens, expected):
        fail(f"{doing} differs from step 13's generate_tokens with the same seed (no cache):\n"
             f"  yours   {tokens.tolist()}\n  step 13 {expected.tolist()}\n"
             "Likely cause: the random generator: make ONE np.random.default_rng(seed) before the loop and pass "
             "it to choose_next_token at every step, as step 13 does.")


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

