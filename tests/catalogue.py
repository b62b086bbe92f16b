"""The catalogue the judge (test_judge.py) runs: mistakes learners make, each
of which must fail its step's check (with its hint, where there is one), and
correct implementations written differently from the solution, which must
pass. Each entry is the reference solution with a few edits: (old, new)
pairs, where old must occur in the solution exactly once, so that a change
to a solution that makes an entry meaningless stops the judge at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.lessons import solution_path

PASS = None  # the expected outcome of a correct variant: no failure


@dataclass(frozen=True)
class Variant:
    step: int
    name: str
    edits: tuple[tuple[str, str], ...]
    expect: str | None  # text the failure must contain; PASS for correct code
    file: str = ""  # the file edited: "" for solution_NN.py, else one in the lesson's folder (tests/lessons.py)

    @property
    def id(self) -> str:
        return f"{self.step:02d}-{self.name}"

    @property
    def original(self) -> Path:
        return solution_path(self.step).parent / self.file if self.file else solution_path(self.step)

    def source(self) -> str:
        """The edited file's text."""
        text = self.original.read_text()
        for old, new in self.edits:
            count = text.count(old)
            if count != 1:
                raise ValueError(f"{self.id}: {old!r} occurs {count} times in {self.original.name}, not once")
            text = text.replace(old, new)
        return text


def mistake(step, name, expect, *edits):
    return Variant(step, name, tuple(edits), expect)


def correct(step, name, *edits):
    return Variant(step, name, tuple(edits), PASS)


# Correct code written another way --------------------------------------------

LAYER_NORM_BY_HAND = (
    "        return F.layer_norm(x, gamma=self.weight, beta=self.bias, epsilon=self.eps)",
    "        mean = F.mean(x, axis=-1)\n"
    "        centered = x - mean\n"
    "        variance = F.mean(centered * centered, axis=-1)\n"
    "        return centered / F.sqrt(variance + self.eps) * self.weight + self.bias",
)

MASK_WITH_BAND_PART = (
    "    key_positions = Tensor.arange(total_length, dtype=DType.int64, device=device)  # [total]\n"
    "    query_positions = Tensor.arange(num_tokens, total_length, dtype=DType.int64, device=device)  # [seq]\n"
    "    future = F.unsqueeze(key_positions, 0) > F.unsqueeze(query_positions, 1)  # [seq, total]\n"
    "    blocked = Tensor.constant(float(\"-inf\"), dtype=dtype, device=device)\n"
    "    allowed = Tensor.constant(0.0, dtype=dtype, device=device)\n"
    "    return F.where(future, blocked, allowed)",
    "    mask = Tensor.constant(float(\"-inf\"), dtype=dtype, device=device)\n"
    "    mask = F.broadcast_to(mask, shape=(sequence_length, total_length))\n"
    "    return F.band_part(mask, num_lower=None, num_upper=num_tokens, exclude=True)",
)

MASK_WITH_WHERE_ON_DIFFERENCE = (
    "    future = F.unsqueeze(key_positions, 0) > F.unsqueeze(query_positions, 1)  # [seq, total]",
    "    steps_ahead = F.unsqueeze(key_positions, 0) - F.unsqueeze(query_positions, 1)\n"
    "    future = steps_ahead > 0",
)

GELU_FROM_TANH = (
    "        hidden_states = F.gelu(hidden_states, approximate=\"tanh\")",
    "        x = hidden_states\n"
    "        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)\n"
    "        hidden_states = 0.5 * x * (1.0 + F.tanh(inner))",
)
IMPORT_MATH = ("from max.experimental import functional as F", "import math\n\nfrom max.experimental import functional as F")

HEADS_WITH_PERMUTE = (
    "        new_shape = list(x.shape[:-1]) + [self.num_heads, self.head_dim]\n"
    "        return x.reshape(new_shape).transpose(1, 2)",
    "        batch, seq = x.shape[0], x.shape[1]\n"
    "        return x.reshape([batch, seq, self.num_heads, self.head_dim]).permute([0, 2, 1, 3])",
)
MERGE_WITH_PERMUTE = (
    "        x = x.transpose(1, 2)\n"
    "        new_shape = list(x.shape[:-2]) + [self.embed_dim]\n"
    "        return x.reshape(new_shape)",
    "        x = x.permute([0, 2, 1, 3])\n"
    "        return x.reshape([x.shape[0], x.shape[1], self.embed_dim])",
)

