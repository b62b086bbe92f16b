"""Step 17: quantized weights, against the `gguf` package, numpy and HuggingFace.

1. quantize_q4_0's bytes must equal gguf.quants.quantize (llama.cpp's
   reference quantizer, in Python) byte for byte, on random weights and
   on blocks made to catch the usual slips (halves that round up, a
   positive extreme, a block of zeros). A wrong result is replayed
   against the known mistakes in numpy and the one that matches is named.
2. dequantize_q4_0 must equal gguf.quants.dequantize.
3. QuantizedLinear in all three formats, in one graph, against numpy
   x @ dequantize(W).T + b, W decoded by `gguf`. ops.qmatmul rounds the
   activations to 8 bits (one scale per block of x), so the result may
   differ from that by at most what rounding x can move a dot product:
   per output, the sum over the blocks of x of (max|x_block| / 254) *
   sum|w| over the block (half a step of 8-bit codes, times the weights
   it multiplies), plus float32 rounding. The check enforces that bound.
4. quantize_model reaches every Linear and nothing else; GPT-2 124M in
   Q4_0, run on lesson 15's cache, against HuggingFace's float32 model on
   the same weights: the KL divergence of the next-token distributions
   and the share of greedy tokens that agree, over 64 steps along
   HuggingFace's greedy path, within limits (MAX_KL, MIN_AGREEMENT).
"""

from __future__ import annotations

import numpy as np

from tests.loading import construct, fail
from tests.parity import assert_close, likely_cause
from tests.twins import FULL_CONFIG, SMALL_CONFIGS, cases, lm_twins
from tools.quality import greedy_agreement, logits_along, next_token_kl

STEP = 17
SEED = 17
BLOCK, BLOCK_BYTES = 32, 18
# Measured at 124M (random O(1)-scale weights, tests/twins.py): mean KL 0.019 nats,
# 55 % of greedy tokens agreeing; these limits leave room for other seeds and machines.
MAX_KL, MIN_AGREEMENT, STEPS = 0.05, 0.35, 64
# Activations: 8-bit codes with one scale per block of x (Q8_0's 32 for Q4_0, Q8_K's 256 for K-quants).
ACTIVATION_BLOCK = {"q4_0": 32, "q4_k": 256, "q6_k": 256}
FLOAT32_ROUNDING = 1e-6  # relative to sum |x| |w|


# --- the quantizer ------------------------------------------------------------------------


def made_weights() -> np.ndarray:
    """[96, 96] (square, so that blocks along the wrong axis still give the right shape):
    random rows of several scales, and four blocks made to catch the slips."""
    rng = np.random.default_rng(SEED)
    w = (rng.standard_normal((96, 96)) * rng.uniform(0.01, 3, (96, 1))).astype(np.float32)
    w[0, :32] = 0  # a block of zeros: scale 0, codes 8
    w[1, :32] = np.linspace(-8, 7.5, 32)  # extreme -8: scale 1, halves (x + 8.5 = n + 0.5 ... ) round up
    w[2, :32] = -np.linspace(-8, 7.5, 32)  # extreme +8: scale -1, the extreme gets code 0
    w[3, 32:64] = rng.standard_normal(32) * 1e-3
    return w


def gguf_bytes(w: np.ndarray, fmt: str = "Q4_0") -> np.ndarray:
    from gguf import GGMLQuantizationType, quants

    return quants.quantize(w, getattr(GGMLQuantizationType, fmt))


def gguf_weights(packed: np.ndarray, fmt: str = "Q4_0") -> np.ndarray:
    from gguf import GGMLQuantizationType, quants

    return quants.dequantize(packed, getattr(GGMLQuantizationType, fmt))


