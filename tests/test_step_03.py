"""Step 03: LayerNorm against torch.nn.LayerNorm with the same weight and bias,
and, before any weights are loaded, against a fresh torch.nn.LayerNorm
(weight ones, bias zeros)."""

import numpy as np
import torch

from tests.loading import construct
from tests.parity import SHAPES, Comparison, Run, check_comparisons, module_comparison
from tests.twins import cases, seeded_inputs, torch_run

STEP = 3
REFERENCE = "torch.nn.LayerNorm"


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
        f"eps is fixed at 1e-5: use the eps passed to LayerNorm (here {ln.eps:g}).": run(eps=1e-5),
    }


def initial_value_mistakes(ln: torch.nn.LayerNorm, x):
    def starting_with(weight: float, bias: float):
        def run():
            t = torch.from_numpy(x).double()
            normed = torch.nn.functional.layer_norm(t, t.shape[-1:], eps=ln.eps)
            return (normed * weight + bias).numpy()

        return run

    return {
        "the weight starts at zeros: create it with Tensor.ones([dim]), so that a new "
        "LayerNorm only normalizes.": starting_with(0.0, 0.0),
        "the bias starts at ones: create it with Tensor.zeros([dim]).": starting_with(1.0, 1.0),
        "the weight starts at zeros and the bias at ones: weight = Tensor.ones([dim]), "
        "bias = Tensor.zeros([dim]).": starting_with(0.0, 1.0),
    }


def fresh(lesson, case):
    return construct(lesson, "LayerNorm", case.max.n_embd, eps=case.max.layer_norm_epsilon)


def reference(case):
    return torch.nn.LayerNorm(case.max.n_embd, eps=case.max.layer_norm_epsilon)


def test_layer_norm_matches_torch(lesson):
    comparisons = [
        module_comparison(
            lesson, "LayerNorm", case, fresh(lesson, case), reference(case),
            seed=3, mistakes=layer_norm_mistakes, reference=REFERENCE,
        )
        for case in cases()
    ]
    # One LayerNorm as created, before any weights are loaded.
    case = cases()[1]
    untouched, torch_fresh = fresh(lesson, case), reference(case).eval()
    inputs = seeded_inputs("hidden", SHAPES, width=case.max.n_embd, seed=33)
    comparisons.append(
        Comparison(
            Run(f"a new LayerNorm({case.max.n_embd}), weights as created", untouched, inputs,
                ("batch", "seqlen", case.max.n_embd), owner=untouched),
            expected=lambda x: torch_run(torch_fresh, x),
            mistakes=lambda x: initial_value_mistakes(torch_fresh, np.asarray(x)),
            width=case.max.n_embd,
        )
    )
    check_comparisons(lesson, comparisons, REFERENCE)
