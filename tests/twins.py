"""The references the checks compare with: HuggingFace (or torch) twins of
the learner's modules, built from a config with seeded O(1)-scale weights,
and the copying of those weights into the learner's module.

Nothing here downloads: every model is built from a config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.loading import fail
from tools.steps import FixedLogits  # noqa: F401  (the stand-in model with known logits, shared with the commands)

# Small configs catch hard-coded 768s and 12s: another width, head count,
# an explicit n_inner and another epsilon. "gpt2" is the 124M default.
CONFIGS = {
    "gpt2 (defaults)": dict(),
    "n_embd=64, n_head=4": dict(
        n_embd=64, n_head=4, n_layer=2, vocab_size=1000, n_positions=128
    ),
    "n_embd=48, n_head=6, n_inner=80, eps=1e-3": dict(
        n_embd=48, n_head=6, n_layer=2, vocab_size=777, n_positions=96,
        n_inner=80, layer_norm_epsilon=1e-3,
    ),
}
SMALL_CONFIGS = {k: v for k, v in CONFIGS.items() if k != "gpt2 (defaults)"}
FULL_CONFIG = {"gpt2 (defaults)": CONFIGS["gpt2 (defaults)"]}


def max_config(overrides: dict):
    from solutions.solution_01 import GPT2Config

    return GPT2Config(**overrides)


def hf_config(overrides: dict):
    import transformers

    config = transformers.GPT2Config(
        **overrides,
        activation_function="gelu_new",
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
    )
    config._attn_implementation = "eager"
    return config


@dataclass
class Case:
    """One config of a check: its label and the same sizes for MAX and HuggingFace."""

    label: str
    overrides: dict

    @property
    def max(self):
        return max_config(self.overrides)

    @property
    def hf(self):
        return hf_config(self.overrides)


def cases(configs: dict = CONFIGS) -> list[Case]:
    return [Case(label, overrides) for label, overrides in configs.items()]


def randomize_(module, seed: int):
    """Give every parameter seeded values of O(1) scale, in place.

    HuggingFace's own init (std 0.02, LayerNorm 1 and 0, biases 0) hides
    real mistakes: a missing bias, exact GELU. Here LayerNorm weights are
    1 + 0.5 N(0,1), biases 0.5 N(0,1), embeddings N(0,1), and projection
    weights N(0,1)/sqrt(fan_in) so each layer's outputs stay O(1).
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    generator = torch.Generator().manual_seed(seed)

    def normal(shape):
        return torch.randn(shape, generator=generator)

    with torch.no_grad():
        for owner in module.modules():
            for name, p in owner.named_parameters(recurse=False):
                if isinstance(owner, torch.nn.LayerNorm) and name == "weight":
                    p.copy_(1 + 0.5 * normal(p.shape))
                elif name == "bias":
                    p.copy_(0.5 * normal(p.shape))
                elif isinstance(owner, Conv1D):  # weight [in, out]
                    p.copy_(normal(p.shape) / p.shape[0] ** 0.5)
                elif isinstance(owner, torch.nn.Linear):  # weight [out, in]
                    p.copy_(normal(p.shape) / p.shape[1] ** 0.5)
                else:  # embeddings
                    p.copy_(normal(p.shape))
    return module.eval()


def without_hf_init(make):
    """make() with HuggingFace's own weight init skipped, weights still tied.

    randomize_ sets every parameter afterwards, and at 124M the init it
    replaces costs over a second of every check (175 normal_ calls).
    """
    from transformers.modeling_utils import no_init_weights

    with no_init_weights():
        module = make()
    if hasattr(module, "tie_weights"):
        module.tie_weights()  # no_init_weights skips the tying too
    return module


def max_state_from_hf(module) -> dict[str, np.ndarray]:
    """HuggingFace parameters as MAX wants them: Conv1D weights transposed to
    [out, in], tied weights listed under both names, buffers left out."""
    from transformers.pytorch_utils import Conv1D

    conv1d = {name for name, m in module.named_modules() if isinstance(m, Conv1D)}
    state = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        array = p.detach().numpy()
        owner = name.rpartition(".")[0]
        if owner in conv1d and name.endswith("weight"):
            array = array.T
        state[name] = np.ascontiguousarray(array, dtype=np.float32)
    return state


