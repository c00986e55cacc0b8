"""Public functions of the fused ops and their fake (meta) kernels.

Each function runs ``torch.ops.star.<op>`` when the extension is loaded and
the pure-PyTorch reference otherwise. The backward of each op is a separate
registered op; autograd is wired up in C++ (csrc/autograd.cpp; first-order
gradients only: differentiating a gradient raises NotImplementedError naming
the op), and the fake kernels that torch.compile needs are here. NaN and inf in
the inputs give what the references in ``star_ext.reference`` give.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch

from . import reference
from ._loader import HAS_C


def keypoint_pool(feat: torch.Tensor, kpts: torch.Tensor, sigma: float, eps: float = 1e-6) -> torch.Tensor:
    """Skeleton-guided spatial pooling (docs/ops.md).

    Args:
        feat: feature maps [N, C, H, W].
        kpts: keypoints [N, K, 3] as (x, y, conf), x and y normalised to [0, 1]
            of the frame, conf in [0, 1]. Same dtype and device as ``feat``.
        sigma: width of the Gaussian around each keypoint, in normalised units.
        eps: added to the Gaussian's sum over the cells.

    Returns:
        [N, K, C]: ``conf * sum_hw g * feat / (sum_hw g + eps)`` per keypoint,
        differentiable w.r.t. ``feat`` and ``kpts``.
    """
    if HAS_C:
        return torch.ops.star.keypoint_pool(feat, kpts, float(sigma), float(eps))
    return reference.keypoint_pool(feat, kpts, sigma, eps)


def guided_gem_pool(
    x: torch.Tensor, weight: torch.Tensor, p: torch.Tensor, eps: float = 1e-6, floor: float = 0.0
) -> torch.Tensor:
    """Per-channel weighted mixture of generalized means over time (docs/ops.md).

    Args:
        x: frame features [B, T, C] (clamped to ``eps`` from below).
        weight: mixture weights [B, P, C], e.g. a softmax over P.
        p: exponents [P], each with 0.05 <= |p| <= 1000
            (``reference.SUPPORTED_EXPONENTS``; ValueError otherwise on CPU,
            NaN outputs on CUDA, where checking would synchronise).
        eps: x is clamped to it from below; >= 0 (0: no clamp, x >= 0 expected).
        floor: added to each mean inside the root; >= 0. The released STAR
            uses ``eps=0, floor=1e-12``.

    Returns:
        [B, C]: ``sum_i weight[:, i] * (mean_t x ** p[i] + floor) ** (1 / p[i])``,
        differentiable w.r.t. ``x``, ``weight`` and ``p`` (frames at x = 0
        get zero gradient: see ``reference.guided_gem_pool``).
    """
    if HAS_C:
        return torch.ops.star.guided_gem_pool(x, weight, p, float(eps), float(floor))
    return reference.guided_gem_pool(x, weight, p, eps, floor)


def keypoint_graph_attention(
    h: torch.Tensor,
    a_src: torch.Tensor,
    a_dst: torch.Tensor,
    rowptr: torch.Tensor,
    col: torch.Tensor,
    negative_slope: float = 0.2,
    edge_keep: torch.Tensor | None = None,
    keep_scale: float = 1.0,
) -> torch.Tensor:
    """GAT message passing over a CSR graph template shared by the batch (docs/ops.md).

    Args:
        h: projected node features [B, V, heads, D].
        a_src, a_dst: attention logits of each node as source and destination [B, V, heads].
        rowptr, col: the template as CSR over destinations (int64 or int32):
            the sources of the edges into node i are ``col[rowptr[i]:rowptr[i+1]]``.
        negative_slope: of the LeakyReLU applied to ``a_dst[i] + a_src[j]``.
        edge_keep: optional attention-dropout mask [B, E, heads], bool (True keeps the edge).
        keep_scale: factor of the kept attention weights, usually 1 / (1 - p).

    Returns:
        [B, V, heads, D], differentiable w.r.t. ``h``, ``a_src`` and ``a_dst``.
    """
    if HAS_C:
        return torch.ops.star.keypoint_graph_attention(
            h, a_src, a_dst, rowptr, col, float(negative_slope), edge_keep, float(keep_scale)
        )
    return reference.keypoint_graph_attention(h, a_src, a_dst, rowptr, col, negative_slope, edge_keep, keep_scale)


def validate_csr(rowptr: torch.Tensor, col: torch.Tensor, num_nodes: int) -> None:
    """Raise ValueError unless (rowptr, col) is a well-formed CSR over ``num_nodes`` nodes.

    The CPU kernels check this on every call; on CUDA that would need a host
    synchronisation, so validate a template once here before using it there.
    """
    if rowptr.dim() != 1 or rowptr.numel() != num_nodes + 1:
        raise ValueError(f"rowptr must be 1-D with {num_nodes + 1} entries, got shape {tuple(rowptr.shape)}")
    if col.dim() != 1:
        raise ValueError(f"col must be 1-D, got shape {tuple(col.shape)}")
    r = rowptr.detach().to("cpu", torch.int64)
    c = col.detach().to("cpu", torch.int64)
    if int(r[0]) != 0:
        raise ValueError(f"rowptr[0] must be 0, got {int(r[0])}")
    steps = r[1:] - r[:-1]
    if bool((steps < 0).any()):
        i = int(torch.nonzero(steps < 0)[0])
        raise ValueError(
            f"rowptr must be non-decreasing, but rowptr[{i + 1}] = {int(r[i + 1])} < rowptr[{i}] = {int(r[i])}"
        )
    if int(r[-1]) != c.numel():
        raise ValueError(f"rowptr[-1] must equal the number of edges col.numel() = {c.numel()}, got {int(r[-1])}")
    bad = (c < 0) | (c >= num_nodes)
    if bool(bad.any()):
        e = int(torch.nonzero(bad)[0])
        raise ValueError(f"col[{e}] = {int(c[e])} is not a node index in [0, {num_nodes})")


# The fakes below give exactly what the kernels return: every output and gradient is a
# fresh contiguous tensor (at::empty of the sizes), whatever the layout of the inputs.
# torch.empty_like would keep a permuted input's strides (channels_last feat, a
# transposed h), and inductor asserts the strides a fake promises.


def _contiguous_like(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(like.shape)  # new_empty: contiguous, like's dtype and device


def _empty_unless(needed: bool, like: torch.Tensor) -> torch.Tensor:
    """The gradient buffer of input ``like`` if autograd asked for it, else an empty tensor (gradients.h)."""
    return _contiguous_like(like) if needed else like.new_empty((0,))


def _check_devices(op: str, **tensors: torch.Tensor | None) -> None:
    """The check of csrc/validation.cpp that every tensor argument is on the first one's device.
    A fake kernel needs it too: the dispatcher sends a call with any meta tensor here, and
    without it a CPU tensor beside a meta one would get an uninitialised CPU result."""
    (first_name, first), *others = [(n, t) for n, t in tensors.items() if t is not None]
    for name, t in others:
        torch._check(
            t.device == first.device,
            # defaults bind this iteration's values; mypy cannot infer such a lambda from the context
            cast(
                Callable[[], str],
                lambda name=name, t=t: (
                    f"{op}: {name} is on {t.device} but {first_name} is on {first.device}; "
                    "all tensors must be on the same device"
                ),
            ),
        )


def _register() -> None:
    """Fake kernels of the compiled ops (only when _C is loaded)."""

    @torch.library.register_fake("star::keypoint_pool")
    def _(feat, kpts, sigma, eps=1e-6):
        _check_devices("keypoint_pool", feat=feat, kpts=kpts)
        torch._check(feat.dim() == 4, lambda: "keypoint_pool: feat must be a 4-D tensor [N, C, H, W]")
        torch._check(kpts.dim() == 3, lambda: "keypoint_pool: kpts must be a 3-D tensor [N, K, 3]")
        return feat.new_empty((feat.shape[0], kpts.shape[1], feat.shape[1]))

    @torch.library.register_fake("star::keypoint_pool_backward")
    def _(grad_out, feat, kpts, sigma, eps, output_mask):
        _check_devices("keypoint_pool_backward", feat=feat, kpts=kpts, grad_out=grad_out)
        return _empty_unless(output_mask[0], feat), _empty_unless(output_mask[1], kpts)

    @torch.library.register_fake("star::guided_gem_pool")
    def _(x, weight, p, eps=1e-6, floor=0.0):
        _check_devices("guided_gem_pool", x=x, weight=weight, p=p)
        torch._check(x.dim() == 3, lambda: "guided_gem_pool: x must be a 3-D tensor [B, T, C]")
        return x.new_empty((x.shape[0], x.shape[2]))

    @torch.library.register_fake("star::guided_gem_pool_backward")
    def _(grad_out, x, weight, p, eps, floor, output_mask):
        _check_devices("guided_gem_pool_backward", x=x, weight=weight, p=p, grad_out=grad_out)
        return (
            _empty_unless(output_mask[0], x),
            _empty_unless(output_mask[1], weight),
            _empty_unless(output_mask[2], p),
        )

    @torch.library.register_fake("star::keypoint_graph_attention")
    def _(h, a_src, a_dst, rowptr, col, negative_slope=0.2, edge_keep=None, keep_scale=1.0):
        _check_devices(
            "keypoint_graph_attention", h=h, a_src=a_src, a_dst=a_dst, rowptr=rowptr, col=col, edge_keep=edge_keep
        )
        torch._check(h.dim() == 4, lambda: "keypoint_graph_attention: h must be a 4-D tensor [B, V, heads, D]")
        return _contiguous_like(h)

    @torch.library.register_fake("star::keypoint_graph_attention_backward")
    def _(grad_out, h, a_src, a_dst, rowptr, col, negative_slope, edge_keep, keep_scale, output_mask):
        _check_devices(
            "keypoint_graph_attention_backward",
            h=h,
            a_src=a_src,
            a_dst=a_dst,
            rowptr=rowptr,
            col=col,
            edge_keep=edge_keep,
            grad_out=grad_out,
        )
        return (
            _empty_unless(output_mask[0], h),
            _empty_unless(output_mask[1], a_src),
            _empty_unless(output_mask[2], a_dst),
        )


if HAS_C:
    _register()
