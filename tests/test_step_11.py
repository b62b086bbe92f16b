"""Step 11: MaxGPT2LMHeadModel against transformers' GPT2LMHeadModel with the
same weights: small configs and the full 124M model."""

import torch
from transformers import GPT2LMHeadModel

from tests.harness import CONFIGS, SMALL_CONFIGS, check_module, construct, torch_run

STEP = 11


def head_mistakes(hf, ids):
    return {
        "the logits went through softmax: return the raw scores of lm_head.":
            lambda: torch_run(lambda t: torch.softmax(hf(t).logits, dim=-1), ids),
        "the hidden states are returned: apply self.lm_head to them.":
            lambda: torch_run(hf.transformer, ids),
    }


def check_head(lesson, configs):
    check_module(
        lesson,
        "MaxGPT2LMHeadModel",
        lambda case: construct(lesson, "MaxGPT2LMHeadModel", case.max),
        lambda case: GPT2LMHeadModel(case.hf),
        seed=11,
        inputs="ids",
        mistakes=head_mistakes,
        configs=configs,
    )


def test_lm_head_small_configs(lesson):
    check_head(lesson, SMALL_CONFIGS)


def test_lm_head_full_gpt2_124m(lesson):
    check_head(lesson, {"gpt2 (defaults)": CONFIGS["gpt2 (defaults)"]})
