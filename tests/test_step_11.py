"""Step 11: MaxGPT2LMHeadModel against transformers' GPT2LMHeadModel with the
same weights: small configs and the full 124M model."""

import torch
from transformers import GPT2LMHeadModel

from tests.loading import construct
from tests.parity import check_module
from tests.twins import FULL_CONFIG, SMALL_CONFIGS, torch_run

STEP = 11


def head_mistakes(hf, ids):
    return {
        "the logits went through softmax: return the raw scores of lm_head.":
            lambda: torch_run(lambda t: torch.softmax(hf(t).logits, dim=-1), ids),
        "the hidden states are returned: apply self.lm_head to them.":
            lambda: torch_run(hf.transformer, ids),
    }


def test_lm_head_matches_huggingface(lesson):
    """The two small configs and the full 124M model, compiled as one graph."""
    check_module(
        lesson,
        "MaxGPT2LMHeadModel",
        lambda case: construct(lesson, "MaxGPT2LMHeadModel", case.max),
        lambda case: GPT2LMHeadModel(case.hf),
        seed=11,
        inputs="ids",
        mistakes=head_mistakes,
        configs=SMALL_CONFIGS | FULL_CONFIG,
    )
