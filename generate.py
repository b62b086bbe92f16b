"""Generate text with the GPT-2 built in this course, on MAX, token by token.

examples:
  python generate.py --prompt "The meaning of life is"          # gpt2 from the hub (cached after the first run)
  python generate.py --model ./my-gpt2 --greedy --compare       # a saved model, checked against HuggingFace
  echo "Once upon a time" | python generate.py --prompt - --seed 7 --top-p 0.9
  python generate.py --prompt "Hello" --prompt "Once upon a time" --greedy   # several prompts, batched
  python generate.py --steps                                    # YOUR steps/step_12.py and step_15.py
  python generate.py --steps --no-cache                         # YOUR steps 12 and 13 only, no KV cache
  python generate.py --json --greedy --max-new-tokens 20        # one JSON line per prompt, for scripts
  python generate.py --quantize q4_0 --prompt "Hello"           # lesson 17: 4-bit weights, ops.qmatmul

It decodes with the KV cache by default, through lesson 15's loop
(stream_batched): each prompt goes through the model once, then one model
call per step runs the newest token of every unfinished prompt, up to
--max-batch-size prompts at a time, so they share one read of the weights.
The decode steps run lesson 16's Mojo kernel in place of MAX's matmul,
and attention that reads the KV cache where it lies (a second Mojo op,
tools/decode_in_place.py) instead of copying the filled part out of it,
when they build here (the `mojo` compiler comes with max; the first run
builds them, later runs reuse them); --no-kernel takes lesson 15's graph.
--quantize q4_0 (or q4_k, q6_k) stores every Linear's weight in that GGUF
block format (lesson 17) and decodes with MAX's ops.qmatmul instead (and
the in-place attention, unless --no-kernel): fewer
bytes per step, and other numbers than float32 (its tokens may differ).
--no-cache takes lesson 12's path instead: the whole sequence through the
model for every token, one prompt after the other (slower; the same numbers
to float32 rounding, so the same tokens unless two logits are within
rounding of each other).

With one prompt, the text streams to stdout as it is written, after the
prompt; with several, each prompt's text is printed whole, in the order
given, under a line "--- prompt i of n ---". Progress, timings and errors
go to stderr. Prompt i samples with seed + i, so it writes what it would
write alone with --seed (seed + i). Context limit: each prompt's tokens
plus --max-new-tokens must fit the model's n_positions (1024 for GPT-2); a
longer request is refused before the model is loaded. Generation stops at
the end-of-text token (eos_token_id from generation_config.json,
config.json or the tokenizer) unless --ignore-eos.

Exit codes: 0 done; 1 --compare found a difference; 2 bad input (one line
starting with "error: " on stderr); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.checkpoint import CheckpointError  # noqa: E402  (light: no transformers yet)
from tools.cli import BadInput, OneLineParser  # noqa: E402
from tools.generation import Sampling, context_problem  # noqa: E402
from tools.steps import StepsNotReady  # noqa: E402

DEFAULT_PROMPT = "The meaning of life is"
COMPILE_LABEL = "compiling the model (a minute or two the first time; later runs reuse MAX's cache)"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default, unless its help already names it."""

    def _get_help_string(self, action):
        if "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="generate.py", description=__doc__, formatter_class=HelpFormatter)
    where = p.add_argument_group("model")
    where.add_argument(
        "--model", "--model-dir", dest="model", default="gpt2", metavar="NAME",
        help="a HuggingFace hub id (loaded through transformers and its cache; downloaded once, "
        "unless HF_HUB_OFFLINE=1) or a folder written by save_pretrained (model and tokenizer)",
    )
    where.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                       help="where MAX runs the model; gpu needs one that MAX sees")
    where.add_argument("--no-cache", action="store_true",
                       help="lesson 12's path: run the whole sequence through the model for every new token "
                       "(default: off, i.e. lesson 15's KV cache: each prompt once, then one token per step)")
    where.add_argument("--no-kernel", action="store_true",
                       help="decode without the Mojo ops (lesson 16's kernel, the in-place attention): lesson 15's "
                       "graph, MAX's matmul (default: off, i.e. the ops in every decode step when they build here; "
                       "without them, a note and lesson 15)")
    where.add_argument("--quantize", default=None, metavar="FORMAT",
                       help="lesson 17: store every Linear's weight in a GGUF block format, q4_0, q4_k or q6_k "
                       "(solutions/solution_17.py's quantize_model; the embeddings stay float32), decoded by "
                       "MAX's ops.qmatmul on lesson 15's cache, instead of the kernel (default: float32)")
    where.add_argument("--steps", action="store_true",
                       help="use YOUR steps/step_12.py (loading) and step_15.py (the cache, the model and "
                       "the loop), or step_12.py and step_13.py with --no-cache, instead of the solutions "
                       "(refused while a TODO is open) (default: off)")
    where.add_argument("--steps-dir", type=Path, default=None, metavar="DIR",
                       help="for maintainers and tests: read the step_NN.py files from DIR "
                       "(implies --steps) (default: steps/)")

    text = p.add_argument_group("prompt")
    source = text.add_mutually_exclusive_group()
    source.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                        help="the text to continue; give it several times for several prompts; - reads one "
                        f"from stdin (UTF-8) (default: {DEFAULT_PROMPT})")
    source.add_argument("--prompt-file", action="append", type=Path, default=None, metavar="PATH",
                        help="read a prompt from a UTF-8 file (several times for several prompts); from a file "
                        "or stdin, one final newline is dropped (default: use --prompt)")
    text.add_argument("--max-batch-size", type=int, default=8, metavar="N",
                      help="with the cache: at most N prompts share one model call (the cache's slots); "
                      "the others wait for a slot")

    how = p.add_argument_group("generation (HuggingFace generate()'s names and defaults)")
    how.add_argument("--max-new-tokens", type=int, default=30, metavar="N",
                     help="at most this many new tokens; prompt tokens + N <= n_positions (1024 for GPT-2)")
    mode = how.add_mutually_exclusive_group()
    mode.add_argument("--do-sample", dest="do_sample", action="store_true", default=True,
                      help="draw each token from the model's distribution (default: on)")
    mode.add_argument("--greedy", dest="do_sample", action="store_false", default=argparse.SUPPRESS,
                      help="take the most likely token each time (default: off)")
    how.add_argument("--temperature", type=float, default=1.0, metavar="T",
                     help="when sampling: divide the logits by T (> 0): below 1 sharper, above 1 flatter")
    how.add_argument("--top-k", type=int, default=50, metavar="K",
                     help="when sampling: keep only the K most likely tokens (0 keeps them all, as in "
                     "HuggingFace's generate())")
    how.add_argument("--top-p", type=float, default=1.0, metavar="P",
                     help="when sampling: keep the most likely tokens until their probability adds up to P "
                     "(0 < P <= 1; 1 keeps them all)")
    how.add_argument("--seed", type=int, default=None,
                     help="seed of the one random generator, for reproducible sampling (>= 0) "
                     "(default: a fresh one, printed at the end so the run can be repeated)")
    how.add_argument("--ignore-eos", action="store_true",
                     help="go on after the end-of-text token (default: stop there)")

    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true",
                     help="print only JSON on stdout (no streamed text): one object per line, per prompt: "
                     "index, prompt, prompt_ids, generated_ids (new tokens only, with the end-of-text token "
                     "when it stopped there), text (the new text only), finish_reason, kv_cache (true: lesson "
                     "15's path), seed (this prompt's), compile_seconds, tokens_per_second (this prompt's "
                     "tokens over the time to its last one), all_tokens_per_second, ... (default: off)")
    out.add_argument("--compare", action="store_true",
                     help="with --greedy: also run HuggingFace generate() on the same weights and say "
                     "whether every new token is the same (exit 1 if not) (default: off)")
    return p


