"""Generate text with the GPT-2 built in this course, and compare it with HuggingFace.

    python generate.py --prompt "The meaning of life is" --max-new-tokens 30
    python generate.py --greedy --compare          # token for token against HuggingFace
    python generate.py --model-dir DIR              # a GPT-2 saved with save_pretrained
    python generate.py --steps                      # use YOUR steps/step_12.py

Without --model-dir the real GPT-2 weights and tokenizer ("gpt2") come from
the HuggingFace hub: that needs a network connection the first time, and
HuggingFace caches them afterwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent


def generation_functions(use_steps: bool):
    """load_hf_weights, compile_model and generate_tokens: the reference
    solution's, or the learner's own steps/step_12.py."""
    if not use_steps:
        from solutions import solution_12 as module
    else:
        spec = importlib.util.spec_from_file_location("step_12", REPO / "steps" / "step_12.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.load_hf_weights, module.compile_model, module.generate_tokens


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="The meaning of life is")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")
    parser.add_argument("--greedy", action="store_true", help="take the most likely token (no sampling)")
    parser.add_argument("--compare", action="store_true", help="with --greedy: also run HuggingFace generate()")
    parser.add_argument("--model-dir", default=None, help="a folder written by save_pretrained (model and tokenizer)")
    parser.add_argument("--steps", action="store_true", help="use your steps/step_12.py instead of the solution")
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1:
        parser.error(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if not args.greedy and args.temperature <= 0:
        parser.error(f"--temperature must be > 0 when sampling, got {args.temperature} (or use --greedy)")
    if args.compare and not args.greedy:
        parser.error("--compare needs --greedy: sampled text is random on both sides")
    if not args.prompt:
        parser.error("--prompt must not be empty")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import torch
    from transformers import GPT2LMHeadModel, GPT2TokenizerFast

    from solutions.solution_01 import GPT2Config
    from solutions.solution_11 import MaxGPT2LMHeadModel

    source = args.model_dir or "gpt2"
    try:
        hf = GPT2LMHeadModel.from_pretrained(source).eval()
        tokenizer = GPT2TokenizerFast.from_pretrained(source)
    except (OSError, ValueError) as err:
        print(f"error: could not load GPT-2 from {source!r}: {err}", file=sys.stderr)
        if args.model_dir is None:
            print("Without a network connection, pass --model-dir with a saved GPT-2.", file=sys.stderr)
        return 2

    load_hf_weights, compile_model, generate_tokens = generation_functions(args.steps)
    names = [f.name for f in dataclasses.fields(GPT2Config)]
    config = GPT2Config(**{name: getattr(hf.config, name) for name in names})
    model = MaxGPT2LMHeadModel(config)
    load_hf_weights(model, hf.state_dict())

    start = time.perf_counter()
    compiled = compile_model(model)
    print(f"[compiled in {time.perf_counter() - start:.1f} s]", file=sys.stderr)

    prompt = tokenizer(args.prompt, return_tensors="np").input_ids.astype(np.int64)
    if prompt.shape[1] + args.max_new_tokens > config.n_positions:
        print(f"error: prompt + new tokens exceed n_positions={config.n_positions}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    tokens = generate_tokens(
        compiled, prompt, args.max_new_tokens, args.temperature, not args.greedy, seed=args.seed
    )
    seconds = time.perf_counter() - start
    print(tokenizer.decode(tokens[0]))
    print(f"[{args.max_new_tokens} tokens in {seconds:.2f} s]", file=sys.stderr)

    if args.compare:
        hf.generation_config.eos_token_id = None  # never stop early: compare every token
        with torch.no_grad():
            expected = hf.generate(
                torch.from_numpy(prompt),
                attention_mask=torch.ones(prompt.shape, dtype=torch.long),
                do_sample=False,
                max_new_tokens=args.max_new_tokens,
                pad_token_id=tokenizer.eos_token_id,
            ).numpy()
        if np.array_equal(tokens, expected):
            print(f"identical to HuggingFace generate(): all {args.max_new_tokens} new tokens match")
        else:
            first = int(np.argwhere(tokens[0] != expected[0])[0][0]) - prompt.shape[1] + 1
            print(f"DIFFERENT from HuggingFace generate() from new token {first}:")
            print(tokenizer.decode(expected[0]))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
