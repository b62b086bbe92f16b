"""
Solution for Step 17: Quantized weights

A decode step reads every weight once, so it can go no faster than the
bytes of the weights allow. Storing them in 4 bits instead of 32 reads
about 7x fewer bytes. Q4_0, llama.cpp's first format, cuts each row into
blocks of 32 weights: one float16 scale per block, and a 4-bit code per
weight. MAX's ops.qmatmul multiplies by such rows directly.
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
    blocks = weight.astype(np.float32).reshape(rows, width // BLOCK, BLOCK)  # [N, blocks, 32], along K
    where = np.abs(blocks).argmax(axis=-1)[..., None]
    extreme = np.take_along_axis(blocks, where, axis=-1)  # [N, blocks, 1]: the largest magnitude, sign kept
    scale = extreme / -8  # the extreme weight gets code 0, i.e. -8 * scale
    with np.errstate(divide="ignore"):
        inverse = np.where(scale == 0, 0, 1 / scale).astype(np.float32)
    codes = np.clip(np.trunc(blocks * inverse + np.float32(8.5)), 0, 15).astype(np.uint8)  # round, offset by 8
    packed = codes[..., :16] | (codes[..., 16:] << 4)  # byte j: weight j low, weight 16 + j high
    stored_scale = scale.astype(np.float16).view(np.uint8)  # [N, blocks, 2]
    return np.concatenate([stored_scale, packed], axis=-1).reshape(rows, -1)  # [N, blocks * 18]


def dequantize_q4_0(packed: np.ndarray) -> np.ndarray:
    """[N, K // 32 * 18] uint8 -> weight [N, K] float32: scale * (code - 8)."""
    rows = packed.shape[0]
    blocks = packed.reshape(rows, -1, BLOCK_BYTES)  # [N, blocks, 18]
    scale = blocks[..., :2].copy().view(np.float16).astype(np.float32)  # [N, blocks, 1]
    low, high = blocks[..., 2:] & 0x0F, blocks[..., 2:] >> 4  # [N, blocks, 16] each
    codes = np.concatenate([low, high], axis=-1).astype(np.float32) - 8  # [N, blocks, 32]
    return (scale * codes).reshape(rows, -1)


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
        padding = -self.out_dim % ROWS_MULTIPLE  # zero rows, cut off again after the product
        weight = np.pad(weight, ((0, padding), (0, 0)))
        self.weight = Tensor.from_dlpack(quantize(weight))  # [out_dim + padding, bytes per row] uint8
        self.encoding = encoding
        self.bias = linear.bias

    def __call__(self, x: Tensor) -> Tensor:
        y = qmatmul(self.encoding, None, x, self.weight)  # [..., out_dim + padding]
        return y[..., : self.out_dim] + self.bias


def quantize_model(model: Module, format: str) -> Module:
    """Every Linear of model (weights loaded) becomes a QuantizedLinear in format."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    for module in [model, *(child for _, child in model.descendants)]:
        for name, layer in list(module.children):
            if type(layer) is Linear:
                setattr(module, name, QuantizedLinear(layer, format))
    return model
