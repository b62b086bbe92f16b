"""
Step 17: Quantized weights

Lesson 16 brought a decode step close to its floor: the time to read every
weight once. Below that floor there is one way down: fewer bytes. Store
each weight in 4 bits instead of 32 and a decode step reads about 7 times
fewer bytes. This is how llama.cpp runs models on laptops, and its file
format, GGUF, defines the block formats everyone uses. MAX runs three of
them on the CPU with ops.qmatmul; this lesson writes the simplest, Q4_0,
and runs GPT-2 in all three.

Q4_0 cuts each row of a weight matrix (one output's K inputs) into blocks
of 32 weights. A block stores one float16 scale and 32 codes of 4 bits:

    bytes   [scale: 2 bytes, float16][16 bytes: two 4-bit codes in each]
    weight  w = scale * (code - 8)          code in 0..15, so w/scale in -8..7

    18 bytes per 32 weights = 4.5 bits per weight (float32: 32 bits)

The scale: take the block's weight of largest magnitude, sign kept (call
it e), and scale = e / -8. Then e itself is exactly code 0 (scale * -8),
and every other weight lies between -8 and +8 scales. Why -8 and not +8?
Four bits give the codes -8..7: one more on the negative side. Dividing by
-8 puts the extreme on the side that has room, whatever its sign. (A
block of zeros has scale 0: every code is 8.)

The codes: code = round(w / scale) + 8, clipped to 0..15. llama.cpp rounds
halves up, as trunc(w / scale + 8.5); np.round rounds halves to even and
gives other bytes. It computes the codes with the exact float32 scale and
rounds only the stored copy to float16.

The bytes: byte j of a block's 16 holds weight j in its low 4 bits and
weight 16 + j in its high 4 bits (not neighbours 2j and 2j+1):
    byte j = code[j] | (code[16 + j] << 4)
The float16 scale's 2 bytes come first (numpy's .view(np.uint8) of a
float16 array gives them in the order GGUF stores them, little-endian).

What rounding costs: a weight moves by at most half a step (scale / 2),
and a block with one large weight gives all its others a coarse step: the
format trades bytes for this error. The K-quants spend a few more bits to
cut it (given in solutions/kquants.py; read it after this lesson):

    q4_0  32 weights share a float16 scale               4.5 bits
    q4_k  super-blocks of 256: 8 sub-blocks of 32, each  4.5 bits
          with a 6-bit scale and a 6-bit minimum
    q6_k  super-blocks of 256: 16 sub-blocks of 16,      6.5625 bits
          each with an 8-bit scale; codes of 6 bits

The layer: module_v3 has no quantized Linear, so you write one.
QuantizedLinear takes a loaded Linear and a format name. It quantizes the
weight [out_dim, in_dim] along in_dim (the blocks run along a row: the
inputs that one output reads), and keeps the packed bytes as its weight,
a uint8 Tensor [out_dim, in_dim / 32 * 18] for Q4_0. In the graph,

    ops.qmatmul(encoding, None, x, packed)    x [..., in_dim] -> [..., out_dim]

multiplies x by the weight that the bytes stand for, transposed, as
Linear does. Two facts of MAX 25.7 shape the code:
  - the packed weight must have a multiple of 32 rows. GPT-2's LM head has
    50257: pad the float weight with zero rows before quantizing, and cut
    the output back to out_dim after the product.
  - the op rounds x to 8 bits too (one scale per block of x), so its result
    is close to x @ dequantize(W).T, not equal. The check states the bound
    that this rounding allows, and holds you to it.

The model: quantize_model walks every module of a loaded model and
replaces each Linear child with a QuantizedLinear: the 4 Linears of each
block and the LM head. The embeddings stay float32: a lookup reads one row
per token, so quantizing them would save memory but no reading time, and
cost accuracy. The quantized GPT-2 runs on lesson 15's cache through
tools/kv_engine.py as it is: ops.qmatmul takes any number of tokens, so
one graph serves the prefill and every decode step.

Tasks:
  1. quantize_q4_0: the blocks and their extreme weights; the scale and
     the codes; the bytes
  2. dequantize_q4_0: back from bytes to float32 weights
  3. QuantizedLinear: quantize the padded weight; qmatmul, cut, bias
  4. quantize_model: every Linear becomes a QuantizedLinear

The check: your quantizer's bytes against the `gguf` package's
(llama.cpp's reference quantizer, in Python) byte for byte; your
dequantizer against gguf's; QuantizedLinear in all three formats against
numpy within the 8-bit bound; then GPT-2 124M in Q4_0 against
HuggingFace's float32 model on the same weights, over 64 greedy steps:
the KL divergence of the next-token distributions and how many greedy
tokens agree, within limits.

Stuck? `pixi run hint s17` (or `python hint.py s17`) shows a hint for
your first open TODO, one rung per call.

Run: pixi run s17

Measure it: `python bench.py --quantize q4_0 q4_k q6_k` times a decode
step in each format beside float32 and HuggingFace in one run, with the
bytes per step, the KL divergence and the greedy agreement of each, and
llama.cpp on the same weights when llama-cpp-python is installed.
generate.py and serve.py take `--quantize q4_0` (or q4_k, q6_k).
"""

