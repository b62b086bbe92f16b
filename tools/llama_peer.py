"""llama.cpp as an optional peer for bench.py: the same GPT-2 weights, decoded
by llama.cpp through the llama-cpp-python package, in several GGUF formats.

    reason = available()                       # None, or why llama.cpp cannot be compared
    f32 = convert(hf_folder, out_dir)          # save_pretrained folder -> F32 GGUF
    q4 = quantize(f32, "q4_0", out_dir / "q4_0.gguf")
    ms = decode_ms_per_token(q4, prompt_ids, new_tokens=64, threads=2, repeats=3)
    logits = logits_after(f32, prompt_ids)     # to check the conversion against HuggingFace

Nothing here uses the network. Two things are needed besides the package:

- llama-cpp-python itself (`pip install llama-cpp-python`; it builds
  llama.cpp from source, several minutes on two cores).
- llama.cpp's convert_hf_to_gguf.py, which the wheel does not contain. It is
  in the package's source distribution, beside the `conversion/` and
  `gguf-py/` folders it imports. Unpack it once and point at the script:
      pip download llama-cpp-python --no-deps --no-binary :all: -d sdist   # 77 MB
      tar xzf sdist/llama_cpp_python-*.tar.gz -C sdist
      export GPT2_COURSE_LLAMA_CONVERTER=$PWD/sdist/llama_cpp_python-VERSION/vendor/llama.cpp/convert_hf_to_gguf.py
  Use the same version as the installed package, so the converter writes
  what that llama.cpp reads. An editable install from a source tree has the
  script in place, and is found without the variable.

convert() takes a folder with the tokenizer files as well as the weights
(tests/twins.py save_checkpoint writes both); the converter reads the vocabulary.

Each problem is a LlamaPeerError with one line that says what is wrong.
"""

from __future__ import annotations

import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

from tools.offline import offline_env

CONVERTER_ENV = "GPT2_COURSE_LLAMA_CONVERTER"

# Formats and llama.cpp's file types for them. quantize() asks for "pure" files:
# every matrix in the named type, token_embd (also the LM head) included, and
# q4_k is Q4_K everywhere, not Q4_K_M's mix. llama.cpp keeps the 1-D tensors
# (LayerNorms, biases) and position_embd F32. Matrices whose rows do not split
# into its blocks (256 for the K types: n_embd=64) fall back to another type.
FTYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0",
          "q6_k": "MOSTLY_Q6_K", "q4_k": "MOSTLY_Q4_K_M", "q4_0": "MOSTLY_Q4_0"}

# Run in a subprocess: the converter, with one change. Its tokenizer check hashes
# the ids of a test text to recognise a known pre-tokenizer, and the course's
# byte-level tokenizer (no merges) matches none of them. GPT-2's pre-tokenizer is
# the right one for it, so an unrecognised hash falls back to "gpt-2".
_RUN_CONVERTER = """
import runpy, sys
from pathlib import Path
script = Path(sys.argv[1])
# the gguf-py beside it: PyPI's gguf 0.19.0 lacks what this converter uses
sys.path[:0] = [str(script.parent), str(script.parent / "gguf-py")]
try:
    from conversion.base import TextModel
except ImportError:  # an older, single-file converter: run it unchanged
    TextModel = None
if TextModel is not None:
    recognise = TextModel.get_vocab_base_pre
    def pre_tokenizer(self, tokenizer):
        try:
            return recognise(self, tokenizer)
        except NotImplementedError:
            return "gpt-2"
    TextModel.get_vocab_base_pre = pre_tokenizer
sys.argv = sys.argv[1:]
runpy.run_path(str(script), run_name="__main__")
"""


class LlamaPeerError(RuntimeError):
    pass


def find_converter() -> Path | None:
    """convert_hf_to_gguf.py: $GPT2_COURSE_LLAMA_CONVERTER, else beside an
    editable install of llama_cpp (the wheel from PyPI has no converter)."""
    if os.environ.get(CONVERTER_ENV):
        path = Path(os.environ[CONVERTER_ENV])
        return path if path.is_file() else None
    try:
        import llama_cpp
    except ImportError:
        return None
    package = Path(llama_cpp.__file__).resolve().parent
    for folder in (package, package / "vendor" / "llama.cpp", package.parent / "vendor" / "llama.cpp"):
        if (folder / "convert_hf_to_gguf.py").is_file():
            return folder / "convert_hf_to_gguf.py"
    return None