CORRECT = [
    correct(3, "layer-norm-from-mean-and-variance", LAYER_NORM_BY_HAND),
    correct(2, "mask-from-the-difference-of-positions", MASK_WITH_WHERE_ON_DIFFERENCE),
    correct(4, "gelu-written-out-from-tanh", GELU_FROM_TANH, IMPORT_MATH),
    correct(7, "heads-split-with-permute", HEADS_WITH_PERMUTE, MERGE_WITH_PERMUTE),
    correct(8, "residual-as-two-lines",
            ("    return x + update", "    return update + x")),
]

# Mistakes ------------------------------------------------------------------

MISTAKES = [
    # 01 config
    mistake(1, "n-positions-2048", "n_positions is 2048", ("n_positions: int = 1024", "n_positions: int = 2048")),
    mistake(1, "epsilon-1e-6", "layer_norm_epsilon is 1e-06",
            ("layer_norm_epsilon: float = 1e-5", "layer_norm_epsilon: float = 1e-6")),
    mistake(1, "n-inner-3072", "n_inner is 3072", ("n_inner: int | None = None", "n_inner: int | None = 3072")),
    mistake(1, "vocab-50000", "vocab_size is 50000", ("vocab_size: int = 50257", "vocab_size: int = 50000")),
    # 02 causal mask
    mistake(2, "diagonal-masked", "the diagonal is masked",
            ("F.unsqueeze(key_positions, 0) > F.unsqueeze", "F.unsqueeze(key_positions, 0) >= F.unsqueeze")),
    mistake(2, "mask-flipped", "the mask is flipped",
            ("F.unsqueeze(key_positions, 0) > F.unsqueeze", "F.unsqueeze(key_positions, 0) <= F.unsqueeze")),
    mistake(2, "num-tokens-ignored", "num_tokens is ignored",
            ("Tensor.arange(num_tokens, total_length, dtype", "Tensor.arange(sequence_length, dtype")),
    mistake(2, "minus-1e9-instead-of-minus-inf", "a large negative number (-1e+09) instead of -inf",
            ("Tensor.constant(float(\"-inf\"), dtype=dtype, device=device)",
             "Tensor.constant(-1e9, dtype=dtype, device=device)")),
    mistake(2, "float32-min-instead-of-minus-inf", "torch.finfo(torch.float32).min",
            ("Tensor.constant(float(\"-inf\"), dtype=dtype, device=device)",
             "Tensor.constant(-3.4028234663852886e38, dtype=dtype, device=device)")),
    mistake(2, "ones-instead-of-minus-inf", "0 (attend) and -inf",
            ("blocked = Tensor.constant(float(\"-inf\")", "blocked = Tensor.constant(1.0")),
    mistake(2, "band-part-without-exclude", "exclude=True zeroes the band",
            MASK_WITH_BAND_PART, (", exclude=True)", ")")),
    mistake(2, "band-part-with-symbolic-num-tokens", "F.band_part takes only Python ints", MASK_WITH_BAND_PART),
    # 03 layer norm
    mistake(3, "bias-not-added", "the bias is not added",
            LAYER_NORM_BY_HAND, (" * self.weight + self.bias", " * self.weight")),
    mistake(3, "eps-outside-sqrt", "eps is added outside the square root",
            LAYER_NORM_BY_HAND, ("F.sqrt(variance + self.eps)", "(F.sqrt(variance) + self.eps)")),
    mistake(3, "unbiased-variance", "divides by N-1",
            LAYER_NORM_BY_HAND,
            ("variance = F.mean(centered * centered, axis=-1)",
             "variance = F.sum(centered * centered, axis=-1) / (int(x.shape[-1]) - 1)")),
    mistake(3, "eps-fixed", "eps is fixed at 1e-5", ("epsilon=self.eps", "epsilon=1e-5")),
    # 04 MLP
    mistake(4, "exact-gelu", "exact GELU instead of the tanh approximation",
            ('approximate="tanh"', 'approximate="none"')),
    mistake(4, "no-gelu", "GELU is missing",
            ('        hidden_states = F.gelu(hidden_states, approximate="tanh")\n', "")),
    mistake(4, "relu", "ReLU instead of GELU",
            ('F.gelu(hidden_states, approximate="tanh")', "F.relu(hidden_states)")),
    mistake(4, "gelu-after-c-proj", "GELU is applied after c_proj",
            ('        hidden_states = F.gelu(hidden_states, approximate="tanh")\n'
             "        hidden_states = self.c_proj(hidden_states)\n",
             "        hidden_states = self.c_proj(hidden_states)\n"
             '        hidden_states = F.gelu(hidden_states, approximate="tanh")\n')),
    # 05 token embeddings
    mistake(5, "table-axes-swapped", "wte.weight has shape",
            ("Embedding(config.vocab_size, dim=config.n_embd)", "Embedding(config.n_embd, dim=config.vocab_size)")),
    mistake(5, "position-table-for-tokens", "wte.weight has shape",
            ("Embedding(config.vocab_size, dim=config.n_embd)", "Embedding(config.n_positions, dim=config.n_embd)")),
    mistake(5, "returns-the-table", "your output has shape",
            ("return self.wte(input_ids)", "return self.wte.weight")),
    # 06 position embeddings
    mistake(6, "positions-start-at-1", "the positions start at 1",
            ("return self.wpe(position_ids(input_ids))", "return self.wpe(position_ids(input_ids) + 1)")),
    mistake(6, "token-ids-as-positions", "the token ids are used as positions",
            ("return self.wpe(position_ids(input_ids))", "return self.wpe(input_ids)")),
    mistake(6, "vocab-sized-table", "wpe.weight has shape",
            ("Embedding(config.n_positions, dim=config.n_embd)", "Embedding(config.vocab_size, dim=config.n_embd)")),
    # 07 attention
    mistake(7, "no-scaling", "divide query @ key^T by sqrt(head_dim)",
            ("scores = scores / math.sqrt(self.head_dim)", "scores = scores")),
    mistake(7, "scaled-by-head-dim", "divided by head_dim",
            ("scores = scores / math.sqrt(self.head_dim)", "scores = scores / self.head_dim")),
    mistake(7, "no-mask", "no causal mask", ("F.softmax(scores + mask)", "F.softmax(scores)")),
    mistake(7, "softmax-over-queries", "softmax runs over the wrong axis",
            ("weights = F.softmax(scores + mask)",
             "weights = F.softmax((scores + mask).transpose(-1, -2)).transpose(-1, -2)")),
    mistake(7, "heads-split-wrong-order", "the heads are split in the wrong order",
            ("[self.num_heads, self.head_dim]\n        return x.reshape(new_shape).transpose(1, 2)",
             "[self.head_dim, self.num_heads]\n        return x.reshape(new_shape).permute([0, 3, 1, 2])"),
            ("        x = x.transpose(1, 2)\n", "        x = x.permute([0, 2, 3, 1])\n")),
    mistake(7, "query-key-swapped", "query and key are swapped",
            ("scores = query @ key.transpose(-1, -2)", "scores = key @ query.transpose(-1, -2)")),
    # 08 residual connections
    mistake(8, "residual-from-normalized", "the residual is the normalized tensor",
            ("    return x + update", "    return normalized + update")),
    mistake(8, "post-norm", "post-norm", ("    return x + update", "    return norm(x + sublayer(x))")),
    mistake(8, "no-residual", "the residual is missing", ("    return x + update", "    return update")),
    mistake(8, "no-norm", "the norm is skipped", ("    return x + update", "    return x + sublayer(x)")),
    # 09 transformer block
    mistake(9, "mlp-first", "the MLP runs before attention",
            ("        hidden_states = pre_norm_residual(hidden_states, self.ln_1, self.attn)\n"
             "        hidden_states = pre_norm_residual(hidden_states, self.ln_2, self.mlp)\n",
             "        hidden_states = pre_norm_residual(hidden_states, self.ln_2, self.mlp)\n"
             "        hidden_states = pre_norm_residual(hidden_states, self.ln_1, self.attn)\n")),
    mistake(9, "norms-swapped", "ln_1 and ln_2 are swapped",
            ("(hidden_states, self.ln_1, self.attn)", "(hidden_states, self.ln_2, self.attn)"),
            ("(hidden_states, self.ln_2, self.mlp)", "(hidden_states, self.ln_1, self.mlp)")),
    mistake(9, "residual-from-normalized", "the residual is the normalized tensor",
            ("        hidden_states = pre_norm_residual(hidden_states, self.ln_1, self.attn)\n"
             "        hidden_states = pre_norm_residual(hidden_states, self.ln_2, self.mlp)\n",
             "        normed = self.ln_1(hidden_states)\n"
             "        hidden_states = normed + self.attn(normed)\n"
             "        normed = self.ln_2(hidden_states)\n"
             "        hidden_states = normed + self.mlp(normed)\n")),
    mistake(9, "n-inner-ignored", "mlp.c_fc.weight has shape",
            ("config.n_inner if config.n_inner is not None else 4 * hidden_size", "4 * hidden_size")),
    mistake(9, "epsilon-ignored", "ln_2 ignores config.layer_norm_epsilon",
            ("self.ln_2 = LayerNorm(hidden_size, eps=config.layer_norm_epsilon)",
             "self.ln_2 = LayerNorm(hidden_size)")),
    mistake(9, "epsilon-ignored-twice", "ln_1 and ln_2 ignore config.layer_norm_epsilon",
            ("self.ln_1 = LayerNorm(hidden_size, eps=config.layer_norm_epsilon)", "self.ln_1 = LayerNorm(hidden_size)"),
            ("self.ln_2 = LayerNorm(hidden_size, eps=config.layer_norm_epsilon)", "self.ln_2 = LayerNorm(hidden_size)")),
    # 10 the stacked model
    mistake(10, "positions-start-at-1", "the position ids start at 1",
            ("self.wpe(position_ids(input_ids))", "self.wpe(position_ids(input_ids) + 1)")),
    mistake(10, "no-position-embeddings", "the position embeddings are not added",
            ("hidden_states = tok_embeds + pos_embeds", "hidden_states = tok_embeds")),
    mistake(10, "no-final-norm", "ln_f is not applied",
            ("return self.ln_f(hidden_states)", "return hidden_states")),
    mistake(10, "one-block-only", "missing parameters",
            ("for _ in range(config.n_layer)", "for _ in range(1)")),
    # 11 LM head
    mistake(11, "head-with-bias", "bias=False",
            ("Linear(config.n_embd, config.vocab_size, bias=False)", "Linear(config.n_embd, config.vocab_size)")),
    mistake(11, "softmax-on-logits", "the logits went through softmax",
            ("return self.lm_head(hidden_states)", "return F.softmax(self.lm_head(hidden_states))"),
            ("from max.nn.module_v3 import", "from max.experimental import functional as F\nfrom max.nn.module_v3 import")),
    mistake(11, "returns-hidden-states", "the hidden states are returned",
            ("return self.lm_head(hidden_states)", "return hidden_states")),
    mistake(11, "head-arguments-reversed", "Linear(in_dim, out_dim) takes the input size first",
            ("Linear(config.n_embd, config.vocab_size, bias=False)", "Linear(config.vocab_size, config.n_embd, bias=False)")),
    # 12 generation
    mistake(12, "temperature-after-softmax", "the temperature is applied after softmax",
            ("scaled = np.asarray(logits, dtype=np.float64) / temperature", "scaled = np.asarray(logits, dtype=np.float64)"),
            ("return exp / exp.sum(axis=-1, keepdims=True)", "return exp / exp.sum(axis=-1, keepdims=True) / temperature")),
    mistake(12, "logits-times-temperature", "the logits are multiplied by T", ("float64) / temperature", "float64) * temperature")),
    mistake(12, "first-position-logits", "the first position's logits are used", ("next_logits = logits[:, -1, :]", "next_logits = logits[:, 0, :]")),
    mistake(12, "c-proj-not-transposed", "Conv1D layout [in, out]", ('    "attn.c_proj.weight",\n', "")),
    mistake(12, "seed-ignored", "the seed is not used", ("rng = np.random.default_rng(seed)", "rng = np.random.default_rng()")),
    mistake(12, "no-shape-check", "did not raise ValueError",
            ("        if array.shape != shape:\n            raise ValueError(", "        if False:\n            raise ValueError(")),
]