# --------------------------------------------------------------------------
# Input checks that need no model
# --------------------------------------------------------------------------


def option(name: str) -> str:
    """A generate() argument's name as this command's option: top_k -> --top-k."""
    return "--" + name.replace("_", "-")


def check_options(args) -> Sampling:
    if args.max_new_tokens < 1:
        raise BadInput(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.top_k < 0:
        raise BadInput(f"--top-k must be >= 0 (0 switches it off, as in HuggingFace), got {args.top_k}")
    top_k = None if args.top_k == 0 else args.top_k  # HuggingFace's generate() reads top_k=0 as "off"
    if args.top_p == 0:
        raise BadInput("--top-p 0 would keep only the most likely token: use --greedy for that, "
                       "or a P in (0, 1] (1 keeps them all)")
    settings = Sampling(
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_k=top_k,
        top_p=None if args.top_p == 1.0 else args.top_p,
    )
    # top-k and top-p are checked with --greedy too; the temperature only when it is used.
    problem = Sampling(True, args.temperature if args.do_sample else 1.0, top_k, args.top_p).problem(option)
    if problem:
        raise BadInput(problem + (" (or use --greedy)" if "temperature" in problem else ""))
    if args.seed is not None and args.seed < 0:
        raise BadInput(f"--seed must be >= 0, got {args.seed}")
    if args.compare and args.do_sample:
        raise BadInput("--compare needs --greedy: sampled text is random on both sides")
    if args.device == "gpu" and not args.no_cache:
        raise BadInput("--device gpu needs --no-cache: the KV cache runs on the CPU only here")
    if args.max_batch_size < 1:
        raise BadInput(f"--max-batch-size must be at least 1, got {args.max_batch_size}")
    if args.quantize and args.device == "gpu":
        raise BadInput("--quantize runs on the CPU only: MAX 25.7's ops.qmatmul has no GPU kernel")
    return settings


def _decode_utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadInput(
            f"{where} is not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None


def read_prompts(args, stdin=None) -> list[str]:
    """Every prompt, in the order given: --prompt texts (- is stdin), or --prompt-file files."""
    texts = args.prompt if args.prompt is not None else [] if args.prompt_file else [DEFAULT_PROMPT]
    if texts.count("-") > 1:
        raise BadInput("--prompt - is given twice: stdin holds one prompt")
    prompts = [read_prompt(text, None, stdin) for text in texts]
    prompts += [read_prompt(None, path, stdin) for path in args.prompt_file or []]
    return prompts


def read_prompt(text: str | None, path: Path | None, stdin=None) -> str:
    if path is not None or text == "-":
        if path is not None:
            where = f"--prompt-file {path}"
            try:
                data = path.read_bytes()
            except OSError as err:
                raise BadInput(f"cannot read {where}: {err.strerror or err}") from None
        else:
            where = "the prompt on stdin"
            data = (stdin or sys.stdin.buffer).read()
        prompt = _decode_utf8(data, where)
        prompt = prompt[:-2] if prompt.endswith("\r\n") else prompt.removesuffix("\n")
    else:
        prompt = text
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates
            raise BadInput("the --prompt argument is not valid UTF-8") from None
    if not prompt:
        raise BadInput("the prompt is empty: give some text with --prompt, --prompt-file or on stdin")
    return prompt


def gpu_device():
    from max.driver import Accelerator, accelerator_count

    if accelerator_count() < 1:
        raise BadInput("--device gpu: MAX sees no GPU on this machine (max.driver.accelerator_count() is 0); use --device cpu")
    return Accelerator()


# --------------------------------------------------------------------------
# Progress on stderr
# --------------------------------------------------------------------------


@contextlib.contextmanager
def progress(label: str):
    """'label ...' on stderr, then the seconds it took; on a terminal the
    seconds count up while it runs. Yields a dict that gets 'seconds'."""
    err = sys.stderr
    start = time.perf_counter()
    result = {}
    err.write(f"{label} ...")
    err.flush()
    stop = threading.Event()
    ticker = None
    if err.isatty():
        def tick():
            while not stop.wait(1.0):
                err.write(f"\r{label} ... {time.perf_counter() - start:.0f} s")
                err.flush()
        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
    ok = False
    try:
        yield result
        ok = True
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        result["seconds"] = seconds = time.perf_counter() - start
        end = f"done in {seconds:.1f} s" if ok else "stopped"
        err.write(f"\r{label} ... {end}\n" if ticker else f" {end}\n")
        err.flush()


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


def run(argv, stdout, stdin=None) -> int:
    args = build_parser().parse_args(argv)
    settings = check_options(args)
    prompts = read_prompts(args, stdin)
    device = gpu_device() if args.device == "gpu" else None
    found, config, tokenizer, prompt_ids, eos = open_checkpoint(args, prompts)
    code = lesson_code(args)

    from tools import checkpoint as ckpt

    with progress(f"loading {args.model}") as loaded:
        hf_model = ckpt.load_hf_model(found)
        model = ckpt.build_max_model(
            ckpt.hf_state_dict(hf_model), ckpt.max_config(config), code.load_hf_weights, device, code.model_class
        )
        if not args.compare:
            hf_model = None
    with progress(COMPILE_LABEL) as compiled_in, ckpt.default_device_for(device):
        compiled = code.compile_model(model)

    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    results, seconds = generate(args, compiled, device, code, settings, seed, tokenizer, prompts, prompt_ids, eos, stdout)
    made = sum(len(r["generated_ids"]) for r in results)
    all_rate = made / seconds if seconds > 0 else float("inf")
    first = min(r["time_to_first_token_seconds"] for r in results)
    sys.stderr.write(
        (f"{len(results)} prompts, " if len(results) > 1 else "")
        + f"{made} new tokens in {seconds:.2f} s: {all_rate:.1f} tokens/s, first token after {first:.2f} s; "
        f"loading {loaded['seconds']:.1f} s, compiling {compiled_in['seconds']:.1f} s"
        + f"; {code.path}"
        + (f"; seed {seed}" + (f" (prompt i: {seed} + i)" if len(results) > 1 else "") if args.do_sample else "")
        + ("; stopped at end-of-text" if len(results) == 1 and results[0]["finish_reason"] == "eos" else "")
        + "\n"
    )
    status = 0
    for index, (prompt, ids, result) in enumerate(zip(prompts, prompt_ids, results)):
        record = {
            "model": args.model,
            "index": index,
            "prompt": prompt,
            "prompt_ids": ids,
            "generated_ids": result["generated_ids"],
            "text": result["text"],
            "finish_reason": result["finish_reason"],
            "kv_cache": code.cached,
            "kernel": code.kernel,
            "attention_in_place": code.in_place,
            "quantize": code.quantize,
            "do_sample": args.do_sample,
            "temperature": args.temperature if args.do_sample else None,
            "top_k": args.top_k if args.do_sample else None,
            "top_p": args.top_p if args.do_sample else None,
            "seed": seed + index if args.do_sample else None,
            "load_seconds": round(loaded["seconds"], 3),
            "compile_seconds": round(compiled_in["seconds"], 3),
            "time_to_first_token_seconds": round(result["time_to_first_token_seconds"], 4),
            "tokens_per_second": round(result["tokens_per_second"], 2),
            "all_tokens_per_second": round(all_rate, 2),
        }
        if args.compare:
            label = prompt_label(index, len(prompts))
            status |= compare(hf_model, tokenizer, ids, result["generated_ids"], args, eos, record, stdout, label)
        if args.json:
            stdout.write(json.dumps(record) + "\n")
    stdout.flush()
    return status


def prompt_label(index: int, count: int) -> str:
    """What a message about prompt index starts with: "prompt 2 of 3: " (nothing for one prompt)."""
    return f"prompt {index + 1} of {count}: " if count > 1 else ""


def open_checkpoint(args, prompts: list[str]):
    """The checkpoint, its config and tokenizer, each prompt's token ids and the
    end-of-text ids: everything that can be refused without the weights."""
    from transformers.utils import logging

    from tools import checkpoint as ckpt

    found = ckpt.locate(args.model)
    logging.set_verbosity_error()
    config = ckpt.load_hf_config(found)
    tokenizer = ckpt.load_tokenizer(found)
    all_ids = []
    for index, prompt in enumerate(prompts):
        which = prompt_label(index, len(prompts))
        prompt_ids = [int(i) for i in tokenizer(prompt)["input_ids"]]
        if not prompt_ids:
            raise BadInput(f"{which}the prompt gives no tokens")
        problem = context_problem(len(prompt_ids), args.max_new_tokens, config.n_positions, args.model, option)
        if problem:
            raise BadInput(which + problem)
        if max(prompt_ids) >= config.vocab_size:
            raise BadInput(
                f"{which}the tokenizer of {args.model} gives token id {max(prompt_ids)}, "
                f"but the model knows only {config.vocab_size} tokens"
            )
        all_ids.append(prompt_ids)
    from tools.generation import quantize_problem

    problem = quantize_problem(args.quantize, cache=not args.no_cache, n_embd=config.n_embd, name=option)
    if problem:
        raise BadInput(problem)
    eos = () if args.ignore_eos else ckpt.eos_token_ids(found, config, tokenizer)
    if len(eos) > 1:
        raise BadInput(f"{args.model} names {len(eos)} end-of-text tokens {list(eos)}; the course's loops stop at "
                       "one (GPT-2 has one): add --ignore-eos")
    return found, config, tokenizer, all_ids, eos


def mojo_wanted(args) -> bool:
    """The course's Mojo ops on the decode path (lesson 16's kernel, and attention
    that reads the cache in place), unless --no-kernel or --no-cache, or they
    do not build here (then a note says why)."""
    if args.no_kernel or args.no_cache:
        return False
    from tools.generation import kernel_or_note

    return kernel_or_note("decoding")


def lesson_code(args):
    """The learner's lesson code (checked for open TODOs first) or the solutions',
    with lesson 15's KV cache and loop unless --no-cache."""
    from tools.generation import reference_code, with_quantized

    if not (args.steps or args.steps_dir is not None):
        mojo = mojo_wanted(args)  # with --quantize: the in-place attention only (ops.qmatmul does the products)
        return reference_code(cache=not args.no_cache, kernel=mojo and not args.quantize, quantize=args.quantize,
                              in_place=mojo)
    from tools.steps import learner_code

    code = learner_code(args.steps_dir or REPO / "steps", cache=not args.no_cache)
    return with_quantized(code, args.quantize) if args.quantize else code


def generate(args, compiled, device, code, settings, seed, tokenizer, prompts, prompt_ids, eos, stdout):
    """Write each prompt's new text to stdout (unless --json): one prompt as it
    streams, several whole and in order. Returns (what each prompt made, with
    timings; the seconds of the whole loop)."""
    from tools.checkpoint import default_device_for
    from tools.generation import IncrementalDecoder, stream_prompts

    several = len(prompts) > 1
    decoders = [IncrementalDecoder(tokenizer) for _ in prompts]
    generated: list[list[int]] = [[] for _ in prompts]
    first_token: list[float | None] = [None] * len(prompts)
    last_token = [0.0] * len(prompts)
    shown = 0  # with several prompts: how many have been printed

    def show(piece: str) -> None:
        if not args.json:
            stdout.write(piece)
            stdout.flush()

    def finished(index: int) -> bool:
        tokens = generated[index]
        return len(tokens) == args.max_new_tokens or (bool(tokens) and tokens[-1] in eos)

    def show_in_order(ready) -> None:
        """With several prompts: print each ready one whose predecessors are printed."""
        nonlocal shown
        while several and shown < len(prompts) and ready(shown):
            show(f"--- prompt {shown + 1} of {len(prompts)} ---\n{prompts[shown]}{decoders[shown].text()}\n")
            shown += 1

    if not several:
        show(prompts[0])
    start = time.perf_counter()
    eos_id = eos[0] if eos else None
    with default_device_for(device):
        stream = stream_prompts(code, compiled, prompt_ids, args.max_new_tokens, settings, seed, eos_id,
                                max_batch_size=args.max_batch_size, device=device)
        for index, token in stream:
            now = time.perf_counter() - start
            first_token[index] = now if first_token[index] is None else first_token[index]
            last_token[index] = now
            generated[index].append(token)
            piece = decoders[index].push(token)
            if not several:
                show(piece)
            show_in_order(finished)
    seconds = time.perf_counter() - start
    show_in_order(lambda index: True)  # (every prompt is finished here; printed all the same if not)
    if not several:
        show(decoders[0].flush() + "\n")
    results = []
    for index, tokens in enumerate(generated):
        results.append({
            "generated_ids": tokens,
            "text": decoders[index].text(),
            "finish_reason": "eos" if tokens and tokens[-1] in eos else "length",
            "time_to_first_token_seconds": first_token[index],
            "tokens_per_second": len(tokens) / last_token[index] if last_token[index] > 0 else float("inf"),
        })
    return results, seconds


def compare(hf_model, tokenizer, prompt_ids, generated, args, eos, record, stdout, label="") -> int:
    """--compare: HuggingFace generate() on the same weights, on this prompt alone;
    0 when every token is the same, else 1."""
    expected = huggingface_greedy(hf_model, prompt_ids, args.max_new_tokens, eos)
    record["huggingface_generated_ids"] = expected
    record["identical_to_huggingface"] = same = expected == generated
    if same:
        message = f"identical to HuggingFace generate(): all {len(generated)} new tokens match"
    else:
        at = next((i for i, (a, b) in enumerate(zip(generated, expected)) if a != b), min(len(generated), len(expected)))
        message = (
            f"DIFFERENT from HuggingFace generate() from new token {at + 1} "
            f"(MAX made {len(generated)} tokens, HuggingFace {len(expected)}); HuggingFace wrote:\n"
            + tokenizer.decode(expected, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        )
    if not args.json:
        stdout.write(label + message + "\n")
    return 0 if same else 1


def huggingface_greedy(hf_model, prompt_ids: list[int], max_new_tokens: int, eos: tuple[int, ...]) -> list[int]:
    """HuggingFace generate(), greedy, with the same end-of-text rule: the new token ids."""
    import copy
    import warnings

    import torch

    config = copy.deepcopy(hf_model.generation_config)
    config.update(
        do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
        eos_token_id=list(eos) or None, pad_token_id=eos[0] if eos else 0,
    )
    prompt = torch.tensor([prompt_ids], dtype=torch.long)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=config)
    return [int(t) for t in out[0, len(prompt_ids):]]


def main(argv=None) -> int:
    try:
        return run(argv, sys.stdout)
    except (BadInput, CheckpointError, StepsNotReady) as err:
        sys.stdout.flush()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. | head: the reader has gone
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
