"""Step 10: GPT2Model against transformers' GPT2Model with the same weights."""

import torch
from transformers import GPT2Model as HFGPT2Model

from tests.loading import construct
from tests.parity import check_module
from tests.twins import SMALL_CONFIGS, torch_run

STEP = 10
DEFAULT_EPS = 1e-5  # LayerNorm's own default


def model_by_hand(hf, ids, *, first_position=0, positions=True, final_norm=True, repeat=None, final_eps=None):
    """GPT-2's stack written out, with switches that reproduce known mistakes.

    repeat: run this one block n_layer times instead of each block once.
    """
    hidden = hf.wte(ids)
    if positions:
        hidden = hidden + hf.wpe(torch.arange(first_position, first_position + ids.shape[-1]))
    blocks = list(hf.h) if repeat is None else [repeat] * len(hf.h)
    for block in blocks:
        hidden = block(hidden)[0]
    if not final_norm:
        return hidden
    if final_eps is not None:
        return torch.nn.functional.layer_norm(hidden, hf.ln_f.normalized_shape, hf.ln_f.weight, hf.ln_f.bias, final_eps)
    return hf.ln_f(hidden)


def model_mistakes(hf, ids):
    def run(**kw):
        return lambda: torch_run(lambda t: model_by_hand(hf, t, **kw), ids)

    n_layer = len(hf.h)
    return {
        "the position ids start at 1: they must be 0, 1, ..., seq_length - 1.": run(first_position=1),
        "the position embeddings are not added: hidden = wte(ids) + wpe(position_ids(ids)).":
            run(positions=False),
        "ln_f is not applied after the last block.": run(final_norm=False),
        # load_state_dict fills the one block n_layer times: the last weights stay.
        f"one GPT2Block object fills all {n_layer} places, so every layer has the same weights "
        "(those loaded last): create a new block per layer, "
        "Sequential(*(GPT2Block(config) for _ in range(config.n_layer))), not [GPT2Block(config)] * n_layer.":
            run(repeat=hf.h[-1]),
        f"ln_f ignores config.layer_norm_epsilon ({hf.ln_f.eps:g} here): pass eps=config.layer_norm_epsilon.":
            run(final_eps=DEFAULT_EPS),
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
