"""Shared parameters of the op tests: devices, dtypes and their tolerances, each op's input
makers, and OP_CASES, the registry that tests/test_op_common.py runs its generic checks over."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import star_ext

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


def assert_matches_reference(op, ref, inputs, args=(), dtype=None, grad_close=None):
    """The fused op against its reference on the same inputs: outputs, and the
    gradients of <out, r> w.r.t. every input that requires grad.

    With ``dtype`` the reference runs on float64 copies and both are compared
    with TOLERANCES[dtype]; without, on copies in the inputs' dtype with
    assert_close's defaults. Non-float inputs (graph templates) are shared.
    ``grad_close(actual, expected, dtype)`` replaces the gradient comparison.
    """

    def copy(t):
        if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
            return t
        return as64(t) if dtype is not None else leaf(t, t.requires_grad)

    def close(actual, expected):
        if dtype is None:
            torch.testing.assert_close(actual, expected)
        else:
            torch.testing.assert_close(actual.double(), expected, **TOLERANCES[dtype])

    refs = [copy(t) for t in inputs]
    out = op(*inputs, *args)
    expected = ref(*refs, *args)
    close(out, expected)
    wrt = [i for i, t in enumerate(inputs) if isinstance(t, torch.Tensor) and t.requires_grad]
    if not wrt or out.numel() == 0:
        return
    got = grads(out, [inputs[i] for i in wrt])
    want = grads(expected, [refs[i] for i in wrt])
    for g, e in zip(got, want, strict=False):
        grad_close(g, e, dtype) if grad_close is not None else close(g, e)


def assert_same_non_finite(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to rounding, NaN exactly where expected has NaN, +-inf exactly where it has them."""
    assert torch.equal(torch.isnan(actual), torch.isnan(expected)), (actual, expected)
    assert torch.equal(torch.isposinf(actual), torch.isposinf(expected)), (actual, expected)
    assert torch.equal(torch.isneginf(actual), torch.isneginf(expected)), (actual, expected)
    torch.testing.assert_close(actual, expected.to(actual.dtype), equal_nan=True)


def opcheck_with_and_without_grad(op, inputs, args=()) -> None:
    """torch.library.opcheck of the op with its float inputs requiring grad, then without."""
    with_grad = [leaf(t) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs]
    torch.library.opcheck(op, (*with_grad, *args))
    torch.library.opcheck(op, (*inputs, *args))


def assert_compiled_matches_eager(fn, differentiable, *constants) -> None:
    """fn(*differentiable, *constants) -> scalar under torch.compile(fullgraph, aot_eager)
    equals eager: the value, and the gradient of every differentiable input."""
    compiled_fn = torch.compile(fn, fullgraph=True, backend="aot_eager")
    a = [leaf(t) for t in differentiable]
    b = [leaf(t) for t in differentiable]
    compiled, eager = compiled_fn(*a, *constants), fn(*b, *constants)
    torch.testing.assert_close(compiled, eager)
    compiled.backward()
    eager.backward()
    for x, y in zip(a, b, strict=False):
        torch.testing.assert_close(x.grad, y.grad)


def assert_double_backward_rejected(name: str, out: torch.Tensor, inputs: list[torch.Tensor]) -> None:
    """First-order gradients with create_graph=True work; differentiating them raises naming the op."""
    first = torch.autograd.grad(out, inputs, torch.ones_like(out), create_graph=True)
    assert all(g.shape == t.shape for g, t in zip(first, inputs, strict=False))
    total = sum(g.sum() for g in first)
    with pytest.raises(NotImplementedError, match=rf"{name}: double backward is not supported"):
        torch.autograd.grad(total, inputs)


# ----------------------------------------------------------------------------- each op's inputs

STAR_P = (0.7, 1.0, 3.0, 5.0, 7.0)  # the GeM exponents STAR uses


def keypoint_pool_inputs(n, c, h, w, k, dtype=torch.float64, device="cpu", seed=0):
    """(feat [n, c, h, w], kpts [n, k, 3]), some keypoints just outside the frame."""
    gen = torch.Generator().manual_seed(seed)
    feat = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    kpts = torch.rand(n, k, 3, generator=gen, dtype=torch.float64)
    kpts[..., :2] = kpts[..., :2] * 1.2 - 0.1
    return feat.to(device, dtype), kpts.to(device, dtype)