def replay_q4_0(w, *, scale_of=None, rounding=None, inverse_of=None, pack=None, scale_last=False) -> np.ndarray:
    """The Q4_0 quantizer with one part done another way (a known mistake)."""
    blocks = w.astype(np.float32).reshape(w.shape[0], -1, BLOCK)
    extreme = np.take_along_axis(blocks, np.abs(blocks).argmax(-1)[..., None], -1)
    scale = (scale_of or (lambda b, e: e / -8))(blocks, extreme).astype(np.float32)
    scale_for_codes = (inverse_of or (lambda s: s))(scale)
    with np.errstate(divide="ignore"):
        inverse = np.where(scale_for_codes == 0, 0, 1 / scale_for_codes).astype(np.float32)
    codes = np.clip((rounding or (lambda v: np.trunc(v + np.float32(8.5))))(blocks * inverse), 0, 15).astype(np.uint8)
    packed = (pack or (lambda c: c[..., :16] | (c[..., 16:] << 4)))(codes)
    parts = [scale.astype(np.float16).view(np.uint8), packed]
    return np.concatenate(parts[::-1] if scale_last else parts, -1).reshape(w.shape[0], -1)


def quantizer_mistakes(w: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "the scale comes from the block's mean magnitude. It must come from the weight of largest magnitude, "
        "sign kept, divided by -8, so that this weight lands exactly on a code.":
            replay_q4_0(w, scale_of=lambda b, e: -np.abs(b).mean(-1, keepdims=True) / 8 * np.sign(e)),
        "the scale is max|w| / 8, sign dropped. llama.cpp keeps the extreme's sign and divides by -8: the "
        "extreme weight then always gets code 0 (-8), the one code with no partner at +8.":
            replay_q4_0(w, scale_of=lambda b, e: np.abs(e) / 8),
        "the scale is max|w| / 7 (a symmetric -7..7). Q4_0 uses all 16 codes: the extreme weight, sign kept, "
        "divided by -8.":
            replay_q4_0(w, scale_of=lambda b, e: np.abs(e) / 7),
        "the codes are rounded with np.round (halves to even). llama.cpp rounds halves up: "
        "trunc(w / scale + 8.5), which also adds the offset of 8.":
            replay_q4_0(w, rounding=lambda v: np.round(v) + 8),
        "the codes are computed with the float16 scale. llama.cpp computes them with the exact float32 "
        "scale and rounds only the stored copy to float16.":
            replay_q4_0(w, inverse_of=lambda s: s.astype(np.float16).astype(np.float32)),
        "the nibbles are paired as neighbours (weights 2j and 2j+1 in byte j). GGUF puts weight j in the "
        "low 4 bits of byte j and weight 16 + j in its high 4 bits.":
            replay_q4_0(w, pack=lambda c: c[..., 0::2] | (c[..., 1::2] << 4)),
        "the two halves are swapped: weight j goes in the LOW 4 bits of byte j, weight 16 + j in the high 4 bits.":
            replay_q4_0(w, pack=lambda c: c[..., 16:] | (c[..., :16] << 4)),
        "the scale comes after the codes: each 18-byte block starts with its float16 scale.":
            replay_q4_0(w, scale_last=True),
        "the blocks run down the columns (along N). They run along a row, K: the 32 inputs of one output "
        "share a scale, since a row is what one output reads.":
            replay_q4_0(w.T.copy()),
    }


def codes_of(packed: np.ndarray) -> np.ndarray:
    """The 4-bit codes of [N, blocks * 18] Q4_0 bytes, in the order the bytes hold them."""
    nibbles = packed.reshape(packed.shape[0], -1, BLOCK_BYTES)[..., 2:]
    return np.concatenate([nibbles & 0x0F, nibbles >> 4], -1)


def test_quantizer_matches_gguf(lesson):
    """quantize_q4_0 on the made-up blocks and random weights, byte for byte against gguf."""
    quantize = lesson.get("quantize_q4_0")
    w = made_weights()
    doing = f"quantize_q4_0(weight {list(w.shape)} float32)"
    got = np.asarray(lesson.call(doing, quantize, w.copy()))
    want = gguf_bytes(w)
    if got.dtype != np.uint8 or got.shape != want.shape:
        fail(f"{doing} gave {got.dtype} {list(got.shape)}; Q4_0 is uint8 [N, K / 32 * 18] = {list(want.shape)}: "
             f"per row, K / 32 blocks of 18 bytes (a float16 scale, then 16 bytes of 4-bit codes).")
    if np.array_equal(got, want):
        return
    bad = np.argwhere(got.reshape(96, -1, BLOCK_BYTES) != want.reshape(96, -1, BLOCK_BYTES).astype(np.uint8))[0]
    message = (f"{doing} differs from gguf.quants.quantize (llama.cpp's reference): first in row {bad[0]}, "
               f"block {bad[1]}, byte {bad[2]} of 18 (bytes 0-1 are the float16 scale).")
    for hint, replayed in quantizer_mistakes(w).items():
        if replayed.shape == got.shape and np.array_equal(got, replayed):
            fail(f"{message}\nLikely cause: {hint}")
    shift = (codes_of(got).astype(int) - codes_of(want)) % 16  # 8 everywhere, give or take a rounding
    if np.isin(shift, (7, 8, 9)).all() and np.mean(shift == 8) > 0.5:
        fail(f"{message}\nLikely cause: the codes are not offset by 8. A code is round(w / scale) + 8, "
             "so that -8..7 becomes 0..15 and fits in 4 unsigned bits.")
    fail(message)


