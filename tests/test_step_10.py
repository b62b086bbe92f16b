"""Step 10: GPT2Model against transformers' GPT2Model with the same weights."""

import torch
from transformers import GPT2Model as HFGPT2Model

from tests.harness import SMALL_CONFIGS, check_module, construct, torch_run

STEP = 10


def model_by_hand(hf, ids, *, first_position=0, positions=True, final_norm=True):
    """GPT-2's stack written out, with switches that reproduce known mistakes."""
    hidden = hf.wte(ids)
    if positions:
        hidden = hidden + hf.wpe(torch.arange(first_position, first_position + ids.shape[-1]))
    for block in hf.h:
        hidden = block(hidden)[0]
    return hf.ln_f(hidden) if final_norm else hidden


def model_mistakes(hf, ids):
    def run(**kw):
        return lambda: torch_run(lambda t: model_by_hand(hf, t, **kw), ids)

    return {
        "the position ids start at 1: they must be 0, 1, ..., seq_length - 1.": run(first_position=1),
        "the position embeddings are not added: hidden = wte(ids) + wpe(position_ids(ids)).":
            run(positions=False),
        "ln_f is not applied after the last block.": run(final_norm=False),
    }


def test_model_matches_huggingface(lesson):
    check_module(
        lesson,
        "GPT2Model",
        lambda case: construct(lesson, "GPT2Model", case.max),
        lambda case: HFGPT2Model(case.hf),
        seed=10,
        inputs="ids",
        mistakes=model_mistakes,
        configs=SMALL_CONFIGS,
    )
