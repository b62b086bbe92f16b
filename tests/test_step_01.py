"""Step 01: GPT2Config's defaults against transformers.GPT2Config()."""

import dataclasses

import transformers

from tests.loading import fail

STEP = 1
FIELDS = ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon"]


def test_config_has_huggingface_defaults(lesson):
    config_cls = lesson.get("GPT2Config")
    if not dataclasses.is_dataclass(config_cls):
        fail("GPT2Config is not a dataclass yet: put @dataclass on the line above `class GPT2Config`.")
    with lesson.learner_code("GPT2Config()"):
        ours = config_cls()
    reference = transformers.GPT2Config()
    for name in FIELDS:
        if not hasattr(ours, name):
            fail(f"GPT2Config has no field `{name}`. Keep the field names from the skeleton.")
        value, expected = getattr(ours, name), getattr(reference, name)
        if value is None and expected is not None:
            lesson.fail_open_todo(f"GPT2Config.{name} is None; give it GPT-2's default.")
        if value != expected or type(value) is not type(expected):
            fail(
                f"GPT2Config().{name} is {value!r}; HuggingFace's GPT-2 (124M) has {expected!r}."
                + (" It must be a float." if isinstance(expected, float) else "")
            )


def test_config_takes_other_sizes(lesson):
    config_cls = lesson.get("GPT2Config")
    overrides = dict(n_embd=64, n_head=4, n_layer=2, n_inner=80, layer_norm_epsilon=1e-3)
    with lesson.learner_code("GPT2Config(n_embd=64, ...)"):
        ours = config_cls(**overrides)
    for name, expected in overrides.items():
        if getattr(ours, name) != expected:
            fail(f"GPT2Config({name}={expected!r}).{name} is {getattr(ours, name)!r}: the argument is ignored.")
