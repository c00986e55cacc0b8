"""The smoke script's checks beyond fused-vs-reference values (``cuda_op_smoke.py --ops extras``).

Each check is one case, run once (not per dtype) and small, so compute-sanitizer sees
the code paths it exercises: non-finite inputs and an unsupported exponent (NaN as
documented), float16 and bfloat16 autocast, double backward raising, channels_last and
transposed inputs, a second device while the first is current (device guard), and
repeated graph-attention backward passes that hit the transposed-template cache.
torch.compile and CUDA graphs are in tests/test_cuda_compile.py (compiling under the
sanitizer would take hours); ``scripts/gpu_check.sh`` runs both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import star_ext
from star_ext import reference


class Failure(AssertionError):
    pass


def inputs(name: str, device: str, dtype=torch.float32, seed: int = 0):
    """(float inputs requiring grad, other arguments) of op ``name``, small STAR-like shapes."""
    gen = torch.Generator().manual_seed(seed)
    if name == "keypoint_pool":
        floats = [torch.rand(3, 8, 18, 9, generator=gen), torch.rand(3, 17, 3, generator=gen)]
        rest = (0.1, 1e-6)
    elif name == "guided_gem_pool":
        floats = [
            torch.rand(2, 5, 40, generator=gen) + 0.05,
            torch.softmax(torch.randn(2, 3, 40, generator=gen), dim=1),
            torch.tensor([0.7, 3.0, 7.0]),
        ]
        rest = (1e-6,)
    else:
        rowptr, col = star_ext.skeleton_graph(2)
        v = rowptr.numel() - 1
        floats = [
            torch.randn(2, v, 2, 8, generator=gen),
            torch.randn(2, v, 2, generator=gen),
            torch.randn(2, v, 2, generator=gen),
        ]
        rest = (rowptr.to(device), col.to(device), 0.2, None, 1.0)
    return [t.to(device, dtype).requires_grad_() for t in floats], rest


OPS = ("keypoint_pool", "guided_gem_pool", "keypoint_graph_attention")


def run(name: str, floats, rest):
    return getattr(star_ext, name)(*floats, *rest)


def same_non_finite(what: str, got: torch.Tensor, want: torch.Tensor) -> None:
    got, want = got.detach().cpu().double(), want.detach().cpu().double()
    for test in (torch.isnan, torch.isposinf, torch.isneginf):
        if not torch.equal(test(got), test(want)):
            raise Failure(f"{what}: {test.__name__} differs from the reference's")
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True):
        raise Failure(f"{what}: finite values differ from the reference's")


def non_finite_inputs(device: str) -> None:
    for name in OPS:
        for value in (float("nan"), float("inf")):
            floats, rest = inputs(name, device)
            with torch.no_grad():
                floats[0][0].view(-1)[:3] = value
            same_non_finite(
                f"{name} with {value}",
                run(name, floats, rest),
                getattr(reference, name)(*(t.double() for t in floats), *rest),
            )


def unsupported_exponent_gives_nan(device: str) -> None:
    floats, rest = inputs("guided_gem_pool", device)
    p = torch.tensor([0.7, 1e-8, 7.0], device=device)
    out = star_ext.guided_gem_pool(floats[0], floats[1], p, *rest)
    if not torch.isnan(out).all():
        raise Failure("guided_gem_pool: an exponent outside the supported range must give NaN on CUDA")


def autocast(device: str) -> None:
    for dtype in (torch.float16, torch.bfloat16):
        for name in OPS:
            floats, rest = inputs(name, device)
            with torch.autocast(device, dtype=dtype):
                out = run(name, [floats[0].to(dtype), *floats[1:]], rest)
            if out.dtype != dtype:
                raise Failure(f"{name} under {dtype} autocast: output {out.dtype}")
            want = getattr(reference, name)(floats[0].to(dtype).double(), *(t.double() for t in floats[1:]), *rest)
            if not torch.allclose(out.double(), want, rtol=5e-2, atol=5e-2):
                raise Failure(f"{name} under {dtype} autocast: values differ from the reference")
            torch.autograd.grad(out.float().sum(), floats[1])  # reaches the float32 input through the cast


def double_backward_raises(device: str) -> None:
    for name in OPS:
        floats, rest = inputs(name, device)
        first = torch.autograd.grad(run(name, floats, rest).square().sum(), floats[0], create_graph=True)[0]
        try:
            first.sum().backward()
        except NotImplementedError as exc:
            if name not in str(exc):
                raise Failure(f"{name}: the double-backward error does not name the op: {exc}") from exc
        else:
            raise Failure(f"{name}: double backward did not raise")


def layouts(device: str) -> None:
    for name in OPS:
        floats, rest = inputs(name, device)
        laid = [
            t.detach().contiguous(memory_format=torch.channels_last)
            if t.dim() == 4
            else t.detach().transpose(-1, -2).contiguous().transpose(-1, -2)
            if t.dim() > 1
            else t.detach()
            for t in floats
        ]
        laid = [t.requires_grad_() for t in laid]
        out, want = run(name, laid, rest), run(name, floats, rest)
        if not out.is_contiguous() or not torch.allclose(out, want, rtol=1e-5, atol=1e-6):
            raise Failure(f"{name}: channels_last/transposed inputs give other values (or a non-contiguous output)")
        grads = torch.autograd.grad(out.sum(), laid)
        want_grads = torch.autograd.grad(want.sum(), floats)
        for g, w in zip(grads, want_grads, strict=False):
            if not g.is_contiguous() or not torch.allclose(g, w, rtol=1e-5, atol=1e-6):
                raise Failure(f"{name}: gradients of channels_last/transposed inputs differ")


def second_device(device: str) -> None:
    if torch.cuda.device_count() < 2:
        print("  (one CUDA device: nothing to guard)")
        return
    for name in OPS:
        on1, rest1 = inputs(name, "cuda:1")
        on0, rest0 = inputs(name, "cuda:0")
        with torch.cuda.device(0):
            out1 = run(name, on1, rest1)
            g1 = torch.autograd.grad(out1.sum(), on1)
        torch.cuda.synchronize(1)
        out0 = run(name, on0, rest0)
        g0 = torch.autograd.grad(out0.sum(), on0)
        if out1.device.index != 1 or not torch.allclose(out1.cpu(), out0.cpu()):
            raise Failure(f"{name}: wrong result for cuda:1 inputs while cuda:0 is current")
        if not all(a.device.index == 1 and torch.allclose(a.cpu(), b.cpu()) for a, b in zip(g1, g0, strict=False)):
            raise Failure(f"{name}: wrong gradients for cuda:1 inputs while cuda:0 is current")


def template_cache_hits(device: str) -> None:
    floats, rest = inputs("keypoint_graph_attention", device)
    first = torch.autograd.grad(run("keypoint_graph_attention", floats, rest).sum(), floats)
    for _ in range(3):  # the same template again: cache hits
        again = torch.autograd.grad(run("keypoint_graph_attention", floats, rest).sum(), floats)
        if not all(torch.equal(a, b) for a, b in zip(again, first, strict=False)):
            raise Failure("keypoint_graph_attention: a cache hit gives other gradients than the first pass")


CHECKS: list[tuple[str, Callable[[str], None]]] = [
    ("non-finite inputs propagate as in the reference", non_finite_inputs),
    ("unsupported exponent gives NaN", unsupported_exponent_gives_nan),
    ("float16 and bfloat16 autocast", autocast),
    ("double backward raises naming the op", double_backward_raises),
    ("channels_last and transposed inputs", layouts),
    ("second device while the first is current", second_device),
    ("transposed-template cache hits", template_cache_hits),
]
