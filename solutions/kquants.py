"""GGUF's K-quant formats Q4_K and Q6_K: quantizers written for lesson 17.

Not a lesson: the course provides these so that `--quantize q4_k` and
`--quantize q6_k` have weights to run. Lesson 17's learner writes Q4_0;
these follow the same idea one level up. A super-block of 256 weights
holds small sub-blocks, each with its own scale stored in a few bits, and
one float16 number per super-block that scales those scales.

    Q4_K  144 bytes per 256 weights (4.5 bits): 8 sub-blocks of 32, each
          with a 6-bit scale and a 6-bit minimum; codes 0..15;
          w = d * scale_j * code - dmin * min_j.
    Q6_K  210 bytes per 256 weights (6.5625 bits): 16 sub-blocks of 16,
          each with an int8 scale; codes -32..31; w = d * scale_j * code.

The byte layouts are GGUF's (llama.cpp's block_q4_K and block_q6_K).
The rounding is the plain one (nearest code for a scale set by the
sub-block's range), not llama.cpp's search for the best scale, so the
error is a little larger than llama.cpp's own quantizer gives.
tests/test_step_17.py decodes these bytes with the `gguf` package's
dequantizers (an independent reading of the format) and holds
ops.qmatmul to what they give.
"""

import numpy as np

SUPER = 256  # weights per super-block


def _super_blocks(weight: np.ndarray) -> np.ndarray:
    rows, width = weight.shape
    if width % SUPER:
        raise ValueError(f"K-quants need rows of a multiple of {SUPER} weights, got {width}")
    return weight.astype(np.float32).reshape(rows * width // SUPER, SUPER)  # [blocks, 256]


def _float16(x: np.ndarray) -> np.ndarray:
    """float32 -> the float32 value of its float16 rounding (what the block stores)."""
    return x.astype(np.float16).astype(np.float32)


def _inverse(scale: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(scale == 0, 0, 1 / np.where(scale == 0, 1, scale)).astype(np.float32)


def quantize_q4_k(weight: np.ndarray) -> np.ndarray:
    """weight [N, K] float32 (K a multiple of 256) -> [N, K // 256 * 144] uint8 in GGUF's Q4_K layout."""
    rows = weight.shape[0]
    x = _super_blocks(weight).reshape(-1, 8, 32)  # [blocks, sub-block, 32]
    low = np.minimum(x.min(axis=-1), 0)  # each sub-block's range, 0 included
    step = (x.max(axis=-1) - low) / 15  # [blocks, 8]
    d = _float16(step.max(axis=-1, keepdims=True) / 63)  # scales of the 6-bit scales
    dmin = _float16(-low.min(axis=-1, keepdims=True) / 63)
    scales = np.clip(np.ceil(step * _inverse(d)), 0, 63).astype(np.uint8)  # round up: no code past 15
    mins = np.clip(np.round(-low * _inverse(dmin)), 0, 63).astype(np.uint8)
    effective = d * scales
    codes = np.round((x + (dmin * mins)[..., None]) * _inverse(effective)[..., None])
    codes = np.clip(codes, 0, 15).astype(np.uint8)  # [blocks, 8, 32]

    # Sub-blocks 2c and 2c+1 share 32 bytes: low nibbles, then high nibbles.
    pairs = codes.reshape(-1, 4, 2, 32)
    qs = (pairs[:, :, 0, :] | (pairs[:, :, 1, :] << 4)).reshape(-1, 128)
    # 12 bytes hold 8 six-bit scales and 8 six-bit mins: sub-blocks 0-3 in
    # the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7
    # put their low 4 bits in bytes 8-11 and their top 2 bits in the top
    # 2 bits of bytes 0-7.
    s_lo, s_hi, m_lo, m_hi = scales[:, :4], scales[:, 4:], mins[:, :4], mins[:, 4:]
    packed_scales = np.concatenate([
        s_lo | ((s_hi >> 4) << 6),
        m_lo | ((m_hi >> 4) << 6),
        (s_hi & 0x0F) | ((m_hi & 0x0F) << 4),
    ], axis=-1)
    header = np.concatenate([d.astype(np.float16).view(np.uint8), dmin.astype(np.float16).view(np.uint8)], axis=-1)
    return np.concatenate([header, packed_scales, qs], axis=-1).reshape(rows, -1)


def quantize_q6_k(weight: np.ndarray) -> np.ndarray:
    """weight [N, K] float32 (K a multiple of 256) -> [N, K // 256 * 210] uint8 in GGUF's Q6_K layout."""
    rows = weight.shape[0]
    x = _super_blocks(weight).reshape(-1, 16, 16)  # [blocks, sub-block, 16]
    where = np.abs(x).argmax(axis=-1)[..., None]
    step = np.take_along_axis(x, where, axis=-1)[..., 0] / -32  # signed, as in Q4_0: the extreme maps to -32
    biggest = np.take_along_axis(step, np.abs(step).argmax(axis=-1)[:, None], axis=-1)
    d = _float16(biggest / -128)  # [blocks, 1]
    scales = np.clip(np.round(step * _inverse(d)), -128, 127).astype(np.int8)  # [blocks, 16]
    effective = d * scales
    codes = np.clip(np.round(x * _inverse(effective)[..., None]), -32, 31).astype(np.int8)
    biased = (codes.reshape(-1, 2, 128) + 32).astype(np.uint8)  # 0..63, two halves of 128

    # Each half: the low 4 bits of weights j and 64+j share byte j of ql;
    # the top 2 bits of weights j, 32+j, 64+j, 96+j share byte j of qh.
    low = (biased & 0x0F).reshape(-1, 2, 2, 64)
    ql = (low[:, :, 0, :] | (low[:, :, 1, :] << 4)).reshape(-1, 128)
    high = (biased >> 4).reshape(-1, 2, 4, 32)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)).reshape(-1, 64)
    return np.concatenate([ql, qh, scales.view(np.uint8), d.astype(np.float16).view(np.uint8)], axis=-1).reshape(rows, -1)