MORE_MISTAKES = [
    # 03: the values a new LayerNorm starts with
    mistake(3, "weight-starts-at-zeros", "the weight starts at zeros",
            ("self.weight = Tensor.ones([dim])", "self.weight = Tensor.zeros([dim])")),
    mistake(3, "bias-starts-at-ones", "the bias starts at ones",
            ("self.bias = Tensor.zeros([dim])", "self.bias = Tensor.ones([dim])")),
    # 06: positions from the wrong axis
    mistake(6, "positions-from-batch-axis", "the positions count the batch (3 sequences)",
            ("seq_length = input_ids.shape[-1]", "seq_length = input_ids.shape[0]")),
    # 07: heads merged or split without their transpose, mask after softmax
    mistake(7, "merge-without-transpose", "_merge_heads reshapes without the transpose",
            ("        x = x.transpose(1, 2)\n        new_shape = list(x.shape[:-2]) + [self.embed_dim]",
             "        new_shape = [x.shape[0], x.shape[2], self.embed_dim]")),
    mistake(7, "heads-never-transposed", "the heads are never moved in front of the sequence",
            ("return x.reshape(new_shape).transpose(1, 2)", "return x.reshape(new_shape)"),
            ("        x = x.transpose(1, 2)\n", "")),
    mistake(7, "mask-after-softmax", "the mask is added after softmax",
            ("weights = F.softmax(scores + mask)", "weights = F.softmax(scores) + mask")),
    # 10: the blocks
    mistake(10, "one-block-repeated", "one GPT2Block object fills all 2 places",
            ("Sequential(*(GPT2Block(config) for _ in range(config.n_layer)))",
             "Sequential(*([GPT2Block(config)] * config.n_layer))")),
    mistake(10, "plain-list-of-blocks", "use Sequential(*modules)",
            ("Sequential(*(GPT2Block(config) for _ in range(config.n_layer)))",
             "[GPT2Block(config) for _ in range(config.n_layer)]"),
            ("        hidden_states = self.h(hidden_states)\n",
             "        for block in self.h:\n            hidden_states = block(hidden_states)\n")),
    mistake(10, "ln-f-epsilon-ignored", "ln_f ignores config.layer_norm_epsilon",
            ("self.ln_f = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)", "self.ln_f = LayerNorm(config.n_embd)")),
    # 12: choosing tokens, generators, the loader
    mistake(12, "argmax-without-axis", "np.argmax without an axis", ("np.argmax(next_logits, axis=-1)", "np.argmax(next_logits)")),
    mistake(12, "softmax-without-max", "np.exp overflowed",
            ("    scaled = scaled - scaled.max(axis=-1, keepdims=True)  # avoid overflow in exp\n", "")),
    mistake(12, "new-generator-every-step", "a new np.random.default_rng(seed) at every step",
            ("    for _ in range(max_new_tokens):\n        next_token",
             "    for _ in range(max_new_tokens):\n        rng = np.random.default_rng(seed)\n        next_token")),
    mistake(12, "seeded-default-generator", "the default generator is seeded", ("else np.random.default_rng()", "else np.random.default_rng(0)")),
    mistake(12, "chooser-ignores-its-rng", "does not draw with the rng it is given", ("rng if rng is not None else np.random.default_rng()", "np.random.default_rng()")),
    mistake(12, "temperature-not-passed-on", "does not pass its temperature on", ("ids, temperature, do_sample, rng=rng)", "ids, do_sample=do_sample, rng=rng)")),
    mistake(12, "do-sample-not-passed-on", "does not pass its do_sample on", ("ids, temperature, do_sample, rng=rng)", "ids, temperature, rng=rng)")),
    mistake(12, "generator-not-passed-on", "the generator is not passed on", ("do_sample, rng=rng)\n        ids =", "do_sample)\n        ids =")),
    mistake(12, "seed-zero-ignored", "seed=0 is treated as no seed", ("default_rng(seed)\n    for", "default_rng(seed or None)\n    for")),
    mistake(12, "unseeded-runs-repeat", "the default generator is seeded", ("default_rng(seed)\n    for", "default_rng(seed if seed is not None else 0)\n    for")),
    mistake(12, "prompt-fed-at-every-step", "pass ids, the prompt followed by the tokens chosen so far",
            ("generate_next_token(model, ids, temperature, do_sample, rng=rng)", "generate_next_token(model, input_ids, temperature, do_sample, rng=rng)")),
    mistake(12, "state-dict-changed", "changed the state dict it was given",
            ("    state = {k: v for k, v in hf_state_dict.items() if not k.endswith(BUFFER_SUFFIXES)}\n",
             "    state = hf_state_dict\n"
             "    for key in [k for k in state if k.endswith(BUFFER_SUFFIXES)]:\n"
             "        del state[key]\n")),
]

