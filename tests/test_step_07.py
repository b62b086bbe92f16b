"""Step 07: GPT2MultiHeadAttention against transformers' GPT2Attention
(eager implementation, causal) with the same weights."""

import torch
from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

from tests.loading import construct
from tests.parity import check_module
from tests.twins import torch_run

STEP = 7


def attention_by_hand(
    hf: GPT2Attention,
    t: torch.Tensor,
    *,
    scale: str = "sqrt",
    keep_diagonal: bool = True,
    masked: bool = True,
    softmax_dim: int = -1,
    heads_first: bool = True,
    swap_query_key: bool = False,
    merge_transposes: bool = True,
    transpose_heads: bool = True,
    mask_after_softmax: bool = False,
) -> torch.Tensor:
    """GPT-2 attention written out, with switches that reproduce known mistakes."""
    batch, seq, width = t.shape
    heads = hf.num_heads
    head_dim = width // heads
    query, key, value = hf.c_attn(t).split(width, dim=2)

    def split(x):
        if not transpose_heads:  # [batch, seq, n_head, head_dim]: attention across heads
            return x.reshape(batch, seq, heads, head_dim)
        if heads_first:
            return x.reshape(batch, seq, heads, head_dim).transpose(1, 2)
        return x.reshape(batch, seq, head_dim, heads).permute(0, 3, 1, 2)

    def merge(x):
        if not transpose_heads or not merge_transposes:
            return x.reshape(batch, seq, width)
        if heads_first:
            return x.transpose(1, 2).reshape(batch, seq, width)
        return x.permute(0, 2, 3, 1).reshape(batch, seq, width)

    query, key, value = split(query), split(key), split(value)
    if swap_query_key:
        query, key = key, query
    scores = query @ key.transpose(-1, -2)
    scores = scores / {"sqrt": head_dim**0.5, "dim": head_dim, "none": 1.0}[scale]
    rows = scores.shape[-2]  # the sequence length as the lesson's code reads it: query.shape[-2]
    allowed = torch.ones(rows, rows, dtype=torch.bool).tril(0 if keep_diagonal else -1)
    mask = torch.zeros(rows, rows).masked_fill(~allowed, float("-inf"))
    if masked and not mask_after_softmax:
        scores = scores + mask
    weights = torch.softmax(scores, dim=softmax_dim)
    if masked and mask_after_softmax:
        weights = weights + mask
    return hf.c_proj(merge(weights @ value))


def attention_mistakes(hf: GPT2Attention, x):
    def run(**kw):
        return lambda: torch_run(lambda t: attention_by_hand(hf, t, **kw), x)

    return {
        "the scores are not scaled: divide query @ key^T by sqrt(head_dim).": run(scale="none"),
        "the scores are divided by head_dim: divide by sqrt(head_dim).": run(scale="dim"),
        "no causal mask: add causal_mask(seq_len, 0, ...) to the scores before softmax.":
            run(masked=False),
        "the mask hides the diagonal: a position must attend to itself.": run(keep_diagonal=False),
        "softmax runs over the wrong axis: it must normalize over the keys (the last axis).":
            run(softmax_dim=-2),
        "the heads are split in the wrong order: reshape to [batch, seq, n_head, head_dim], "
        "then transpose to [batch, n_head, seq, head_dim].": run(heads_first=False),
        "query and key are swapped: scores = query @ key^T (the causal mask then hides the past).":
            run(swap_query_key=True),
        "_merge_heads reshapes without the transpose: first transpose(1, 2) back to "
        "[batch, seq, n_head, head_dim], then reshape to [batch, seq, n_embd].":
            run(merge_transposes=False),
        "the heads are never moved in front of the sequence: _split_heads must transpose(1, 2) to "
        "[batch, n_head, seq, head_dim] (and _merge_heads undo it); without it each position "
        "attends across its heads instead of across the sequence.": run(transpose_heads=False),
        "the mask is added after softmax: add it to the scores, then apply softmax.":
            run(mask_after_softmax=True),
    }


def test_attention_matches_huggingface(lesson):
    check_module(
        lesson,
        "GPT2MultiHeadAttention",
        lambda case: construct(lesson, "GPT2MultiHeadAttention", case.max),
        lambda case: GPT2Attention(case.hf, layer_idx=0),
        seed=7,
        mistakes=attention_mistakes,
    )
