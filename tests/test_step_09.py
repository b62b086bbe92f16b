"""Step 09: GPT2Block against transformers' GPT2Block with the same weights."""

import torch
from transformers.models.gpt2.modeling_gpt2 import GPT2Block as HFGPT2Block

from tests.loading import construct
from tests.parity import check_module
from tests.twins import torch_run

STEP = 9
DEFAULT_EPS = 1e-5  # LayerNorm's own default


def norm_with_eps(ln: torch.nn.LayerNorm, eps: float | None):
    if eps is None:
        return ln
    return lambda t: torch.nn.functional.layer_norm(t, ln.normalized_shape, ln.weight, ln.bias, eps)


def block_by_hand(hf, t, *, normed_residual=False, post_norm=False, mlp_first=False, swap_norms=False,
                  eps_1=None, eps_2=None):
    """GPT-2's block written out, with switches that reproduce known mistakes."""
    ln_1, ln_2 = norm_with_eps(hf.ln_1, eps_1), norm_with_eps(hf.ln_2, eps_2)
    if swap_norms:
        ln_1, ln_2 = ln_2, ln_1
    halves = [(ln_1, lambda h: hf.attn(h)[0]), (ln_2, hf.mlp)]
    if mlp_first:
        halves.reverse()
    for norm, sublayer in halves:
        if post_norm:
            t = norm(t + sublayer(t))
        else:
            normed = norm(t)
            t = (normed if normed_residual else t) + sublayer(normed)
    return t


def block_mistakes(hf, x):
    def run(**kw):
        return lambda: torch_run(lambda t: block_by_hand(hf, t, **kw), x)

    eps = hf.ln_1.eps
    return {
        "the residual is the normalized tensor: add each sublayer's output to the "
        "unnormalized hidden states.": run(normed_residual=True),
        "post-norm: GPT-2 applies ln_1 / ln_2 before each sublayer, not after the sum.":
            run(post_norm=True),
        "the MLP runs before attention: attention (ln_1, attn) comes first.": run(mlp_first=True),
        "ln_1 and ln_2 are swapped: ln_1 goes with attn, ln_2 with mlp.": run(swap_norms=True),
        f"ln_1 and ln_2 ignore config.layer_norm_epsilon ({eps:g} here): "
        "pass eps=config.layer_norm_epsilon to both.": run(eps_1=DEFAULT_EPS, eps_2=DEFAULT_EPS),
        f"ln_1 ignores config.layer_norm_epsilon ({eps:g} here): pass eps=config.layer_norm_epsilon.":
            run(eps_1=DEFAULT_EPS),
        f"ln_2 ignores config.layer_norm_epsilon ({eps:g} here): pass eps=config.layer_norm_epsilon.":
            run(eps_2=DEFAULT_EPS),
    }


def test_block_matches_huggingface(lesson):
    check_module(
        lesson,
        "GPT2Block",
        lambda case: construct(lesson, "GPT2Block", case.max),
        lambda case: HFGPT2Block(case.hf, layer_idx=0),
        seed=9,
        mistakes=block_mistakes,
    )