def _listing(names: list[str], most: int = 6) -> str:
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _plain_lists(module, path: str = "") -> list[str]:
    """Attributes that are plain Python lists or tuples of modules: MAX does
    not look inside them for parameters."""
    from max.nn.module_v3 import Module

    found = []
    for name, value in vars(module).items():
        if isinstance(value, (list, tuple)) and not isinstance(value, Module):
            if any(isinstance(v, Module) for v in value):
                found.append(path + name)
        elif isinstance(value, Module):
            found += _plain_lists(value, f"{path}{name}.")
    return found


def load_weights(module, state: dict[str, np.ndarray], what: str, reference: str = "HuggingFace") -> None:
    """Copy state into the learner's module, checking names and shapes first
    (MAX's load_state_dict does not check shapes)."""
    ours = {name: tuple(int(d) for d in p.shape) for name, p in module.parameters}
    missing = sorted(state.keys() - ours.keys())
    extra = sorted(ours.keys() - state.keys())
    problems = []
    if missing:
        problems.append(f"missing parameters: {_listing(missing)}")
    if extra:
        problems.append(f"parameters {reference} does not have: {_listing(extra)}")
    for name in sorted(ours.keys() & state.keys()):
        if ours[name] != state[name].shape:
            hint = ""
            if ours[name] == state[name].shape[::-1]:
                hint = " (reversed: Linear(in_dim, out_dim) takes the input size first)"
            problems.append(
                f"{name} has shape {list(ours[name])}, expected {list(state[name].shape)}{hint}"
            )
    if not problems:
        module.load_state_dict(state)
        return
    message = f"{what}: the parameters do not match {reference}'s.\n  " + "\n  ".join(problems)
    lists = _plain_lists(module)
    if missing and lists:
        names = ", ".join(f"self.{name}" for name in lists)
        message += (
            f"\nLikely cause: {names} is a plain Python list, and MAX finds no parameters "
            "in a list: use Sequential(*modules), which names them 0, 1, 2, ..."
        )
    elif any(n.endswith("bias") for n in extra):
        message += "\nLikely cause: a layer has a bias it should not have: create it with bias=False."
    else:
        message += "\nUse the names and sizes from the # Hint lines (they match HuggingFace's)."
    fail(message)


def seeded_inputs(kind: str, shapes, *, width: int = 0, vocab: int = 0, seed: int = 0):
    """Seeded test inputs: 'hidden' floats [b, s, width] or 'ids' in [0, vocab)."""
    rng = np.random.default_rng(seed)
    if kind == "hidden":
        return [rng.standard_normal((b, s, width)).astype(np.float32) for b, s in shapes]
    return [rng.integers(0, vocab, size=(b, s), dtype=np.int64) for b, s in shapes]


def torch_run(reference, array: np.ndarray) -> np.ndarray:
    """Run a HuggingFace/torch reference on a numpy input, without gradients."""
    import torch

    with torch.no_grad():
        out = reference(torch.from_numpy(array))
        if isinstance(out, tuple):
            out = out[0]
        if hasattr(out, "logits"):
            out = out.logits
        elif hasattr(out, "last_hidden_state"):
            out = out.last_hidden_state
        return out.double().numpy()


# --------------------------------------------------------------------------
# Whole models, for the generation lessons
# --------------------------------------------------------------------------


def seeded_hf_lm(config, seed: int):
    """A HuggingFace GPT2LMHeadModel of config (a GPT2Config) with randomize_'s
    seeded weights, whose generate() is set never to stop early."""
    from transformers import GPT2LMHeadModel

    hf = randomize_(without_hf_init(lambda: GPT2LMHeadModel(config)), seed)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    return hf


def lm_twins(case: Case, seed: int, ours=None, what: str = "reference model"):
    """A seeded HuggingFace GPT2LMHeadModel (seeded_hf_lm) and a MAX model
    holding the same weights (loaded here, not by the lesson's loader): ours,
    or else the reference MaxGPT2LMHeadModel."""
    from solutions.solution_11 import MaxGPT2LMHeadModel

    hf = seeded_hf_lm(case.hf, seed)
    ours = MaxGPT2LMHeadModel(case.max) if ours is None else ours
    load_weights(ours, max_state_from_hf(hf), what)
    return hf, ours


def hf_generate(hf, prompt: np.ndarray, new_tokens: int, **options) -> np.ndarray:
    """HuggingFace generate() on a numpy prompt (no padding), as numpy."""
    import torch

    with torch.no_grad():
        return hf.generate(
            torch.from_numpy(prompt),
            attention_mask=torch.ones(prompt.shape, dtype=torch.long),
            max_new_tokens=new_tokens,
            **options,
        ).numpy()


