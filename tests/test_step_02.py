"""Step 02: causal_mask against the mask HuggingFace's GPT-2 attention applies
(its lower-triangular `bias` buffer, sliced for queries after num_tokens
earlier tokens), as 0 (may attend) and -inf (may not): for num_tokens 0 and
3, then with num_tokens symbolic, as the KV cache of step 14 calls it."""

import numpy as np
from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

from tests.parity import Run, assert_close, run_together
from tests.twins import hf_config

STEP = 2
SEQUENCE_LENGTHS = [6, 67, 1]  # the least ambiguous first
NUM_TOKENS = [0, 3]
REFERENCE = "HuggingFace's causal mask"


def huggingface_allowed(seq: int, num_tokens: int) -> np.ndarray:
    """HuggingFace's boolean causal mask for seq queries after num_tokens earlier tokens."""
    attention = GPT2Attention(hf_config(dict(n_embd=8, n_head=2, n_positions=128)))
    key_length = seq + num_tokens
    return attention.bias[0, 0, key_length - seq : key_length, :key_length].numpy()


def additive(allowed: np.ndarray) -> np.ndarray:
    return np.where(allowed, 0.0, -np.inf)


def mask_mistakes(seq: int, num_tokens: int, mask: np.ndarray):
    keys = seq + num_tokens
    allowed = huggingface_allowed(seq, num_tokens)
    rows, cols = np.arange(seq)[:, None], np.arange(keys)[None, :]
    mistakes = {}
    blocked = np.unique(mask[~allowed]) if mask.shape == allowed.shape and (~allowed).any() else []
    if len(blocked) == 1 and np.isfinite(blocked[0]) and blocked[0] <= -1e4:
        hint = (
            f"the blocked entries hold a large negative number ({blocked[0]:.6g}) instead of -inf. "
            "HuggingFace's attention puts the most negative float32 number "
            "(torch.finfo(torch.float32).min = -3.40282e+38) in place of blocked scores; this course's "
            "mask is added to the scores, and the check expects float(\"-inf\"), which says exactly what is meant."
        )
        mistakes[hint] = lambda: np.where(allowed, 0.0, blocked[0])
    return mistakes | {
        "the diagonal is masked: a token must see itself (key j <= query i + num_tokens).":
            lambda: additive(cols < rows + num_tokens),
        "the mask is flipped: -inf must be where the key is in the future (key position > query "
        "position), 0 elsewhere. (With F.band_part: it keeps the band and zeroes the rest; "
        "exclude=True zeroes the band instead.)":
            lambda: additive(cols > rows + num_tokens),
        "num_tokens is ignored: the diagonal must move right by num_tokens.":
            lambda: additive(cols <= rows),
        "the mask holds 1 and 0: it is added to the scores, so use 0 (attend) and -inf (do not).":
            lambda: allowed.astype(np.float64),
        "the mask holds 0 and 1 the other way round: use 0 (attend) and -inf (do not).":
            lambda: (~allowed).astype(np.float64),
    }


def mask_run(causal_mask, num_tokens: int) -> Run:
    # A dummy input whose length is the (symbolic) sequence length.
    return Run(
        f"causal_mask(sequence_length, {num_tokens}, ...)",
        lambda x: causal_mask(x.shape[0], num_tokens, dtype=x.dtype, device=x.device),
        [np.zeros(seq, dtype=np.float32) for seq in SEQUENCE_LENGTHS],
        ("seqlen",),
    )


# With num_tokens symbolic too: a dummy input of shape [num_tokens, sequence_length].
SYMBOLIC = [(2, 6), (5, 67), (0, 1)]


def symbolic_run(causal_mask) -> Run:
    return Run(
        "causal_mask(sequence_length, num_tokens, ...) with both symbolic",
        lambda x: causal_mask(x.shape[1], x.shape[0], dtype=x.dtype, device=x.device),
        [np.zeros(shape, dtype=np.float32) for shape in SYMBOLIC],
        ("past", "seqlen"),
    )


def check(seq: int, num_tokens: int, mask: np.ndarray) -> None:
    assert_close(
        f"causal_mask({seq}, {num_tokens})",
        mask,
        additive(huggingface_allowed(seq, num_tokens)),
        ("query", "key"),
        mask_mistakes(seq, num_tokens, mask),
        reference=REFERENCE,
    )


def test_causal_mask_matches_huggingface(lesson):
    causal_mask = lesson.get("causal_mask")
    masks = run_together(lesson, [mask_run(causal_mask, n) for n in NUM_TOKENS])
    for num_tokens, outputs in zip(NUM_TOKENS, masks):
        for seq, mask in zip(SEQUENCE_LENGTHS, outputs):
            check(seq, num_tokens, mask)
    # A second graph, so that a mask that works only for int num_tokens is
    # still judged on its numbers above first.
    (outputs,) = run_together(lesson, [symbolic_run(causal_mask)])
    for (num_tokens, seq), mask in zip(SYMBOLIC, outputs):
        check(seq, num_tokens, mask)
