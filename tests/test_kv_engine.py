"""The fast path of lesson 14 (solutions/solution_14.py on tools/kv_engine.py):
the same tokens as step 12's uncached path and HuggingFace at 124M, one
compiled graph for every batch and length, and clear errors; and the
decode step whose attention reads the cache in place
(tools/decode_in_place.py) against HuggingFace and lesson 15's graph."""

import numpy as np
import pytest

from solutions.solution_12 import compile_model
from solutions.solution_13 import generate_tokens
from solutions.solution_14 import CachedGPT2LMHeadModel, KVCache, generate_tokens_cached
from tests.twins import FULL_CONFIG, SMALL_CONFIGS, cases, hf_generate, lm_twins
from tools import kv_engine
from tools.kv_engine import compile_cached_model

SMALL = cases(SMALL_CONFIGS)[0]


def cached_model(case, seed):
    hf, model = lm_twins(case, seed, CachedGPT2LMHeadModel(case.max))
    return hf, model


def test_greedy_tokens_with_and_without_the_cache_are_huggingfaces_at_124m():
    case = cases(FULL_CONFIG)[0]
    hf, model = cached_model(case, seed=41)
    _, uncached = lm_twins(case, seed=41)
    prompt = np.random.default_rng(41).integers(0, case.max.vocab_size, (1, 16))
    expected = hf_generate(hf, prompt, 64, do_sample=False)
    with_cache = generate_tokens_cached(compile_cached_model(model), prompt, 64, do_sample=False)
    without = generate_tokens(compile_model(uncached), prompt, 64, do_sample=False)
    assert np.array_equal(with_cache, expected), "the KV cache path differs from HuggingFace generate()"
    assert np.array_equal(without, expected), "step 12's uncached path differs from HuggingFace generate()"


def test_seeded_sampling_is_the_same_with_and_without_the_cache():
    _, model = cached_model(SMALL, seed=42)
    _, uncached = lm_twins(SMALL, seed=42)
    prompt = np.random.default_rng(42).integers(0, SMALL.max.vocab_size, (3, 6))
    settings = dict(temperature=1.2, top_k=30, top_p=0.95, seed=5)
    with_cache = generate_tokens_cached(compile_cached_model(model), prompt, 24, **settings)
    without = generate_tokens(compile_model(uncached), prompt, 24, **settings)
    assert np.array_equal(with_cache, without)


def test_one_graph_serves_every_batch_and_length(monkeypatch):
    loads = []
    load = kv_engine.InferenceSession.load
    monkeypatch.setattr(kv_engine.InferenceSession, "load", lambda self, *a, **k: loads.append(1) or load(self, *a, **k))
    hf, model = cached_model(SMALL, seed=43)
    compiled = compile_cached_model(model)
    rng = np.random.default_rng(43)
    for batch, length, new in [(1, 3, 20), (2, 9, 5), (3, 1, 40)]:
        prompt = rng.integers(0, SMALL.max.vocab_size, (batch, length))
        tokens = generate_tokens_cached(compiled, prompt, new, do_sample=False)
        assert np.array_equal(tokens, hf_generate(hf, prompt, new, do_sample=False))
    assert len(loads) == 1, f"{len(loads)} graphs compiled for 3 batch sizes, 3 prompt lengths and 65 steps"


def test_the_tied_head_is_read_from_wte():
    _, model = cached_model(SMALL, seed=44)  # HuggingFace ties lm_head to wte
    weights = compile_cached_model(model).weights
    assert weights["model.lm_head.weight"] is weights["model.transformer.wte.weight"]


def test_bad_calls_are_refused_with_a_clear_error():
    _, model = cached_model(SMALL, seed=45)
    compiled = compile_cached_model(model)
    cache = KVCache(SMALL.max, batch_size=2, capacity=4)
    with pytest.raises(ValueError, match="the cache is full: 0 cached \\+ 5 new tokens > capacity 4"):
        compiled(np.zeros((2, 5), np.int64), cache)
    with pytest.raises(ValueError, match="3 sequences, but the cache was made for batch_size=2"):
        compiled(np.zeros((3, 1), np.int64), cache)
    with pytest.raises(ValueError, match="n_positions=128"):
        generate_tokens_cached(compiled, np.zeros((1, 100), np.int64), 29, do_sample=False)