def guided_gem_pool_inputs(b, t, c, p=STAR_P, dtype=torch.float64, device="cpu", seed=0, low=0.05, high=3.0):
    """(x [b, t, c] in [low, high), weight [b, len(p), c] summing to 1 over p, the exponents p)."""
    gen = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(b, t, c, generator=gen, dtype=torch.float64)
    weight = torch.softmax(torch.randn(b, len(p), c, generator=gen, dtype=torch.float64), dim=1)
    exps = torch.tensor(p, dtype=torch.float64)
    return x.to(device, dtype), weight.to(device, dtype), exps.to(device, dtype)


def keypoint_graph_attention_inputs(
    b, num_frames, heads, d, dtype=torch.float64, device="cpu", seed=0, index_dtype=torch.int64
):
    """(h, a_src, a_dst, rowptr, col) on the skeleton graph of ``num_frames`` frames."""
    rowptr, col = star_ext.skeleton_graph(num_frames, dtype=index_dtype)
    v = rowptr.numel() - 1
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(b, v, heads, d, generator=gen, dtype=torch.float64)
    a_src = torch.randn(b, v, heads, generator=gen, dtype=torch.float64)
    a_dst = torch.randn(b, v, heads, generator=gen, dtype=torch.float64)
    cast = lambda t: t.to(device, dtype)  # noqa: E731
    return cast(h), cast(a_src), cast(a_dst), rowptr.to(device), col.to(device)


# ----------------------------------------------------------------------------- the op registry


@dataclass(frozen=True)
class OpCase:
    """One op with small inputs, for the checks every op gets (tests/test_op_common.py).

    ``inputs(device, dtype)`` gives (the float inputs, the other arguments), so that
    ``torch.ops.star.<name>(*floats, *rest)`` is a call; ``in_graph(*floats, *rest)`` is a
    scalar of the op's public wrapper between other ops, for torch.compile.
    """

    id: str
    name: str
    inputs: Callable[[str, torch.dtype], tuple[list[torch.Tensor], tuple]]
    in_graph: Callable[..., torch.Tensor]

    @property
    def op(self):
        return getattr(torch.ops.star, self.name)


def _pool_case(device, dtype):
    return list(keypoint_pool_inputs(2, 3, 5, 4, 3, dtype=dtype, device=device)), (0.25, 1e-6)


def _gem_case(device, dtype):
    return list(guided_gem_pool_inputs(2, 4, 3, p=(0.7, 1.0, 3.0), dtype=dtype, device=device)), (1e-6,)


def _graph_case(dropout: bool):
    def inputs(device, dtype):
        h, a_src, a_dst, rowptr, col = keypoint_graph_attention_inputs(2, 2, 2, 3, dtype=dtype, device=device)
        if not dropout:
            return [h, a_src, a_dst], (rowptr, col, 0.2, None, 1.0)
        keep = torch.rand(2, col.numel(), 2, generator=torch.Generator().manual_seed(3)) > 0.3
        return [h, a_src, a_dst], (rowptr, col, 0.2, keep.to(device), 1.3)

    return inputs


OP_CASES = [
    OpCase(
        "keypoint_pool",
        "keypoint_pool",
        _pool_case,
        lambda f, *rest: star_ext.keypoint_pool(f * 2, *rest).square().sum(),
    ),
    OpCase(
        "guided_gem_pool",
        "guided_gem_pool",
        _gem_case,
        lambda x, w, *rest: star_ext.guided_gem_pool(torch.relu(x), torch.softmax(w, dim=1), *rest).sum(),
    ),
    OpCase(
        "keypoint_graph_attention",
        "keypoint_graph_attention",
        _graph_case(dropout=False),
        lambda h, *rest: torch.nn.functional.elu(star_ext.keypoint_graph_attention(h, *rest)).sum(),
    ),
    OpCase(
        "keypoint_graph_attention-dropout",
        "keypoint_graph_attention",
        _graph_case(dropout=True),
        lambda h, *rest: torch.nn.functional.elu(star_ext.keypoint_graph_attention(h, *rest)).sum(),
    ),
]