def test_dequantizer_matches_gguf(lesson):
    """dequantize_q4_0 on gguf's bytes, against gguf.quants.dequantize."""
    dequantize = lesson.get("dequantize_q4_0")
    packed = gguf_bytes(made_weights())
    want = gguf_weights(packed)
    doing = f"dequantize_q4_0(packed {list(packed.shape)} uint8)"
    got = np.asarray(lesson.call(doing, dequantize, packed.copy()))
    blocks = packed.reshape(96, -1, BLOCK_BYTES)
    scale = blocks[..., :2].copy().view(np.float16).astype(np.float32)
    low, high = (blocks[..., 2:] & 0x0F).astype(np.float32), (blocks[..., 2:] >> 4).astype(np.float32)

    def interleaved():
        codes = np.stack([low, high], -1).reshape(96, -1, BLOCK)
        return (scale * (codes - 8)).reshape(96, -1)

    mistakes = {
        "the codes are not offset: a weight is scale * (code - 8).":
            lambda: (scale * np.concatenate([low, high], -1)).reshape(96, -1),
        "the nibbles are read as neighbours: the low 4 bits of byte j are weight j, its high 4 bits weight 16 + j.":
            interleaved,
        "the halves are swapped: the LOW 4 bits of byte j are weight j, the high 4 bits weight 16 + j.":
            lambda: (scale * (np.concatenate([high, low], -1) - 8)).reshape(96, -1),
        "the scale's two bytes are read in the wrong order: .view(np.float16) on the pair as it is "
        "(GGUF stores it little-endian).":
            lambda: (blocks[..., 1::-1].copy().view(np.float16).astype(np.float32)
                     * (np.concatenate([low, high], -1) - 8)).reshape(96, -1),
    }
    assert_close(doing, got, want, ("row", "weight"), mistakes, reference="gguf.quants.dequantize",
                 margins=lesson.margins)


# --- the layer ----------------------------------------------------------------------------


def activation_bound(x: np.ndarray, w: np.ndarray, block: int) -> np.ndarray:
    """How far rounding x to 8 bits per block (scale max|x_block| / 127) can move x @ w.T, per output."""
    rows = x.reshape(-1, x.shape[-1])
    step = np.abs(rows.reshape(rows.shape[0], -1, block)).max(-1) / 127  # [rows, blocks]
    weight = np.abs(w).reshape(w.shape[0], -1, block).sum(-1)  # [N, blocks]
    rounding = FLOAT32_ROUNDING * (np.abs(rows) @ np.abs(w).T)
    return (step / 2 @ weight.T + rounding).reshape(*x.shape[:-1], w.shape[0])


