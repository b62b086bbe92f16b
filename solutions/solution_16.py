"""
Solution for Step 16: Your first Mojo kernel

A decode step multiplies one token's vector by every weight matrix: each
weight is read once and used for 2 FLOPs, so the step can go no faster
than memory streams the weights in. kernels_16/matvec.mojo is a Mojo
custom op that streams them at memory speed; this file puts it in place
of MAX's matmul wherever a Linear sees one token per sequence.
"""

from pathlib import Path

from max.dtype import DType
from max.experimental import functional as F
from max.experimental.tensor import Tensor
from max.graph import TensorType
from max.nn.module_v3 import Linear, Module

from solutions.solution_01 import GPT2Config
from solutions.solution_15 import BatchedGPT2LMHeadModel

KERNELS = Path(__file__).parent / "kernels_16"  # the Mojo package with the op "gpt2_matvec"


def matvec(x: Tensor, weight: Tensor) -> Tensor:
    """x [M, K] @ weight [N, K].T -> [M, N], computed by the Mojo op gpt2_matvec."""
    out_type = TensorType(DType.float32, [x.shape[0], weight.shape[0]], device=x.device)
    return F.custom("gpt2_matvec", x.device, [x, weight], [out_type])[0]


def one_token_per_row(x: Tensor) -> bool:
    """True when x [..., K] is known, while the graph is built, to hold one token per sequence:
    [batch, K], or [batch, 1, K] (a decode step)."""
    return x.rank == 2 or (x.rank == 3 and x.shape[1] == 1)


class KernelLinear(Linear):
    """Linear that runs the Mojo kernel on one token per sequence, MAX's matmul otherwise (a prefill)."""

    def __call__(self, x: Tensor) -> Tensor:
        if not one_token_per_row(x):
            return super().__call__(x)
        rows = x.reshape([x.shape[0], x.shape[-1]])  # [batch, in_dim]
        y = matvec(rows, self.weight)  # [batch, out_dim]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape([*x.shape[:-1], self.weight.shape[0]])  # x's shape, with out_dim last


def use_kernel(model: Module) -> Module:
    """Every Linear in model becomes a KernelLinear, keeping its weights."""
    for _, layer in model.descendants:
        if type(layer) is Linear:
            layer.__class__ = KernelLinear
    return model


class KernelGPT2LMHeadModel(BatchedGPT2LMHeadModel):
    """Lesson 15's batched GPT-2 whose Linears run the Mojo kernel in decode steps."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        use_kernel(self)
