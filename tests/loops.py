"""Watching a lesson's generation loop call by call (lessons 12 to 15).

A loop is right when it calls its token chooser once per step with every
setting it was given, draws from ONE generator made from the seed, and
handles end-of-text as HuggingFace does. Comparing its tokens with a
reference only says that something differs; watching the calls says what.

Spy(lesson, name, reference, caller): while the `with` block runs, the name
the lesson's module chooses tokens with (12: "generate_next_token"; 13 to
15: "choose_next_token") is a wrapper that records every call and calls
reference (the solution's), so the loop is judged apart from the
learner's own chooser.

    with Spy(lesson, "choose_next_token", solution_13.choose_next_token, caller="generate_tokens") as spy:
        tokens = lesson.call(doing, generate_tokens, model, prompt, 6, 1.3, True, top_p=0.9, seed=7)
    spy.calls      # [Call], in call order

Call: .arguments (every parameter of reference's signature by name,
defaults filled in, arrays copied, rng left out), .rng (the generator
object passed, or None), .state and .after (rng.bit_generator.state before
and after the call; None without a generator), .result.

Checks on a list of calls; each fails with a message and a "Likely cause:":
  check_settings(calls, expected, caller, callee)   every call got these values
  check_one_generator(calls, seed, caller, callee)  ONE generator, made by
      np.random.default_rng(seed), drawn from by these calls only, in turn
  check_fresh_without_seed(first_states, caller)    seed=None: a fresh
      generator each run (two runs' first states must differ)
Per-row generators (lesson 15 keeps one per prompt): spy.streams() is
[(rng, calls)] grouped by generator object in order of first use;
seed_of(state, candidates) is the seed among candidates whose
np.random.default_rng makes that state (None if none does); check one
row's stream with check_one_generator(calls, seed + i, ...).

reference_loop(step, prompt, n, seed=..., eos=...): the loop as the lessons
mean it, over step(ids, rng) -> [batch] tokens; EOS_MISTAKES names its
switches that replay end-of-text mistakes. check_loop runs all of it on
stand-in logits; Watched watches a cached model (lesson 14) call by call.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from tests.loading import fail


@dataclass
class Call:
    arguments: dict
    rng: Any
    state: dict | None
    after: dict | None = None
    result: Any = None


def _state(rng) -> dict | None:
    return copy.deepcopy(rng.bit_generator.state) if isinstance(rng, np.random.Generator) else None


@dataclass
class Spy:
    lesson: Any
    name: str
    reference: Callable
    caller: str = "the loop"
    calls: list = field(default_factory=list)

    def __enter__(self) -> "Spy":
        self._saved = self.lesson.get(self.name)
        setattr(self.lesson.module, self.name, self._record)
        return self

    def __exit__(self, *exc) -> None:
        setattr(self.lesson.module, self.name, self._saved)

    def _record(self, *args, **kwargs):
        try:
            bound = inspect.signature(self.reference).bind(*args, **kwargs)
        except TypeError as err:
            fail(f"{self.caller} calls {self.name} with arguments it does not take ({err}). "
                 f"Call it as the skeleton's # Hint lines do.")
        bound.apply_defaults()
        arguments = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
                     for k, v in bound.arguments.items()}
        rng = arguments.pop("rng", None)
        if rng is not None and not isinstance(rng, np.random.Generator):
            fail(f"{self.caller} passes {self.name} a {type(rng).__name__} as rng, not a numpy Generator.\n"
                 "Likely cause: make the generator with np.random.default_rng(seed).")
        call = Call(arguments, rng, _state(rng))
        self.calls.append(call)
        call.result = self.reference(*bound.args, **bound.kwargs)
        call.after = _state(rng)
        return call.result

    def streams(self) -> list[tuple[Any, list[Call]]]:
        groups: dict[int, tuple[Any, list[Call]]] = {}
        for call in self.calls:
            groups.setdefault(id(call.rng), (call.rng, []))[1].append(call)
        return list(groups.values())


def seeded_state(seed) -> dict:
    return np.random.default_rng(seed).bit_generator.state


def seed_of(state: dict | None, candidates) -> Any:
    return next((s for s in candidates if state is not None and state == seeded_state(s)), None)


def _same(a, b) -> bool:
    try:
        return bool(a == b) and (a is None) == (b is None)
    except (TypeError, ValueError):
        return False


def check_settings(calls, expected: dict, caller: str, callee: str, defaults: dict | None = None) -> None:
    """Every call got expected[name] for each name."""
    for index, call in enumerate(calls):
        for name, want in expected.items():
            got = call.arguments.get(name)
            if _same(got, want):
                continue
            passed = f"{caller} was given {name}={want!r}, but call {index + 1} of {callee} got {name}={got!r}."
            if defaults is not None and got == defaults.get(name):
                fail(f"{passed}\nLikely cause: {caller} does not pass its {name} on to {callee}: pass {name}={name}.")
            fail(f"{passed}\nLikely cause: {caller} passes {callee} something else as {name}: pass {name}={name} "
                 "as it was given.")


def check_one_generator(calls, seed, caller: str, callee: str) -> None:
    """The calls drew, in turn, from ONE generator made by np.random.default_rng(seed)."""
    doing = f"{caller}(..., seed={seed})"
    if any(call.rng is None for call in calls):
        fail(f"{doing} called {callee} without a generator (rng=None), so every draw comes from a fresh, "
             f"unseeded one.\nLikely cause: the generator is not passed on to {callee}: pass rng=rng.")
    distinct = len({id(call.rng) for call in calls})
    if distinct > 1:
        if all(call.state == seeded_state(seed) for call in calls):
            cause = (f"a new np.random.default_rng(seed) at every step repeats the first draw: make ONE generator "
                     f"before the loop and pass it to every {callee} call.")
        else:
            cause = "a new generator at every step: make ONE np.random.default_rng(seed) before the loop."
        fail(f"{doing} passed {distinct} different generators to its {len(calls)} calls of {callee}.\n"
             f"Likely cause: {cause}")
    if calls[0].state != seeded_state(seed):
        other = seed_of(calls[0].state, [0, 1, 42, 1234, seed + 1 if isinstance(seed, int) else 0])
        if seed == 0:
            cause = ("seed=0 is treated as no seed (0 is falsy): pass the seed to np.random.default_rng as it is "
                     "(test `seed is None`, not `if seed`).")
        elif other is not None:
            cause = f"the generator is made from seed {other}, not from the seed given: np.random.default_rng(seed)."
        else:
            cause = "the seed is not used: make the generator with np.random.default_rng(seed)."
        fail(f"{doing}: the generator {callee} got first was not made by np.random.default_rng({seed}), so the "
             f"same seed cannot give the same tokens.\nLikely cause: {cause}")
    for index, (before, after) in enumerate(zip(calls, calls[1:])):
        if after.state != before.after:
            fail(f"{doing}: between calls {index + 1} and {index + 2} of {callee} the generator drew numbers "
                 f"{callee} did not.\nLikely cause: something else draws from the same generator: let "
                 f"{callee} make every draw.")


def check_fresh_without_seed(first_states, caller: str) -> None:
    if len(first_states) > 1 and all(s is not None and s == first_states[0] for s in first_states[1:]):
        fail(f"{len(first_states)} runs of {caller} with seed=None started from the same generator state, so "
             "they give the same tokens.\nLikely cause: the default generator is seeded: without a seed, "
             "np.random.default_rng(seed) with seed=None (or np.random.default_rng()) draws fresh entropy.")


# --- the reference loop, and the mistakes it can replay ---------------------------------


def reference_loop(step, prompt, max_new_tokens, *, seed=None, eos=None, pad_with="eos", stop="all",
                   append_last=True) -> np.ndarray:
    """prompt [batch, seq] followed by up to max_new_tokens tokens from step(ids, rng).
    pad_with: what a finished row gets ("eos", a token id, or None: its real
    tokens); stop: "all" (every row finished), "any" or "never"; append_last:
    False drops the token that finished the last row."""
    ids = np.asarray(prompt, dtype=np.int64)
    rng = np.random.default_rng(seed)
    finished = np.zeros(len(ids), dtype=bool)
    for _ in range(max_new_tokens):
        token = np.asarray(step(ids, rng), dtype=np.int64).reshape(-1)
        if eos is not None:
            if pad_with is not None:
                token = np.where(finished, eos if pad_with == "eos" else pad_with, token)
            finished = finished | (token == eos)
        done = eos is not None and {"all": finished.all(), "any": finished.any(), "never": False}[stop]
        if done and not append_last:
            break
        ids = np.concatenate([ids, token[:, None]], axis=1)
        if done:
            break
    return ids


EOS_MISTAKES = {
    "a finished sequence goes on with real tokens: after eos_token_id it gets eos_token_id as padding "
    "until the others finish.": dict(pad_with=None),
    "the finished sequences are padded with 0: pad them with eos_token_id.": dict(pad_with=0),
    "generation goes on after every sequence has produced eos_token_id: stop then.": dict(stop="never"),
    "generation stops as soon as one sequence is finished: stop when every one is (finished.all()).":
        dict(stop="any"),
    "the token that finishes the last sequence is not appended: append next_token, then stop.":
        dict(append_last=False),
    "eos_token_id is not used: pad the finished sequences and stop when all are finished.": dict(eos=None),
}


def eos_table(prompt_length: int, max_new_tokens: int, vocab: int, eos: int, seed: int = 0) -> np.ndarray:
    """Stand-in logits [2, positions, vocab] whose greedy tokens end row 0 at
    its 2nd new token (and would go on with other tokens after it) and row 1
    at its 5th, so that padding, stopping and the last token all show."""
    table = np.random.default_rng(seed).normal(0, 1, size=(2, prompt_length + max_new_tokens, vocab))
    table[:, :, eos] = -5.0
    table[0, prompt_length, eos] = 10.0  # new token j comes from position prompt_length + j - 1
    table[1, prompt_length + 3, eos] = 10.0
    return table.astype(np.float32)


def end_of_text_for_the_test(free: np.ndarray, start: int) -> int:
    """A token that greedy decoding produces in the first sequence, not before,
    not twice in a row, and not in the second sequence until later: with it
    as end-of-text the first sequence stops early and the second goes on."""
    first, second = free[0, start:], free[1, start:]
    for j in range(2, len(first) - 2):
        token = first[j]
        if token in first[:j] or first[j + 1] == token:
            continue
        later = np.flatnonzero(second == token)
        if later.size == 0 or later[0] > j + 1:
            return int(token)  # sequence 0 ends at new token j, is padded after it; sequence 1 goes on past j + 1
    raise AssertionError(f"no usable end-of-text token in {free.tolist()}: choose another prompt")


def compare_tokens(doing: str, tokens, expected: np.ndarray, mistakes: dict[str, np.ndarray], what: str) -> None:
    """tokens must equal expected; name the first mistake whose tokens they equal."""
    tokens = np.asarray(tokens)
    if tokens.shape == expected.shape and np.array_equal(tokens, expected):
        return
    cause = next((hint for hint, ids in mistakes.items()
                  if tokens.shape == ids.shape and np.array_equal(tokens, ids)), None)
    if cause is None and tokens.ndim == 2 and tokens.shape[0] != expected.shape[0]:
        cause = ("the new tokens are appended as a row, not a column: "
                 "np.concatenate([ids, next_token[:, None]], axis=1).")
    elif cause is None and tokens.ndim == 2 and tokens.shape[0] == expected.shape[0]:
        more = tokens.shape[1] - expected.shape[1]
        if more and np.array_equal(tokens[:, : min(tokens.shape[1], expected.shape[1])],
                                   expected[:, : min(tokens.shape[1], expected.shape[1])]):
            cause = f"the loop runs {abs(more)} step(s) too {'many' if more > 0 else 'few'}: one step per new token."
    fail(f"{doing} gave other tokens than {what}:\n  yours     {tokens.tolist()}\n  expected  {expected.tolist()}"
         + (f"\nLikely cause: {cause}" if cause else ""))


# --- the whole check of a loop on stand-in logits (lessons 12, 13 and 14) --------------

PROMPT_LENGTH, NEW_TOKENS, VOCAB, EOS = 3, 8, 30, 17
SAMPLING = dict(temperature=1.3, do_sample=True, top_k=20, top_p=0.9)
GREEDY = dict(temperature=0.7, do_sample=False, top_k=5, top_p=0.5)


def logits_problem(index, call, ids, table, prompt_length=PROMPT_LENGTH):
    """What is wrong with the next_logits a choose_next_token call got, for a
    stand-in model whose logits at each position are table's; None if nothing."""
    given, rows = np.asarray(call.arguments["next_logits"]), len(ids)
    last = table[:rows, ids.shape[1] - 1]
    if given.shape == last.shape and np.array_equal(given, last):
        return None
    if given.shape != last.shape:
        return (f"got next_logits of shape {list(given.shape)}, not [batch, vocab] {list(last.shape)}: "
                "pass the last position's logits, one row per sequence.")
    if np.array_equal(given, table[:rows, 0]) and ids.shape[1] > 1:
        return ("got the first position's logits.\nLikely cause: the first position's logits are used: the next "
                "token's are the last position's, logits[:, -1, :].")
    if index > 0 and np.array_equal(given, table[:rows, prompt_length - 1]):
        return ("got the logits of the prompt's last position again.\nLikely cause: the prompt is fed at every "
                "step: feed ids, the prompt followed by the tokens chosen so far.")
    return "got other logits than the last position's of the tokens so far."