def test_quantized_linear(lesson):
    """QuantizedLinear(Linear(256, 40), fmt) for q4_0, q4_k and q6_k, one graph, against numpy."""
    from max import driver
    from max.dtype import DType
    from max.engine import InferenceSession
    from max.graph import DeviceRef, TensorType
    from max.nn.module_v3 import Linear, Module
    from tests.twins import load_weights
    from tools.kv_engine import build_graph

    from solutions.kquants import quantize_q4_k, quantize_q6_k

    quantized_linear = lesson.get("QuantizedLinear")
    rng = np.random.default_rng(SEED)
    k, n = 256, 40  # 40 outputs: not a multiple of 32, as the LM head's 50257
    weight = (rng.standard_normal((n, k)) * 0.3).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    formats = {"q4_0": lambda w: gguf_bytes(w), "q4_k": quantize_q4_k, "q6_k": quantize_q6_k}
    layers = {}
    for fmt in formats:
        linear = Linear(k, n, bias=True)
        load_weights(linear, {"weight": weight, "bias": bias}, "Linear(256, 40)")
        layers[fmt] = construct(lesson, "QuantizedLinear", linear, fmt)
        stored = np.from_dlpack(layers[fmt].weight)
        if stored.dtype != np.uint8 or stored.shape[0] % 32:
            fail(f"QuantizedLinear(Linear(256, 40), {fmt!r}).weight is {stored.dtype} {list(stored.shape)}: it must "
                 "be the packed uint8 rows, padded with zero rows to a multiple of 32 (ops.qmatmul needs that).")

    class AllFormats(Module):
        def __init__(self, layers):
            self.q4_0, self.q4_k, self.q6_k = layers.values()

        def __call__(self, tokens, rows):
            return [layer(x) for layer in (self.q4_0, self.q4_k, self.q6_k) for x in (tokens, rows)]

    cpu = DeviceRef.CPU()
    types = [TensorType(DType.float32, ["batch", "seq", k], device=cpu), TensorType(DType.float32, ["rows", k], device=cpu)]
    with lesson.learner_code("compiling QuantizedLinear in q4_0, q4_k and q6_k on x [batch, seq, 256] and [rows, 256]"):
        graph, weights = build_graph(AllFormats(layers), *types)
        model = InferenceSession(devices=[driver.CPU()]).load(graph, weights_registry=weights)
    inputs = [rng.standard_normal((2, 3, k)).astype(np.float32), rng.standard_normal((5, k)).astype(np.float32)]
    with lesson.learner_code("running QuantizedLinear"):
        outputs = [np.from_dlpack(t).astype(np.float64) for t in model.execute(*map(driver.Tensor.from_numpy, inputs))]
    for i, (fmt, quantize) in enumerate(formats.items()):
        padded = np.pad(weight, ((0, 24), (0, 0)))
        decoded = gguf_weights(quantize(padded), fmt.upper())[:n].astype(np.float64)
        for x, got in zip(inputs, outputs[2 * i : 2 * i + 2]):
            want = x @ decoded.T + bias
            bound = activation_bound(x, decoded, ACTIVATION_BLOCK[fmt])
            mistakes = {
                "the bias is not added: y = qmatmul(...) + self.bias.": lambda x=x: x @ decoded.T,
                "the padded rows are not cut off: keep the first out_dim outputs (y[..., :out_dim]).":
                    lambda x=x: np.zeros((*x.shape[:-1], n + 24)),
                "the float32 weights are used, not the quantized ones: quantize them in __init__ and multiply "
                "by the packed bytes with ops.qmatmul.": lambda x=x: x @ weight.T.astype(np.float64) + bias,
            }
            what = f"QuantizedLinear(Linear(256, 40), {fmt!r}) on x {list(x.shape)}"
            check_shape_and_bound(what, got, want, bound, mistakes)


def check_shape_and_bound(what, got, want, bound, mistakes) -> None:
    axes = ("batch", "position", "output")[-got.ndim:]
    if got.shape != want.shape:
        named = [hint for hint, f in mistakes.items() if f().shape == got.shape]
        fail(f"{what}: shape {list(got.shape)}, numpy's is {list(want.shape)} ({', '.join(axes)})."
             + (f"\nLikely cause: {named[0]}" if named else ""))
    over = np.abs(got - want) - bound
    if np.all(over <= 0):
        return
    at = np.unravel_index(np.argmax(over), got.shape)
    where = ", ".join(f"{a} {i}" for a, i in zip(axes, at))
    message = (f"{what} does not match numpy x @ dequantize(W).T + b.\n  at [{where}]: yours {got[at]:.6g}, "
               f"numpy {want[at]:.6g}; ops.qmatmul's 8-bit activations can move it by {bound[at]:.3g} at most.")
    for hint, f in mistakes.items():
        other = f()
        if other.shape == got.shape and np.all(np.abs(got - other) <= bound):
            fail(f"{message}\nLikely cause: {hint}")
    fail(message)