import numpy as np
from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.graph import ops
from max.graph.quantization import QuantizationEncoding
from max.nn.module_v3 import Linear, Module

from solutions.kquants import quantize_q4_k, quantize_q6_k

BLOCK = 32  # Q4_0: weights per block
BLOCK_BYTES = 2 + BLOCK // 2  # a float16 scale, then 32 codes of 4 bits


def quantize_q4_0(weight: np.ndarray) -> np.ndarray:
    """weight [N, K] float32, K a multiple of 32 -> [N, K // 32 * 18] uint8, GGUF's Q4_0 blocks."""
    rows, width = weight.shape
    # TODO: Blocks of 32 along each row, and each block's weight of largest magnitude, sign kept
    # Hint: Reshape to [N, K / 32, 32] (float32). np.abs(...).argmax over the last axis finds where the
    # Hint: extreme is; np.take_along_axis reads it, sign included (keep the last axis, of size 1).
    blocks = None
    extreme = None
    # TODO: The scale (the extreme divided by -8) and the codes (rounded halves up, offset by 8, clipped)
    # Hint: The inverse scale is 0 where the scale is 0 (a block of zeros); np.errstate(divide="ignore")
    # Hint: quiets numpy while np.where picks. Codes: trunc(w * inverse + 8.5), clipped to 0..15, as uint8.
    codes = None
    # TODO: Two codes per byte (weight j low, weight 16 + j high), after the scale's 2 float16 bytes
    # Hint: OR the first 16 codes of a block with the last 16 shifted left by 4. The scale as float16,
    # Hint: viewed as uint8, gives its 2 bytes; concatenate them before the 16 on the last axis, then one
    # Hint: row of N.
    return None


def dequantize_q4_0(packed: np.ndarray) -> np.ndarray:
    """[N, K // 32 * 18] uint8 -> weight [N, K] float32: scale * (code - 8)."""
    rows = packed.shape[0]
    # TODO: Split each 18-byte block into its scale and 32 codes, and give back the weights
    # Hint: Reshape to [N, blocks, 18]; the first 2 bytes of each, copied and viewed as float16, are the
    # Hint: scale. & 0x0F gives the low nibbles (weights 0..15), >> 4 the high ones (16..31).
    return None


# The formats the course runs: a name, MAX's encoding, and a quantizer.
FORMATS = {
    "q4_0": (QuantizationEncoding.Q4_0, quantize_q4_0),
    "q4_k": (QuantizationEncoding.Q4_K, quantize_q4_k),
    "q6_k": (QuantizationEncoding.Q6_K, quantize_q6_k),
}
ROWS_MULTIPLE = 32  # ops.qmatmul needs a multiple of 32 output rows
qmatmul = F.functional(ops.qmatmul)


class QuantizedLinear(Module):
    """A Linear whose weight is stored quantized: y = x @ W.T + b with ops.qmatmul."""

    def __init__(self, linear: Linear, format: str):
        encoding, quantize = FORMATS[format]
        weight = np.from_dlpack(linear.weight)  # [out_dim, in_dim] float32
        self.out_dim = weight.shape[0]
        # TODO: Pad the weight with zero rows to a multiple of 32, and keep its packed bytes as a Tensor
        # Hint: -out_dim % 32 is how many rows are missing; np.pad adds them at the end of axis 0.
        # Hint: Tensor.from_dlpack turns the quantizer's numpy bytes into the layer's weight.
        self.weight = None
        self.encoding = encoding
        self.bias = linear.bias

    def __call__(self, x: Tensor) -> Tensor:
        # TODO: The quantized product, cut back to out_dim, plus the bias
        # Hint: qmatmul(the encoding, None for its config, x, the packed weight) gives [..., padded rows];
        # Hint: keep the first out_dim on the last axis (y[..., :n]) and add the bias.
        return None


def quantize_model(model: Module, format: str) -> Module:
    """Every Linear of model (weights loaded) becomes a QuantizedLinear in format."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    # TODO: Replace every Linear child of the model, and of every module inside it, with a QuantizedLinear
    # Hint: model.descendants yields every module inside (not the model itself: its own lm_head is its child);
    # Hint: module.children yields (name, child) pairs; setattr on the parent puts the new layer in place.
    # Hint: Check the exact type, type(layer) is Linear, and list() the children before changing them.
    return None