STOP = "        if finished.all():\n            break\n"
APPEND = "        ids = np.concatenate([ids, next_token[:, None]], axis=1)\n"
TO_CHOOSER = ("top_k=top_k, top_p=top_p, rng=rng)\n        next_token, finished", "top_k=top_k, rng=rng)\n        next_token, finished")
ONE_RNG = ("top_p=top_p, rng=rng)\n        next_token, finished", "top_p=top_p, rng=np.random.default_rng(seed))\n        next_token, finished")
KEYS, VALUES = (f"self.{n}[:, :, :, self.length : self.length + seq_length] = {n}" for n in ("keys", "values"))
LIMIT = "if prompt_length + max_new_tokens > model.config.n_positions:"

LESSON_13_MISTAKES = [
    mistake(13, "top-k-off-by-one", "top_k is off by one", ("np.sort(logits, axis=-1)[..., -k, None]", "np.sort(logits, axis=-1)[..., -k - 1, None]")),
    mistake(13, "top-k-ties-dropped", "ties at the cut are dropped", ("    return np.where(logits < kth_largest, -np.inf, logits)",
             "    keep = np.zeros(logits.shape, dtype=bool)\n    np.put_along_axis(keep, np.argsort(-logits, axis=-1, kind=\"stable\")[..., :k], True, axis=-1)\n"
             "    return np.where(keep, logits, -np.inf)")),
    mistake(13, "chooser-ignores-its-rng", "does not draw with the rng it is given",
            ("rng = rng if rng is not None else np.random.default_rng()", "rng = np.random.default_rng()")),
    mistake(13, "top-p-drops-the-crossing-token", "the token whose running sum crosses top_p is dropped",
            ("drop_sorted = cumulative <= 1 - top_p", "drop_sorted = cumulative - sorted_probs < 1 - top_p")),
    mistake(13, "top-p-descending-with-ascending-cut", "the least likely tokens are kept", ("argsort(logits, axis=-1, kind", "argsort(-logits, axis=-1, kind")),
    mistake(13, "top-p-running-sum-unsorted", "the running sum is taken in vocabulary order",
            ('order = np.argsort(logits, axis=-1, kind="stable")', "order = np.broadcast_to(np.arange(logits.shape[-1]), logits.shape)")),
    mistake(13, "top-p-strict-comparison", "(<=, not <)", ("drop_sorted = cumulative <= 1 - top_p", "drop_sorted = cumulative < 1 - top_p")),
    mistake(13, "top-p-marks-sorted-again", "the drop marks are not put back into vocabulary order",
            ("    np.put_along_axis(drop, order, drop_sorted, axis=-1)", "    drop = np.take_along_axis(drop_sorted, order, axis=-1)")),
    mistake(13, "top-k-zero-skipped", "`if top_k:` skips top_k=0", ("    if top_k is not None:\n        scores = top_k_filter", "    if top_k:\n        scores = top_k_filter")),
    mistake(13, "top-p-no-minimum", "always keep the most likely one", ("    drop_sorted[..., -1] = False  # keep at least the most likely token\n", "")),
    mistake(13, "top-p-before-temperature", "top-p is applied before the temperature", ("float64) / temperature", "float64)"),
            ("        scores = top_p_filter(scores, top_p)\n    return scores", "        scores = top_p_filter(scores, top_p)\n    return scores / temperature")),
    mistake(13, "warping-not-used-when-sampling", "top_k and top_p are not used",
            ("softmax_with_temperature(warp_logits(next_logits, temperature, top_k, top_p), 1.0)", "softmax_with_temperature(next_logits, temperature)")),
    mistake(13, "finished-rows-not-padded", "a finished sequence goes on with real tokens",
            ("    next_token = np.where(finished, eos_token_id, next_token)\n", "")),
    mistake(13, "no-early-stop", "generation goes on after every sequence has produced eos_token_id", (STOP, "")),
    mistake(13, "stops-when-one-is-finished", "stops as soon as one sequence is finished", ("if finished.all():", "if finished.any():")),
    mistake(13, "last-token-not-appended", "the token that finishes the last sequence is not appended", (APPEND + STOP, STOP + APPEND)),
    mistake(13, "padded-with-zero", "padded with 0", ("np.where(finished, eos_token_id, next_token)", "np.where(finished, 0, next_token)")),
    mistake(13, "first-position-logits", "the first position's logits are used", ("logits[:, -1, :], temperature", "logits[:, 0, :], temperature")),
    mistake(13, "top-p-not-passed-on", "does not pass its top_p on to choose_next_token", TO_CHOOSER),
    mistake(13, "new-generator-every-step", "a new np.random.default_rng(seed) at every step", ONE_RNG),
    mistake(13, "temperature-applied-twice", "the temperature is applied twice", ("top_p), 1.0)", "top_p), temperature)")),
    mistake(13, "top-k-not-clamped", "k = min(top_k, logits.shape[-1])", ("k = min(top_k, logits.shape[-1])", "k = top_k")),
    mistake(13, "seed-zero-ignored", "seed=0 is treated as no seed", ("default_rng(seed)\n    finished", "default_rng(seed if seed else None)\n    finished")),
]

