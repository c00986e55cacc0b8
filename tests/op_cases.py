"""Shared parameters of the op tests: devices, dtypes and their tolerances."""

from __future__ import annotations

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")]),
]

# Tolerances against the float64 reference, per dtype of the op's inputs.
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.float16: dict(rtol=2e-2, atol=2e-2),
    torch.bfloat16: dict(rtol=5e-2, atol=5e-2),
}

LOW_PRECISION = [
    pytest.param(torch.float16, id="float16"),
    pytest.param(torch.bfloat16, id="bfloat16"),
]


def grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """Gradients of <out, r> w.r.t. inputs for a fixed random r."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    r = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.device, out.dtype)
    return list(torch.autograd.grad(out, inputs, r, allow_unused=False))


def leaf(t: torch.Tensor, requires_grad: bool = True) -> torch.Tensor:
    return t.detach().clone().requires_grad_(requires_grad)


def as64(t: torch.Tensor) -> torch.Tensor:
    return leaf(t.detach().to(torch.float64), t.requires_grad)


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """assert_close with atol relative to the largest reference magnitude (at least 1).

    For results that are differences of large sums (the keypoint gradient of
    keypoint_pool carries 1/sigma^2 and cancels), rounding error scales with
    the sums, not with each element.
    """
    tol = TOLERANCES[dtype]
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual.double(), expected, rtol=tol["rtol"], atol=tol["atol"] * scale)
