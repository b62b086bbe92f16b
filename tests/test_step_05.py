"""Step 05: GPT2Embeddings against torch.nn.Embedding with the same table."""

import torch

from tests.loading import construct
from tests.parity import check_module

STEP = 5


class TokenEmbeddings(torch.nn.Module):
    """The reference: HuggingFace GPT-2's wte is a torch.nn.Embedding."""

    def __init__(self, case):
        super().__init__()
        self.wte = torch.nn.Embedding(case.max.vocab_size, case.max.n_embd)

    def forward(self, input_ids):
        return self.wte(input_ids)


def test_token_embeddings_match_torch(lesson):
    check_module(
        lesson,
        "GPT2Embeddings",
        lambda case: construct(lesson, "GPT2Embeddings", case.max),
        TokenEmbeddings,
        seed=5,
        inputs="ids",
        reference="torch.nn.Embedding",
    )