# --- the decode step whose attention reads the cache in place (tools/decode_in_place.py) ---


def reference_lesson(step):
    from tests.lessons import solution_path
    from tests.loading import Lesson

    return Lesson(step, solution_path(step))


@pytest.mark.parametrize("path", ["float32", "kernel"])
def test_in_place_decode_matches_huggingface_row_by_row(path):
    """Lesson 15's rows check (prompts of 1, 7 and 20 tokens, a prompt joining a
    freed slot) on the engine whose decode steps read the cache in place:
    every row's logits at every step equal HuggingFace on that row alone."""
    from tests.test_step_15 import check_rows
    from tools.generation import kernel_problem
    from tools.kv_engine import compile_batched_model, compile_kernel_model

    if problem := kernel_problem():
        pytest.skip(f"the Mojo ops do not build here: {problem}")
    if path == "kernel":
        from solutions.solution_16 import KERNELS

        lesson, model_class = reference_lesson(16), "KernelGPT2LMHeadModel"
        compile_model = lambda model: compile_kernel_model(model, KERNELS, in_place=True)  # noqa: E731
    else:
        lesson, model_class = reference_lesson(15), "BatchedGPT2LMHeadModel"
        compile_model = lambda model: compile_batched_model(model, in_place=True)  # noqa: E731
    _, compiled = check_rows(lesson, SMALL, seed=46, model_class=model_class, compile_model=compile_model)
    assert compiled.in_place and compiled.decode_model is not None


def test_in_place_decode_of_quantized_weights_follows_lesson_15s_graph():
    """Q4_0 has no HuggingFace twin: fed the same tokens, rows of different
    lengths in any order, the in-place engine (on its own cache) must give
    the next-token distributions of lesson 15's graph on the same quantized
    weights, within QUANTIZED_KL (why not a logit tolerance: its comment)."""
    from solutions.solution_15 import BatchedGPT2LMHeadModel, BatchedKVCache
    from solutions.solution_17 import quantize_model
    from tools.decode_in_place import QUANTIZED_KL
    from tools.generation import kernel_problem
    from tools.kv_engine import compile_batched_model
    from tools.quality import next_token_kl

    if problem := kernel_problem():
        pytest.skip(f"the Mojo ops do not build here: {problem}")
    _, model = lm_twins(SMALL, 47, BatchedGPT2LMHeadModel(SMALL.max))
    model = quantize_model(model, "q4_0")
    engines = {"lesson 15's graph": compile_batched_model(model), "in place": compile_batched_model(model, in_place=True)}
    caches = {name: BatchedKVCache(SMALL.max, 3, capacity=24) for name in engines}
    rng = np.random.default_rng(47)
    prompts = [rng.integers(0, SMALL.max.vocab_size, (1, n)) for n in (1, 9, 17)]
    steps = [([1, 2], rng.integers(0, SMALL.max.vocab_size, (2, 1)))]  # not every slot
    steps += [([2, 0, 1], rng.integers(0, SMALL.max.vocab_size, (3, 1))) for _ in range(3)]  # any order
    logits = {}
    for name, engine in engines.items():
        cache, logits[name] = caches[name], []
        for slot, prompt in enumerate(prompts):
            cache.take()
            _, keys, values = engine(prompt, cache, [slot])
            cache.append(keys, values, [slot])
        for rows, ids in steps:
            step_logits, keys, values = engine(ids, cache, rows)
            cache.append(keys, values, rows)
            logits[name].append(step_logits)
    for i, (reference, in_place) in enumerate(zip(*logits.values())):
        kl = next_token_kl(reference, in_place).max()
        assert kl <= QUANTIZED_KL, f"Q4_0 decode step {i + 1}: the in-place step's next-token KL from lesson 15's is {kl:.2e} nats"