def stand_in_table() -> np.ndarray:
    return eos_table(PROMPT_LENGTH, NEW_TOKENS, VOCAB, EOS)


def stand_in_prompt() -> np.ndarray:
    return np.random.default_rng(3).integers(0, VOCAB, (2, PROMPT_LENGTH)).astype(np.int64)


def check_loop(lesson, spied: str, reference: Callable, *, caller: str, run: Callable, step: Callable,
               inputs: Callable, filters: bool = True, eos: bool = True) -> None:
    """Watch the lesson's loop `caller` on stand-in logits (stand_in_table()).

    run(doing, prompt, n, temperature, do_sample, **options) calls the loop
    (options: top_k, top_p, eos_token_id, seed); step(ids, rng, settings)
    is the reference's choice for ids; inputs(index, call, ids) returns what
    is wrong with what call `index` was given, ids being the prompt and the
    tokens the earlier calls chose (or None). filters: the loop takes top_k and top_p; eos: it
    takes eos_token_id."""
    prompt = stand_in_prompt()
    defaults = {k: v.default for k, v in inspect.signature(reference).parameters.items()}
    names = ["temperature", "do_sample"] + (["top_k", "top_p"] if filters else [])

    def watched(settings, seed, n=NEW_TOKENS, eos_id=None):
        options = {k: settings[k] for k in names[2:]}
        if eos_id is not None:
            options["eos_token_id"] = eos_id
        shown = ", ".join([f"{k}={v}" for k, v in settings.items() if k in names] + [f"{k}={v}" for k, v in
                                                                                      options.items() if k not in settings])
        doing = f"{caller}(model, prompt, {n}, {shown}, seed={seed}) on stand-in logits"
        with Spy(lesson, spied, reference, caller) as spy:
            tokens = run(doing, prompt, n, settings["temperature"], settings["do_sample"], seed=seed, **options)
        if not spy.calls:
            fail(f"{doing} never called {spied}. The check watches that call: choose every token with it, as the "
                 "skeleton's # Hint lines do.")
        return doing, np.asarray(tokens), spy.calls

    def expected(settings, seed, **switches):
        chosen = {k: settings[k] for k in names}
        return reference_loop(lambda ids, rng: step(ids, rng, chosen), prompt, NEW_TOKENS, seed=seed, **switches)

    sampling = {k: SAMPLING[k] for k in names}
    doing, tokens, calls = watched(sampling, 7)
    want = expected(sampling, 7)
    so_far = prompt
    for index, call in enumerate(calls):
        problem = inputs(index, call, so_far)
        if problem:
            fail(f"{doing}: call {index + 1} of {spied} {problem}")
        so_far = np.concatenate([so_far, np.asarray(call.result).reshape(-1, 1)], axis=1)
    check_settings(calls, sampling, caller, spied, defaults)
    check_one_generator(calls, 7, caller, spied)
    compare_tokens(doing, tokens, want, {}, "the reference loop with the same choices")
    for seed in (0, 123):
        _, _, calls = watched(sampling, seed)
        check_one_generator(calls, seed, caller, spied)
    firsts = [watched(sampling, None)[2][0].state for _ in range(2)]
    check_fresh_without_seed(firsts, caller)
    greedy = {k: GREEDY[k] for k in names}
    eos_id = EOS if eos else None
    doing, tokens, calls = watched(greedy, 5, eos_id=eos_id)
    check_settings(calls, {"do_sample": False}, caller, spied, defaults)
    want = expected(greedy, 5, eos=eos_id)
    mistakes = {hint: expected(greedy, 5, **{"eos": eos_id, **switches})
                for hint, switches in (EOS_MISTAKES.items() if eos else [])}
    compare_tokens(doing, tokens, want, mistakes, "the reference loop" + (
        f" (sequence 0 ends at its 2nd new token, sequence 1 at its 5th; eos_token_id={EOS})" if eos else ""))