class FixedCachedLogits(FixedLogits):
    """FixedLogits as a compiled cached model (lesson 14) sees it:
    (ids [batch, seq], cache) -> the logits of the last new position,
    [batch, vocab], and zero keys and values for the new tokens. config
    (n_layer, n_head, n_embd) sizes them."""

    def __call__(self, ids, cache):
        batch, seq = np.shape(ids)
        c = self.config
        new = np.zeros((c.n_layer, batch, c.n_head, seq, c.n_embd // c.n_head), dtype=np.float32)
        return self.logits[:batch, cache.length + seq - 1], new, new


# --------------------------------------------------------------------------
# Checkpoints on disk, for the commands (generate.py, plot_sampling.py, serve)
# --------------------------------------------------------------------------

# A small GPT-2 whose vocabulary is the 256 bytes plus <|endoftext|> (id 256).
TINY = dict(n_embd=64, n_head=4, n_layer=2, vocab_size=257, n_positions=128)
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def save_byte_tokenizer(folder, vocab_size: int = 257) -> int:
    """A byte-level GPT-2 tokenizer (every byte one token, no merges) saved in
    folder with save_pretrained; returns the id of <|endoftext|>, the last.
    With vocab_size > 257, ids 256 .. vocab_size - 2 are filler tokens "t256",
    ... that no text encodes to but that decode (a model of GPT-2's shape
    writes them)."""
    import json

    from transformers import GPT2TokenizerFast
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}
    vocab.update({f"t{i}": i for i in range(len(vocab), vocab_size - 1)})
    vocab["<|endoftext|>"] = len(vocab)  # 256 by default
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    GPT2TokenizerFast(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt")).save_pretrained(folder)
    return vocab["<|endoftext|>"]


def save_model(model, folder, eos: int | None) -> None:
    """model.save_pretrained(folder), with eos (and bos) set to eos."""
    model.config.eos_token_id = model.config.bos_token_id = eos
    model.generation_config.eos_token_id = model.generation_config.bos_token_id = eos
    model.save_pretrained(folder)


def save_checkpoint(folder, overrides: dict = TINY, seed: int = 30):
    """A GPT-2 with seeded O(1)-scale weights and the byte-level tokenizer (as
    large as the vocabulary), saved in folder as save_pretrained writes it;
    returns folder. save_checkpoint(folder, {}) is GPT-2 124M's shape."""
    from transformers import GPT2LMHeadModel

    eos = save_byte_tokenizer(folder, hf_config(overrides).vocab_size)
    save_model(randomize_(without_hf_init(lambda: GPT2LMHeadModel(hf_config(overrides))), seed=seed), folder, eos)
    return folder


def hf_dequantized(hf, fmt: str):
    """A copy of a GPT2LMHeadModel whose Linear weights (the four of every
    block and the LM head, untied from wte) are what format fmt stores:
    quantized and decoded again by the gguf package (Q4_0 both ways; Q4_K and
    Q6_K quantized by solutions/kquants.py, gguf has no quantizer for them).
    The embeddings stay float32, as in lesson 17. What the quantized model
    computes, but for the 8-bit activations inside MAX's ops.qmatmul."""
    import copy

    import torch
    from gguf import GGMLQuantizationType, quants
    from transformers.pytorch_utils import Conv1D

    from solutions.kquants import quantize_q4_k, quantize_q6_k

    kind = GGMLQuantizationType[fmt.upper()]
    course = {"q4_k": quantize_q4_k, "q6_k": quantize_q6_k}

    def stored(w: np.ndarray) -> np.ndarray:  # [out, in] float32
        packed = quants.quantize(w, kind) if fmt == "q4_0" else course[fmt](w)
        return quants.dequantize(packed, kind).reshape(w.shape).astype(np.float32)

    out = copy.deepcopy(hf)
    with torch.no_grad():
        for module in out.modules():
            if isinstance(module, Conv1D):  # weight [in, out]
                module.weight.copy_(torch.from_numpy(stored(module.weight.numpy().T).T.copy()))
        out.lm_head.weight = torch.nn.Parameter(torch.from_numpy(stored(out.lm_head.weight.numpy())))
    out.config.tie_word_embeddings = False
    return out