# --- the model ----------------------------------------------------------------------------


def test_quantize_model_reaches_every_linear(lesson):
    """quantize_model on a small GPT-2: 4 Linears per block and the LM head, embeddings and norms untouched."""
    from max.nn.module_v3 import Linear

    from solutions.solution_15 import BatchedGPT2LMHeadModel

    case = cases(SMALL_CONFIGS)[0]
    _, model = lm_twins(case, SEED, BatchedGPT2LMHeadModel(case.max), f"BatchedGPT2LMHeadModel [{case.label}]")
    wte = np.from_dlpack(model.transformer.wte.weight).copy()
    doing = f"quantize_model(BatchedGPT2LMHeadModel [{case.label}], 'q4_0')"
    returned = lesson.call(doing, lesson.get("quantize_model"), model, "q4_0")
    if returned is not model:
        fail(f"{doing} returned {type(returned).__name__}, not the model it was given: return model.")
    kinds = [type(layer).__name__ for _, layer in model.descendants]
    linears = 4 * case.max.n_layer + 1
    if kinds.count("QuantizedLinear") != linears or any(type(m) is Linear for _, m in model.descendants):
        fail(f"after {doing}: {kinds.count('QuantizedLinear')} QuantizedLinear and {kinds.count('Linear')} Linear; "
             f"the model has {linears} Linears (c_attn, attn.c_proj, c_fc, mlp.c_proj per block, and lm_head), "
             "and every one must become a QuantizedLinear.\nLikely cause: quantize_model does not reach every "
             "Linear: look at every module inside (model.descendants, and the model itself for lm_head), and "
             "replace each Linear child by setting the attribute on its parent.")
    if not np.array_equal(np.from_dlpack(model.transformer.wte.weight), wte):
        fail(f"after {doing}, the token embeddings changed: keep wte (and wpe) in float32. A lookup reads one "
             "row per token, so quantizing them saves no reading time.")
    lesson.expect_raises(ValueError, f"quantize_model(model, 'q3_x')",
                         lambda: lesson.get("quantize_model")(model, "q3_x"))


def test_gpt2_124m_in_q4_0(lesson):
    """124M in Q4_0 on lesson 15's cache, 64 steps along HuggingFace's greedy path: KL and greedy agreement."""
    import torch

    from solutions.solution_15 import BatchedGPT2LMHeadModel, BatchedKVCache
    from tests.twins import hf_generate
    from tools.kv_engine import compile_batched_model

    case = cases(FULL_CONFIG)[0]
    hf, model = lm_twins(case, SEED, BatchedGPT2LMHeadModel(case.max), "BatchedGPT2LMHeadModel [gpt2 124M]")
    lesson.call("quantize_model(GPT-2 124M, 'q4_0')", lesson.get("quantize_model"), model, "q4_0")
    with lesson.learner_code("compiling GPT-2 124M in q4_0 with tools/kv_engine.py"):
        compiled = compile_batched_model(model)
    prompt = np.random.default_rng(SEED).integers(0, case.max.vocab_size, (1, 16))
    path = hf_generate(hf, prompt, STEPS, do_sample=False)  # [1, 16 + STEPS]
    with torch.no_grad():
        reference = hf(torch.from_numpy(path)).logits[0, 15 : 15 + STEPS].numpy()
    cache = BatchedKVCache(case.max, 1, path.shape[1])
    with lesson.learner_code("GPT-2 124M in q4_0: prefill, then 63 decode steps along HuggingFace's greedy tokens"):
        logits = logits_along(compiled, cache, path, 16)
    kl, agreement = next_token_kl(reference, logits), greedy_agreement(reference, logits)
    if not (kl.mean() <= MAX_KL and agreement >= MIN_AGREEMENT):
        fail(f"GPT-2 124M in q4_0 against HuggingFace float32 on the same weights, {STEPS} steps: mean KL "
             f"{kl.mean():.4f} nats (limit {MAX_KL}), greedy tokens agreeing {agreement:.0%} (limit "
             f"{MIN_AGREEMENT:.0%}). The quantizer and the layer passed on their own, so look at what changed "
             "between them and the model: every Linear quantized from its own loaded weights, the LM head "
             "padded and cut back to vocab_size.")
