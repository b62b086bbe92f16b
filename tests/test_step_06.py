"""Step 06: GPT2PositionEmbeddings against torch.nn.Embedding looked up at
positions 0 .. seq_length - 1."""

import torch

from tests.loading import construct
from tests.parity import check_module
from tests.twins import torch_run

STEP = 6


class PositionEmbeddings(torch.nn.Module):
    """The reference: HuggingFace GPT-2's wpe at positions 0, 1, 2, ..."""

    def __init__(self, case):
        super().__init__()
        self.wpe = torch.nn.Embedding(case.max.n_positions, case.max.n_embd)

    def forward(self, input_ids, start=0, axis=-1):
        positions = torch.arange(start, start + input_ids.shape[axis])
        return self.wpe(positions)


def position_mistakes(hf: PositionEmbeddings, ids):
    batch = ids.shape[0]
    return {
        "the positions start at 1: they must be 0, 1, ..., seq_length - 1.":
            lambda: torch_run(lambda t: hf(t, start=1), ids),
        "the token ids are used as positions: look up Tensor.arange(seq_length) instead.":
            lambda: torch_run(lambda t: hf.wpe(t), ids),
        f"the positions count the batch ({batch} {'sequence' if batch == 1 else 'sequences'}), "
        "not the tokens: take the length from the last axis, input_ids.shape[-1].":
            lambda: torch_run(lambda t: hf(t, axis=0), ids),
    }


def test_position_embeddings_match_torch(lesson):
    check_module(
        lesson,
        "GPT2PositionEmbeddings",
        lambda case: construct(lesson, "GPT2PositionEmbeddings", case.max),
        PositionEmbeddings,
        seed=6,
        inputs="ids",
        mistakes=position_mistakes,
        # Ids below n_positions, so that "token ids used as positions" stays
        # a lookup in range that can be recognized.
        id_limit=lambda config: config.n_positions,
        reference="torch.nn.Embedding",
    )
