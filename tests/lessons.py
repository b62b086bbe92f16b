"""The course's lessons, in order: the one list that the checks' closing
lines, the judge and the project tests read.

Adding lesson NN: add its line here, then steps/step_NN.py,
solutions/solution_NN.py, tests/test_step_NN.py, the task sNN in pixi.toml
and the row in README.md's table (tests/test_project.py checks that they
all exist and agree with this list). tests/README.md has the details.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LESSONS = {
    1: "`GPT2Config`: the model's hyperparameters",
    2: "`causal_mask`: no looking at future tokens",
    3: "`LayerNorm`",
    4: "`GPT2MLP`: the feed-forward network (tanh GELU)",
    5: "`GPT2Embeddings`: token embeddings `wte`",
    6: "`GPT2PositionEmbeddings`: position embeddings `wpe`",
    7: "`GPT2MultiHeadAttention`: causal multi-head attention",
    8: "`pre_norm_residual`: residual connections, pre-norm",
    9: "`GPT2Block`: one transformer block",
    10: "`GPT2Model`: embeddings, 12 blocks, final norm",
    11: "`MaxGPT2LMHeadModel`: the language-model head",
    12: "loading HuggingFace weights, temperature, sampling, generation",
    13: "top-k and top-p (nucleus) sampling, stopping at end-of-text",
    14: "the KV cache: prefill once, then one token per step",
    15: "many sequences at once: one length per row, continuous batching",
    16: "your first Mojo kernel: the decode step's matrix-vector product at memory speed",
    17: "quantized weights: GPT-2 in 4 and 6 bits (GGUF's Q4_0, Q4_K, Q6_K)",
}
# Lessons whose files include a folder beside step_NN.py (the judge copies it too).
LESSON_FOLDERS = {16: "kernels_16"}
STEPS = sorted(LESSONS)


def task(step: int) -> str:
    """The pixi task that checks a step: s01, s02, ..."""
    return f"s{step:02d}"


def check_file(step: int) -> str:
    return f"tests/test_step_{step:02d}.py"


def skeleton_path(step: int) -> Path:
    return REPO / "steps" / f"step_{step:02d}.py"


def solution_path(step: int) -> Path:
    return REPO / "solutions" / f"solution_{step:02d}.py"


def next_step(step: int) -> int | None:
    later = [s for s in STEPS if s > step]
    return later[0] if later else None
