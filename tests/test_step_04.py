"""Step 04: GPT2MLP against transformers' GPT2MLP with the same weights."""

import torch
from transformers.models.gpt2.modeling_gpt2 import GPT2MLP as HFGPT2MLP

from tests.loading import construct
from tests.parity import check_module
from tests.twins import torch_run

STEP = 4


def inner_size(case) -> int:
    return case.max.n_inner or 4 * case.max.n_embd


def mlp_mistakes(hf: HFGPT2MLP, x):
    def run(act, after=False):
        if after:
            return lambda: torch_run(lambda t: act(hf.c_proj(hf.c_fc(t))), x)
        return lambda: torch_run(lambda t: hf.c_proj(act(hf.c_fc(t))), x)

    gelu = torch.nn.functional.gelu
    return {
        "exact GELU instead of the tanh approximation: use F.gelu(x, approximate=\"tanh\").":
            run(gelu),
        "GELU is missing between c_fc and c_proj.": run(lambda t: t),
        "ReLU instead of GELU: use F.gelu(x, approximate=\"tanh\").": run(torch.relu),
        "GELU is applied after c_proj: apply it between c_fc and c_proj.":
            run(lambda t: gelu(t, approximate="tanh"), after=True),
    }


def test_mlp_matches_huggingface(lesson):
    check_module(
        lesson,
        "GPT2MLP",
        lambda case: construct(lesson, "GPT2MLP", inner_size(case), case.max),
        lambda case: HFGPT2MLP(inner_size(case), case.hf),
        seed=4,
        mistakes=mlp_mistakes,
    )
