"""Step 03: LayerNorm against torch.nn.LayerNorm with the same weight and bias."""

import torch

from tests.harness import check_module, construct, torch_run

STEP = 3


def layer_norm_mistakes(ln: torch.nn.LayerNorm, x):
    def by_hand(t, *, weight=True, bias=True, eps_inside=True, unbiased=False, eps=None):
        eps = ln.eps if eps is None else eps
        mean = t.mean(-1, keepdim=True)
        var = t.var(-1, keepdim=True, unbiased=unbiased)
        normed = (t - mean) / (torch.sqrt(var + eps) if eps_inside else torch.sqrt(var) + eps)
        return normed * (ln.weight if weight else 1) + (ln.bias if bias else 0)

    def run(**kw):
        return lambda: torch_run(lambda t: by_hand(t, **kw), x)

    return {
        "the bias is not added: return normalized * weight + bias.": run(bias=False),
        "the weight is not applied: multiply the normalized x by self.weight.": run(weight=False),
        "eps is added outside the square root: use sqrt(variance + eps).": run(eps_inside=False),
        "the variance divides by N-1: LayerNorm uses the biased variance (divide by N).": run(unbiased=True),
        "eps is fixed at 1e-5: use the eps passed to LayerNorm (here 1e-3).": run(eps=1e-5),
    }


def test_layer_norm_matches_torch(lesson):
    check_module(
        lesson,
        "LayerNorm",
        lambda case: construct(
            lesson, "LayerNorm", case.max.n_embd, eps=case.max.layer_norm_epsilon
        ),
        lambda case: torch.nn.LayerNorm(case.max.n_embd, eps=case.max.layer_norm_epsilon),
        seed=3,
        mistakes=layer_norm_mistakes,
    )
