"""The judge's catalogue for lesson 17 (quantized weights), in the form of
tests/catalogue.py (which adds these to VARIANTS): each mistake must fail
its check with its hint, and correct code written another way must pass."""

from tests.catalogue import correct, mistake

LESSON_17 = [
    # the quantizer
    mistake(17, "scale-from-mean", "the block's mean magnitude",
            ("    scale = extreme / -8  #", "    scale = -np.abs(blocks).mean(axis=-1, keepdims=True) / 8 * np.sign(extreme)  #")),
    mistake(17, "scale-sign-dropped", "sign dropped",
            ("    scale = extreme / -8  #", "    scale = np.abs(extreme) / 8  #")),
    mistake(17, "codes-not-offset", "the codes are not offset by 8",
            ("np.trunc(blocks * inverse + np.float32(8.5))", "np.trunc(blocks * inverse + np.float32(0.5)) % 16")),
    mistake(17, "halves-to-even", "np.round",
            ("np.clip(np.trunc(blocks * inverse + np.float32(8.5)), 0, 15)", "np.clip(np.round(blocks * inverse) + 8, 0, 15)")),
    mistake(17, "nibbles-as-neighbours", "paired as neighbours",
            ("    packed = codes[..., :16] | (codes[..., 16:] << 4)", "    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)")),
    mistake(17, "blocks-along-n", "the blocks run down the columns",
            ("    rows, width = weight.shape\n    blocks = weight.astype(np.float32)",
             "    rows, width = weight.shape\n    weight = weight.T\n    blocks = weight.astype(np.float32)")),
    # the dequantizer
    mistake(17, "dequantize-without-offset", "scale * (code - 8)",
            ("np.concatenate([low, high], axis=-1).astype(np.float32) - 8", "np.concatenate([low, high], axis=-1).astype(np.float32)")),
    # the layer and the model
    mistake(17, "bias-not-added", "the bias is not added",
            ("        return y[..., : self.out_dim] + self.bias", "        return y[..., : self.out_dim]")),
    mistake(17, "model-children-only", "does not reach every Linear",
            ("    for module in [model, *(child for _, child in model.descendants)]:", "    for module in [model]:")),
    # correct code written another way
    correct(17, "codes-by-rint-of-shifted", ("np.clip(np.trunc(blocks * inverse + np.float32(8.5)), 0, 15)",
                                             "np.clip(np.floor(blocks * inverse + np.float32(8.5)), 0, 15)")),
    correct(17, "dequantize-by-stack", ("    low, high = blocks[..., 2:] & 0x0F, blocks[..., 2:] >> 4  # [N, blocks, 16] each\n"
                                        "    codes = np.concatenate([low, high], axis=-1).astype(np.float32) - 8  # [N, blocks, 32]",
                                        "    nibbles = np.stack([blocks[..., 2:] & 0x0F, blocks[..., 2:] >> 4], axis=-2)  # [N, blocks, 2, 16]\n"
                                        "    codes = nibbles.reshape(rows, -1, BLOCK).astype(np.float32) - 8")),
]
