"""Step 08: pre_norm_residual against the two halves of transformers'
GPT2Block: x + attn(ln_1(x)) and x + mlp(ln_2(x))."""

from transformers.models.gpt2.modeling_gpt2 import GPT2Block as HFGPT2Block

from solutions.solution_09 import GPT2Block
from tests.parity import check_comparisons, module_comparison
from tests.twins import SMALL_CONFIGS, cases, torch_run

STEP = 8


def first(out):
    return out[0] if isinstance(out, tuple) else out


class Half:
    """One pre-norm residual half of a block: (norm, sublayer) names."""

    def __init__(self, norm: str, sublayer: str):
        self.norm, self.sublayer = norm, sublayer

    def reference(self, hf, t, *, residual="input", post_norm=False, use_norm=True):
        norm, sublayer = getattr(hf, self.norm), getattr(hf, self.sublayer)
        if post_norm:
            return norm(t + first(sublayer(t)))
        normed = norm(t) if use_norm else t
        update = first(sublayer(normed))
        return {"input": t, "normed": normed, "none": 0}[residual] + update

    def mistakes(self, hf, x):
        def run(**kw):
            return lambda: torch_run(lambda t: self.reference(hf, t, **kw), x)

        return {
            "the residual is the normalized tensor: add the sublayer's output to x itself, "
            "not to norm(x).": run(residual="normed"),
            "the norm comes after the sum (post-norm): GPT-2 normalizes before the sublayer.":
                run(post_norm=True),
            "the residual is missing: return x + sublayer(norm(x)).": run(residual="none"),
            "the norm is skipped: apply norm to x before the sublayer.": run(use_norm=False),
        }


HALVES = {"attention": Half("ln_1", "attn"), "MLP": Half("ln_2", "mlp")}


def half_comparisons(lesson, part: str):
    pre_norm_residual = lesson.get("pre_norm_residual")
    half = HALVES[part]

    class Reference(HFGPT2Block):
        def forward(self, t):
            return half.reference(self, t)

    return [
        module_comparison(
            lesson,
            f"pre_norm_residual(x, {half.norm}, {half.sublayer})",
            case,
            GPT2Block(case.max),  # the reference solution's parts
            Reference(case.hf, layer_idx=0),
            seed=8,
            mistakes=half.mistakes,
            forward=lambda block, x: pre_norm_residual(
                x, getattr(block, half.norm), getattr(block, half.sublayer)
            ),
        )
        for case in cases(SMALL_CONFIGS)
    ]


def test_residual_around_attention_and_mlp(lesson):
    check_comparisons(lesson, half_comparisons(lesson, "attention") + half_comparisons(lesson, "MLP"))
