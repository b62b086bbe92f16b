"""Opening a GPT-2 checkpoint for the course's commands (generate.py, and
anything else that serves or plots the model): no argparse in here.

A checkpoint is named the HuggingFace way: a folder written by
save_pretrained, or a hub id such as "gpt2" that transformers downloads
into its cache. Everything that can be checked without loading weights is
checked first and cheaply, so bad input is refused in seconds:

    checkpoint = locate("gpt2")              # folder or hub id; config.json, tokenizer and
                                             # weight files present; model_type "gpt2"
    config = load_hf_config(checkpoint)      # transformers.GPT2Config
    tokenizer = load_tokenizer(checkpoint)
    hf_model = load_hf_model(checkpoint)     # every weight present, none left over
    model = build_max_model(hf_state_dict(hf_model), max_config(config))

Each problem is a CheckpointError with one line that says what is wrong.
A hub id is looked up in the local HuggingFace cache first; only when it is
not there, and HF_HUB_OFFLINE is not set, does transformers download it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
# Any one of these sets is a complete tokenizer.
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Config settings of GPT-2 that the course's model hard-codes: a checkpoint
# with another value would compute something else, silently.
GPT2_FIXED = {
    "activation_function": ("gelu_new", "gelu_pytorch_tanh"),
    "scale_attn_weights": (True,),
    "scale_attn_by_inverse_layer_idx": (False,),
    "reorder_and_upcast_attn": (False,),
}


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Checkpoint:
    """Where a GPT-2 checkpoint is.

    name: as the user gave it ("gpt2", "./my-model").
    source: what from_pretrained gets: a local folder (a saved model, or the
        hub cache's copy of a hub id), or the hub id itself when it still has
        to be downloaded.
    local: source is a folder that holds everything (no download needed).
    """

    name: str
    source: str
    local: bool

    @property
    def folder(self) -> Path | None:
        return Path(self.source) if self.local else None


def offline() -> bool:
    """True when HuggingFace must not download (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(
        os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def looks_like_path(name: str) -> bool:
    """A path rather than a hub id: hub ids are "name" or "owner/name"."""
    return (
        name.startswith(("/", ".", "~"))
        or name.endswith("/")
        or name.count("/") > 1
        or os.sep != "/" and os.sep in name
    )


def _read_json(path: Path, shown: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{shown}: cannot read {path.name}: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{shown}: {path.name} does not hold a JSON object")
    return data


def folder_problem(folder: Path, shown: str) -> str | None:
    """What keeps folder from being a usable GPT-2 checkpoint, or None.

    Reads config.json only; needs neither transformers nor the weights."""
    if not (folder / CONFIG_FILE).is_file():
        return f"{shown} has no {CONFIG_FILE}: it is not a model saved with save_pretrained"
    model_type = _read_json(folder / CONFIG_FILE, shown).get("model_type")
    if model_type != "gpt2":
        return (
            f"{shown} is not a GPT-2 checkpoint: its {CONFIG_FILE} says model_type "
            f"{model_type!r}, and this course's model is GPT-2 (model_type 'gpt2')"
        )
    if not any(all((folder / f).is_file() for f in files) for files in TOKENIZER_FILE_SETS):
        return (
            f"{shown} has no tokenizer files (tokenizer.json, or vocab.json and merges.txt): "
            "save the tokenizer there too, with tokenizer.save_pretrained(folder)"
        )
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        return f"{shown} has no weights (model.safetensors or pytorch_model.bin)"
    return None


def locate(name: str) -> Checkpoint:
    """Find the checkpoint name refers to, and check what can be checked
    without loading it: a folder (or a hub id's copy in the cache) must hold
    config.json with model_type "gpt2", tokenizer files and weights.

    A hub id that is not in the cache is returned as is (to be downloaded),
    unless HuggingFace is offline: then it is a CheckpointError at once,
    instead of a minute of connection attempts.
    """
    if not name:
        raise CheckpointError("the model name is empty: give a folder or a hub id such as gpt2")
    path = Path(name).expanduser()
    if path.is_dir():
        problem = folder_problem(path, name)
        if problem:
            raise CheckpointError(problem)
        return Checkpoint(name, str(path), local=True)
    if path.exists():
        raise CheckpointError(f"{name} is a file; give the folder that save_pretrained wrote")
    if looks_like_path(name):
        raise CheckpointError(f"no such folder: {name}")

    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(name, CONFIG_FILE)
    except HFValidationError:
        raise CheckpointError(
            f"{name!r} is neither a folder nor a HuggingFace hub id (such as gpt2 or openai-community/gpt2)"
        ) from None
    problem = f"{name} is not a folder here, and not in the HuggingFace cache ({constants.HF_HUB_CACHE})"
    if isinstance(cached, str):
        folder = Path(cached).parent
        problem = folder_problem(folder, f"{name} (in the HuggingFace cache)")
        if problem is None:
            return Checkpoint(name, str(folder), local=True)
    if offline():
        raise CheckpointError(
            f"{problem}, and downloading is off (HF_HUB_OFFLINE=1): pass a folder saved "
            "with save_pretrained, or run once with a network connection and without HF_HUB_OFFLINE"
        )
    return Checkpoint(name, name, local=False)


def _one_line(err: BaseException, most: int = 300) -> str:
    """err's message on one line (transformers' advice to ignore mismatched sizes left out)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = " ".join(line for line in lines if "ignore_mismatched_sizes" not in line) or type(err).__name__
    return text if len(text) <= most else text[: most - 3] + "..."


def _from_pretrained(what: str, checkpoint: Checkpoint, load: Callable, **kwargs):
    """load(checkpoint.source, ...) with transformers' exceptions turned into a CheckpointError."""
    try:
        return load(checkpoint.source, local_files_only=checkpoint.local or offline(), **kwargs)
    except CheckpointError:
        raise
    except Exception as err:  # transformers raises OSError, ValueError, RuntimeError, ...
        raise CheckpointError(f"cannot load the {what} of {checkpoint.name}: {_one_line(err)}") from None


def load_hf_config(checkpoint: Checkpoint):
    """The checkpoint's transformers.GPT2Config, checked to be GPT-2 as the course builds it."""
    from transformers import AutoConfig

    config = _from_pretrained("config", checkpoint, AutoConfig.from_pretrained)
    if config.model_type != "gpt2":
        raise CheckpointError(
            f"{checkpoint.name} is not a GPT-2 checkpoint: model_type is {config.model_type!r}, not 'gpt2'"
        )
    for key, allowed in GPT2_FIXED.items():
        value = getattr(config, key, allowed[0])
        if value not in allowed:
            raise CheckpointError(
                f"{checkpoint.name} sets {key}={value!r}; the course's GPT-2 implements only {allowed[0]!r}"
            )
    return config


def load_tokenizer(checkpoint: Checkpoint):
    """The checkpoint's tokenizer (a transformers fast tokenizer)."""
    from transformers import AutoTokenizer

    return _from_pretrained("tokenizer", checkpoint, AutoTokenizer.from_pretrained)


def eos_token_ids(checkpoint: Checkpoint, config, tokenizer=None) -> tuple[int, ...]:
    """The end-of-text token id(s), where HuggingFace's generate() takes them
    from: generation_config.json, else config.json, else the tokenizer."""
    found = None
    folder = checkpoint.folder
    if folder is not None and (folder / GENERATION_CONFIG_FILE).is_file():
        found = _read_json(folder / GENERATION_CONFIG_FILE, checkpoint.name).get("eos_token_id")
    if found is None:
        found = getattr(config, "eos_token_id", None)
    if found is None and tokenizer is not None:
        found = tokenizer.eos_token_id
    if found is None:
        return ()
    ids = found if isinstance(found, (list, tuple)) else [found]
    return tuple(int(i) for i in ids)


def load_hf_model(checkpoint: Checkpoint):
    """The checkpoint as a transformers GPT2LMHeadModel (float32, eval mode),
    refused when a weight is missing, left over or of the wrong shape:
    transformers would otherwise fill missing ones with random numbers."""
    import torch
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()  # its warnings become our one-line errors
    model, info = _from_pretrained(
        "weights", checkpoint, GPT2LMHeadModel.from_pretrained, output_loading_info=True, dtype=torch.float32
    )
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = [n if isinstance(n, str) else n[0] for n in info.get(kind) or []]
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            problems.append(f"{kind.replace('_keys', '')} {', '.join(names[:3])}{more}")
    if problems:
        raise CheckpointError(
            f"the weights of {checkpoint.name} do not fit GPT-2 ({'; '.join(problems)}): "
            "is it a GPT-2 checkpoint saved with save_pretrained?"
        )
    return model.eval()


def hf_state_dict(hf_model) -> dict[str, Any]:
    """The model's state dict as numpy arrays (shared memory, no copy)."""
    return {name: tensor.detach().cpu().numpy() for name, tensor in hf_model.state_dict().items()}


def max_config(hf_config):
    """The course's GPT2Config (solutions/solution_01.py) with the checkpoint's sizes."""
    from solutions.solution_01 import GPT2Config

    return GPT2Config(**{f.name: getattr(hf_config, f.name) for f in fields(GPT2Config)})


def build_max_model(
    state_dict: Mapping[str, Any],
    config,
    load_hf_weights: Callable | None = None,
    device=None,
    model_class: Callable | None = None,
):
    """A MaxGPT2LMHeadModel (solutions/solution_11.py) holding state_dict.

    load_hf_weights: the loader to use (default: solutions/solution_12.py's;
        generate.py --steps passes the learner's).
    model_class: another GPT-2 with the same parameters to build instead,
        such as lesson 14's CachedGPT2LMHeadModel.
    device: a max.driver device (default CPU). The model is built with that
        device and float32 as MAX's defaults (on a GPU machine MAX would
        otherwise pick the GPU and bfloat16), and its weights are moved there.
    Compile it inside default_device_for(device) as well.
    """
    if model_class is None:
        from solutions.solution_11 import MaxGPT2LMHeadModel as model_class
    if load_hf_weights is None:
        from solutions.solution_12 import load_hf_weights
    with default_device_for(device) as chosen:
        model = model_class(config)
        load_hf_weights(model, state_dict)
        if chosen.label != "cpu":
            model.to(chosen)
    return model


def default_device_for(device=None):
    """A context manager making device (default CPU) and float32 MAX's defaults;
    it yields the device."""
    import contextlib

    from max.driver import CPU
    from max.dtype import DType
    from max.experimental.tensor import default_device, default_dtype

    device = device if device is not None else CPU()

    @contextlib.contextmanager
    def pinned():
        with default_device(device), default_dtype(DType.float32):
            yield device

    return pinned()