def available() -> str | None:
    """None when llama.cpp can be compared here, else a one-line reason."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return "llama-cpp-python is not installed (pip install llama-cpp-python; optional)"
    if find_converter() is None and os.environ.get(CONVERTER_ENV):
        return f"{CONVERTER_ENV}={os.environ[CONVERTER_ENV]} is not a file"
    if find_converter() is None:
        return (f"llama.cpp's convert_hf_to_gguf.py was not found: set {CONVERTER_ENV} to it "
                "(vendor/llama.cpp/ in the llama-cpp-python source distribution)")
    return None


def convert(hf_folder: Path, out_dir: Path) -> Path:
    """A save_pretrained GPT-2 folder -> out_dir/model-f32.gguf, by llama.cpp's converter."""
    hf_folder, out_dir = Path(hf_folder), Path(out_dir)
    converter = find_converter()
    if converter is None:
        raise LlamaPeerError(available() or "llama.cpp's converter was not found")
    if not (hf_folder / "config.json").is_file():
        raise LlamaPeerError(f"{hf_folder} is not a save_pretrained folder: it has no config.json")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "model-f32.gguf"
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        folder = _converter_copy(hf_folder, Path(tmp))
        command = [sys.executable, "-c", _RUN_CONVERTER, str(converter), str(folder),
                   "--outtype", "f32", "--outfile", str(out), "--model-name", hf_folder.name]
        env = offline_env()
        env.pop("NO_LOCAL_GGUF", None)  # the script would then import PyPI's gguf
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out.is_file():
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise LlamaPeerError(f"convert_hf_to_gguf.py failed on {hf_folder}: {lines[-1]}")
    return out


def _converter_copy(hf_folder: Path, folder: Path) -> Path:
    """The checkpoint as the converter needs it, with links to the other files:
    - config.json with n_ctx, which GPT-2's converter reads and transformers
      no longer writes (it is n_positions);
    - at least one BPE merge: llama.cpp refuses a GPT-2 vocabulary without the
      merges key, and the byte-level tokenizer has none. The placeholder joins
      two multi-character symbols, which byte-level BPE never forms, so it never
      applies (and the benchmark feeds token ids, never text)."""
    for item in hf_folder.iterdir():
        if item.name not in ("config.json", "merges.txt"):
            (folder / item.name).symlink_to(item.resolve())
    config = json.loads((hf_folder / "config.json").read_text())
    if config.get("n_inner") not in (None, 4 * config["n_embd"]):  # GPT-2's converter assumes 4 * n_embd
        raise LlamaPeerError(f"llama.cpp's GPT-2 takes an MLP of 4 * n_embd, not n_inner={config['n_inner']}")
    config.setdefault("n_ctx", config.get("n_positions", 1024))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    merges = hf_folder / "merges.txt"
    lines = merges.read_text(encoding="utf-8").splitlines() if merges.is_file() else []
    if not [line for line in lines if line.strip() and not line.startswith("#")]:
        lines = ["#version: 0.2", "<|placeholder|> <|merge|>"]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def quantize(f32_gguf: Path, fmt: str, out: Path) -> Path:
    """f32_gguf in one of FTYPES' formats, written to out by llama.cpp's quantizer."""
    import llama_cpp

    if fmt not in FTYPES:
        raise LlamaPeerError(f"unknown GGUF format {fmt!r}: choose one of {', '.join(FTYPES)}")
    _capture_log()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_" + FTYPES[fmt])
    params.pure = True
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if llama_cpp.llama_model_quantize(str(f32_gguf).encode(), str(out).encode(), params) != 0:
        raise LlamaPeerError(f"llama.cpp could not quantize {f32_gguf} to {fmt}: {_llama_said()}")
    return Path(out)


# llama.cpp's log: kept here, not printed. llama-cpp-python's own handler prints
# warnings even with verbose=False (its level table predates ggml's current one),
# and the quantizer writes a line per tensor. Errors quote the first error line.
_LOG: deque[str] = deque(maxlen=200)
_CALLBACK = None


def _capture_log() -> None:
    global _CALLBACK
    import llama_cpp

    if _CALLBACK is None:  # kept referenced: llama.cpp holds the pointer
        _CALLBACK = llama_cpp.llama_log_callback(
            lambda level, text, data: _LOG.append(text.decode(errors="replace")))
        llama_cpp.llama_log_set(_CALLBACK, ctypes.c_void_p(0))
    _LOG.clear()


def _llama_said() -> str:
    lines = [line.strip() for line in "".join(_LOG).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    return (errors or lines or ["llama.cpp gave no reason"])[0]


def _load(gguf: Path, n_ctx: int, threads: int):
    import llama_cpp

    if not Path(gguf).is_file():
        raise LlamaPeerError(f"no GGUF file at {gguf}")
    _capture_log()
    try:
        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=n_ctx, n_batch=min(n_ctx, 512),
                              n_threads=threads, n_threads_batch=threads,
                              logits_all=False, verbose=False)
    except ValueError:  # llama-cpp-python's "Failed to load model from file"
        raise LlamaPeerError(f"llama.cpp could not load {gguf}: {_llama_said()}") from None
    positions = llama_cpp.llama_model_n_ctx_train(llm.model)
    if n_ctx > positions:  # GPT-2 has no positions past n_positions
        raise LlamaPeerError(f"{n_ctx} tokens do not fit the model's {positions} positions")
    return llm


