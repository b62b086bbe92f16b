"""The one place that says how the course stays offline.

The checks and the benchmark never download: every HuggingFace model they
use is built from a config with random weights. Importing tests/ or calling
go_offline() puts transformers and huggingface_hub offline for this process
and the processes it starts.
"""

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MAX_SERVE_DISABLE_TELEMETRY": "1",
}


def go_offline() -> None:
    os.environ.update(OFFLINE_ENV)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def offline_env(base: dict | None = None) -> dict:
    """A copy of base (default: this process's environment), offline."""
    env = dict(os.environ if base is None else base)
    env.update(OFFLINE_ENV)
    return env