class Watched:
    """The compiled model, watched call by call: each call must get the
    prompt (the first) or one token per sequence, and find in the cache
    every token fed before it, once."""

    def __init__(self, compiled):
        self.compiled, self.config = compiled, compiled.config
        self.doing, self.calls, self.fed, self.batch = "", 0, 0, 0

    def watch(self, doing: str) -> "Watched":
        self.doing, self.calls, self.fed = doing, 0, 0
        return self

    def __call__(self, input_ids, cache):
        shape = np.shape(input_ids)
        self.calls += 1
        if len(shape) != 2 or (self.calls > 1 and shape[0] != self.batch):
            fail(f"{self.doing}: call {self.calls} of the model was fed ids of shape {list(shape)}, not [batch, tokens]."
                 "\nLikely cause: feed the token just chosen as a column, next_token[:, None] ([batch, 1]).")
        self.batch, tokens = shape[0] if self.calls == 1 else self.batch, shape[1]
        if cache.length != self.fed:
            cause = ("cache.append is called more than once per step" if cache.length > self.fed
                     else "the new keys and values are not appended after every call")
            fail(f"{self.doing}: call {self.calls} of the model found {cache.length} positions in the cache, "
                 f"but {self.fed} tokens had been fed.\nLikely cause: {cause}: append what each call returns, once.")
        if self.calls > 1 and tokens != 1:
            fail(f"{self.doing}: call {self.calls} of the model was fed {tokens} tokens per sequence.\n"
                 "Likely cause: the whole sequence is fed again. After the prefill the cache holds it: "
                 "feed only the token just chosen, next_token[:, None].")
        if cache.length + tokens > np.shape(cache.keys)[3]:
            fail(f"{self.doing}: call {self.calls} of the model feeds {tokens} token(s) to a cache of capacity "
                 f"{np.shape(cache.keys)[3]} that holds {cache.length}.\nLikely cause: the cache has no room for "
                 "every token: KVCache(model.config, batch_size, capacity=prompt_length + max_new_tokens).")
        self.fed += tokens
        return self.compiled(input_ids, cache)


def stand_in(config_length: int = 64):
    """A Watched cached model (lesson 14) with stand-in_table() logits, n_positions = config_length."""
    from solutions.solution_01 import GPT2Config
    from tests.twins import FixedCachedLogits

    config = GPT2Config(vocab_size=VOCAB, n_positions=config_length, n_embd=4, n_head=2, n_layer=1)
    return Watched(FixedCachedLogits(stand_in_table(), config))