def _last_logits(llm) -> np.ndarray:
    import llama_cpp

    pointer = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).copy()


def logits_after(gguf: Path, prompt_ids: list[int], threads: int = 2) -> np.ndarray:
    """llama.cpp's logits for the token after prompt_ids, float32 [vocab]."""
    llm = _load(gguf, n_ctx=len(prompt_ids), threads=threads)
    llm.eval(list(prompt_ids))
    return _last_logits(llm)


def decode_ms_per_token(gguf: Path, prompt_ids: list[int], new_tokens: int,
                        threads: int = 2, repeats: int = 3) -> float:
    """Greedy decoding after prompt_ids: the median time of one decode step
    (one token through the model, with llama.cpp's KV cache), in ms. One
    untimed run first pages the weights in; then the median over repeats of
    each run's median step."""
    llm = _load(gguf, n_ctx=len(prompt_ids) + new_tokens, threads=threads)
    medians = []
    for run in range(repeats + 1):
        llm.reset()
        llm.eval(list(prompt_ids))
        steps = []
        for _ in range(new_tokens):
            token = int(np.argmax(_last_logits(llm)))
            start = time.perf_counter()
            llm.eval([token])
            steps.append(time.perf_counter() - start)
        if run > 0:
            medians.append(statistics.median(steps))
    return 1000 * statistics.median(medians)


def crash_here(gguf: Path, threads: int = 2) -> str | None:
    """None when llama.cpp decodes a few tokens of gguf in a child process, else why not.

    A crash inside llama.cpp's native code (seen here: a segmentation fault in
    the quantized kernels of a native build on an AMX-capable Xeon) would
    take the whole benchmark down with it, with no message; tried in a child
    first, it becomes a format left out, said so."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1])\n"
        "from tools.llama_peer import Greedy\n"
        "Greedy(Path(sys.argv[2]), n_ctx=16, threads=int(sys.argv[3]))([0, 1, 2, 3], 4)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code, str(repo), str(gguf), str(threads)],
                          capture_output=True, text=True, env=offline_env())
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        return f"llama.cpp died on {Path(gguf).name} (signal {-done.returncode}) in a trial run"
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    return f"llama.cpp failed on {Path(gguf).name} in a trial run: {last}"


class Greedy:
    """One GGUF file loaded once, decoded greedily on call, as bench.py's
    contenders are: greedy(prompt_ids, n) -> (prompt + n token ids, when
    each new token was ready), with llama.cpp's KV cache."""

    def __init__(self, gguf: Path, n_ctx: int, threads: int = 2):
        self.gguf = Path(gguf)
        self.llm = _load(gguf, n_ctx=n_ctx, threads=threads)

    def __call__(self, prompt_ids: list[int], new_tokens: int) -> tuple[list[int], list[float]]:
        self.llm.reset()
        self.llm.eval(list(prompt_ids))
        tokens, stamps = list(prompt_ids), []
        for produced in range(1, new_tokens + 1):
            tokens.append(int(np.argmax(_last_logits(self.llm))))
            stamps.append(time.perf_counter())
            if produced < new_tokens:
                self.llm.eval([tokens[-1]])
        return tokens, stamps

    def logits_along(self, ids: list[int], prompt_tokens: int) -> np.ndarray:
        """The logits after ids[:prompt_tokens], then after each further id: [len(ids) - prompt_tokens, vocab]."""
        self.llm.reset()
        self.llm.eval(list(ids[:prompt_tokens]))
        rows = [_last_logits(self.llm)]
        for token in ids[prompt_tokens:-1]:
            self.llm.eval([int(token)])
            rows.append(_last_logits(self.llm))
        return np.stack(rows)


def weight_bytes(gguf: Path) -> int:
    """Bytes of weights one decode step reads from the file, as bench.py counts
    the course's: every tensor once, but of position_embd one row; token_embd
    is also the LM head, read whole, plus the one row its lookup reads."""
    from gguf import GGUFReader

    total = 0
    for tensor in GGUFReader(str(gguf)).tensors:
        row = int(tensor.n_bytes) // int(tensor.shape[-1])  # shape is [width, rows]
        if tensor.name == "position_embd.weight":
            total += row
        else:
            total += int(tensor.n_bytes) + (row if tensor.name == "token_embd.weight" else 0)
    return total
