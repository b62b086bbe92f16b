"""Draw one next-token distribution of the model under three temperatures,
with the top-k and top-p cuts of lesson 13 marked.

    python plot_sampling.py                                    # gpt2 from the hub (cached after once)
    python plot_sampling.py --model ./my-gpt2 --prompt "Once upon a time"
    python plot_sampling.py --top-k 10 --top-p 0.8 --output cuts.png

Each panel shows the most likely next tokens at one temperature, largest
first. Bars that top-k and top-p both keep are solid; the others, which
sampling never picks, are pale. The dashed line is the top-k cut, the
dotted one the top-p cut: at a higher temperature the distribution is
flatter, so top-p needs more tokens to reach p, while top-k keeps k.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gpt2", help="a hub id or a folder saved with save_pretrained (default: %(default)s)")
    parser.add_argument("--prompt", default="The meaning of life is", help="the text whose next token is shown (default: %(default)r)")
    parser.add_argument("--temperatures", type=float, nargs=3, default=[0.5, 1.0, 1.5], metavar="T",
                        help="three temperatures, one panel each (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=40, help="the top-k cut to mark (default: %(default)s)")
    parser.add_argument("--top-p", type=float, default=0.6, help="the top-p cut to mark (default: %(default)s)")
    parser.add_argument("--tokens", type=int, default=50, help="how many of the most likely tokens to draw (default: %(default)s)")
    parser.add_argument("--output", default="sampling.png", help="the PNG file to write (default: %(default)s)")
    args = parser.parse_args(argv)
    if not all(math.isfinite(t) and t > 0 for t in args.temperatures):
        parser.error(f"--temperatures must be numbers > 0, got {args.temperatures}")
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, got {args.top_k}")
    if not 0 < args.top_p <= 1:
        parser.error(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.tokens < 2:
        parser.error(f"--tokens must be at least 2, got {args.tokens}")
    if not args.prompt:
        parser.error("--prompt must not be empty")
    return args


def next_token_logits(model_name: str, prompt: str) -> tuple[np.ndarray, object]:
    """The model's logits for the token after prompt, [vocab], and its tokenizer."""
    from max.experimental.tensor import Tensor

    from solutions.solution_12 import compile_model
    from tools.checkpoint import build_max_model, default_device_for, hf_state_dict, load_hf_config, load_hf_model
    from tools.checkpoint import load_tokenizer, locate, max_config

    checkpoint = locate(model_name)
    config, tokenizer = load_hf_config(checkpoint), load_tokenizer(checkpoint)
    ids = np.asarray(tokenizer(prompt)["input_ids"], dtype=np.int64)[None, -config.n_positions:]
    print(f"loading {model_name} and compiling it (a minute the first time) ...", file=sys.stderr)
    model = build_max_model(hf_state_dict(load_hf_model(checkpoint)), max_config(config))
    with default_device_for():
        compiled = compile_model(model)
    return np.from_dlpack(compiled(Tensor.from_dlpack(ids)))[0, -1].astype(np.float64), tokenizer


def draw(logits: np.ndarray, tokenizer, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from solutions.solution_12 import softmax_with_temperature
    from solutions.solution_13 import warp_logits

    order = np.argsort(-logits, kind="stable")[: args.tokens]
    labels = [repr(tokenizer.decode([int(t)]))[1:-1] or "·" for t in order]
    figure, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True)
    for ax, t in zip(axes, args.temperatures):
        probs = softmax_with_temperature(logits[None, :], t)[0][order]
        # Both cuts keep a run of the most likely tokens: count them.
        by_k = int(np.isfinite(warp_logits(logits[None, :], t, args.top_k, None)).sum())
        both = int(np.isfinite(warp_logits(logits[None, :], t, args.top_k, args.top_p)).sum())
        ax.bar(range(len(order)), probs, color=["#2b6cb0" if i < both else "#cbd5e0" for i in range(len(order))])
        ax.axvline(min(by_k, len(order)) - 0.5, color="#c53030", linestyle="--",
                   label=f"top-k = {args.top_k}: keeps {by_k}")
        ax.axvline(min(both, len(order)) - 0.5, color="#2f855a", linestyle=":", linewidth=2.5,
                   label=f"then top-p = {args.top_p:g} (on what top-k kept): keeps {both}")
        ax.set_ylabel("probability")
        ax.set_title(f"temperature {t:g}: sampling picks among {both} tokens", fontsize=10, loc="left")
        ax.legend(loc="upper right", fontsize=9)
    axes[-1].set_xticks(range(len(order)), labels, rotation=60, ha="right", fontsize=8)
    figure.suptitle(f"Next token after {args.prompt!r} ({args.model})", fontsize=12)
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    args = parse_args(argv)
    from tools.checkpoint import CheckpointError

    try:
        logits, tokenizer = next_token_logits(args.model, args.prompt)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    draw(logits, tokenizer, args)
    print(f"wrote {Path(args.output).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