MORE_CORRECT = [
    correct(14, "head-on-every-position-then-last", ("self.lm_head(hidden_states[:, -1, :])", "self.lm_head(hidden_states)[:, -1, :]")),
    correct(14, "append-with-ellipsis", (KEYS, "self.keys[..., self.length : self.length + seq_length, :] = keys"),
            (VALUES, "np.copyto(self.values[..., self.length : self.length + seq_length, :], values)")),
    correct(14, "decode-feeds-the-last-column", ("new_ids = next_token[:, None]", "new_ids = ids[:, -1:]")),
    correct(13, "top-k-with-partition", ("np.sort(logits, axis=-1)[..., -k, None]", "-np.partition(-logits, k - 1, axis=-1)[..., k - 1, None]")),
    correct(13, "top-p-sorted-descending", ('order = np.argsort(logits, axis=-1, kind="stable")', 'order = np.argsort(-logits, axis=-1, kind="stable")'),
            ("drop_sorted = cumulative <= 1 - top_p", "drop_sorted = cumulative - sorted_probs >= top_p"), ("drop_sorted[..., -1] = False", "drop_sorted[..., 0] = False")),
    correct(13, "finished-marked-before-padding",
            ("    next_token = np.where(finished, eos_token_id, next_token)\n    return next_token, finished | (next_token == eos_token_id)",
             "    finished = finished | (next_token == eos_token_id)\n    return np.where(finished, eos_token_id, next_token), finished")),
    correct(10, "blocks-run-in-a-loop",
            ("        hidden_states = self.h(hidden_states)\n", "        for block in self.h:\n            hidden_states = block(hidden_states)\n")),
    correct(12, "sampling-by-inverse-cdf",
            ("    return np.array([rng.choice(len(p), p=p) for p in probs], dtype=np.int64)",
             "    cumulative = np.cumsum(probs, axis=-1)\n"
             "    u = rng.random((probs.shape[0], 1)) * cumulative[:, -1:]\n"
             "    return (cumulative < u).sum(axis=-1).astype(np.int64)")),
]

from tests.catalogue_14 import LESSON_14_MISTAKES  # noqa: E402  (they use mistake and correct from above)
from tests.catalogue_15 import LESSON_15  # noqa: E402
from tests.catalogue_16 import LESSON_16  # noqa: E402
from tests.catalogue_17 import LESSON_17  # noqa: E402

VARIANTS = CORRECT + MORE_CORRECT + MISTAKES + MORE_MISTAKES + LESSON_13_MISTAKES + LESSON_14_MISTAKES + LESSON_15 + LESSON_16 + LESSON_17
