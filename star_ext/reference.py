"""Pure-PyTorch references of the fused ops.

They are the test oracle of the C++/CUDA kernels and the fallback when the
compiled extension is missing. Each has the signature of its op in
``star_ext.ops`` and is written for clarity, not speed: intermediate tensors
the kernels never build (the Gaussian maps of ``keypoint_pool``, the per-edge
messages of ``keypoint_graph_attention``) are materialized here.

They also define what NaN and inf in the inputs give (the kernels propagate
them exactly as these functions do): a NaN in a sum makes that sum NaN, +-inf
stays infinite through the weighted sums, and an ``inf - inf`` or ``0 * inf``
on the way gives NaN.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .graph import csr_destinations

# The exponents guided_gem_pool supports: |p| in this closed range (csrc/validation.h
# says why). The CPU kernel rejects others with ValueError, and so does guided_gem_pool
# below for p on the CPU in eager mode; the CUDA kernel, and the reference where checking
# would read the device (CUDA, torch.compile), give NaN instead.
SUPPORTED_EXPONENTS = (5e-2, 1e3)


def keypoint_pool(feat: torch.Tensor, kpts: torch.Tensor, sigma: float, eps: float = 1e-6) -> torch.Tensor:
    """Gaussian-weighted part features around each keypoint, scaled by its confidence.

    feat [N, C, H, W], kpts [N, K, 3] = (x, y, conf) with x, y in [0, 1] -> out [N, K, C].
    """
    n, c, h, w = feat.shape
    u = (torch.arange(w, device=feat.device, dtype=feat.dtype) + 0.5) / w
    v = (torch.arange(h, device=feat.device, dtype=feat.dtype) + 0.5) / h
    x, y, conf = kpts.to(feat.dtype).unbind(-1)
    dist2 = (u.view(1, 1, 1, w) - x[..., None, None]) ** 2 + (v.view(1, 1, h, 1) - y[..., None, None]) ** 2
    g = torch.exp(-dist2 / (2.0 * sigma * sigma))  # [N, K, H, W]
    # conf scales the normalised map before the sum, as in the kernels, so an
    # infinite conf gives NaN from 0 * inf where a map cell underflows to 0.
    scale = conf / (g.sum(dim=(2, 3)) + eps)
    return torch.einsum("nkhw,nchw->nkc", g * scale[..., None, None], feat)


def guided_gem_pool(x: torch.Tensor, weight: torch.Tensor, p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-channel mixture of generalized means over time.

    x [B, T, C], weight [B, P, C], p [P] -> out [B, C] with
    out = sum_i weight[:, i] * (mean_t clamp(x, eps) ** p[i]) ** (1 / p[i]).
    Computed in log space, (logsumexp_t(p log x) - log T) / p, so large p and x
    do not overflow. Each exponent needs ``SUPPORTED_EXPONENTS[0] <= |p| <=
    SUPPORTED_EXPONENTS[1]``: ValueError otherwise for p on the CPU; on another
    device or under torch.compile / tracing, where finding it would read the
    device, the output is NaN instead (as from the CUDA kernel). NaN in a column of x gives
    NaN, +inf gives +inf for p > 0 (a finite mean for p < 0 unless every frame
    is +inf); values below eps, -inf included, count as eps.
    """
    p = _supported_exponents(p)
    t = x.shape[1]
    log_x = torch.log(torch.clamp(x, min=eps))  # [B, T, C]
    p = p.to(x.dtype)
    scaled = p.view(1, -1, 1, 1) * log_x.unsqueeze(1)  # [B, P, T, C]
    log_mean = torch.logsumexp(scaled, dim=2) - torch.log(x.new_tensor(float(t)))
    z = torch.exp(log_mean / p.view(1, -1, 1))  # [B, P, C]
    return (weight * z).sum(dim=1)


def keypoint_graph_attention(
    h: torch.Tensor,
    a_src: torch.Tensor,
    a_dst: torch.Tensor,
    rowptr: torch.Tensor,
    col: torch.Tensor,
    negative_slope: float = 0.2,
    edge_keep: Optional[torch.Tensor] = None,
    keep_scale: float = 1.0,
) -> torch.Tensor:
    """GAT message passing over one CSR graph template shared by the batch.

    h [B, V, Hd, D], a_src / a_dst [B, V, Hd], rowptr [V+1] and col [E] a CSR
    over destination nodes -> out [B, V, Hd, D]. Edge e goes from node col[e]
    to the destination row that holds it. Destinations without edges get 0.
    """
    if edge_keep is not None and edge_keep.dtype != torch.bool:
        raise TypeError(
            f"keypoint_graph_attention: edge_keep must be a bool mask (True keeps the edge), got {edge_keep.dtype}; "
            "convert it with edge_keep.bool() or build it with a comparison"
        )
    b, v, heads, d = h.shape
    rowptr = rowptr.to(device=h.device, dtype=torch.long)
    col = col.to(device=h.device, dtype=torch.long)
    dst = csr_destinations(rowptr)

    e = F.leaky_relu(a_dst[:, dst] + a_src[:, col], negative_slope)  # [B, E, Hd]
    # Softmax per destination: subtract the per-destination max for stability.
    e_max = torch.full((b, v, heads), float("-inf"), device=h.device, dtype=e.dtype)
    e_max = e_max.scatter_reduce(1, dst.view(1, -1, 1).expand_as(e), e, reduce="amax", include_self=True)
    ex = torch.exp(e - e_max[:, dst])
    denom = torch.zeros((b, v, heads), device=h.device, dtype=e.dtype).index_add(1, dst, ex)
    alpha = ex / denom[:, dst]
    if edge_keep is not None:
        alpha = alpha * edge_keep.to(alpha.dtype) * keep_scale

    messages = alpha.unsqueeze(-1) * h[:, col]  # [B, E, Hd, D]
    return torch.zeros_like(h).index_add(1, dst, messages)


def _supported_exponents(p: torch.Tensor) -> torch.Tensor:
    """p, or NaN for each exponent outside SUPPORTED_EXPONENTS; raises instead where that is free.

    Raising needs the answer on the host: free for p on the CPU in eager mode (ValueError
    naming the exponent, as the CPU kernel's validation), but a device synchronisation on a
    GPU and a graph break under torch.compile. There the exponent becomes NaN (so does every
    output it reaches), which is what the CUDA kernel gives.
    """
    low, high = SUPPORTED_EXPONENTS
    # Compared in float32, as the kernels: the answer does not depend on p's dtype (a
    # float64 p is accepted exactly when its float32 copy is).
    magnitude = p.detach().abs().float()
    supported = (magnitude >= low) & (magnitude <= high)  # False for NaN
    tracing = torch.compiler.is_compiling() or torch.jit.is_tracing()
    if p.device.type != "cpu" or tracing:
        return torch.where(supported, p, torch.full_like(p, float("nan")))
    if not bool(supported.all()):
        i = int(torch.nonzero(~supported)[0])
        raise ValueError(
            f"guided_gem_pool: p[{i}] = {float(p[i])} is outside the supported range: "
            f"each exponent needs {low:g} <= |p| <= {high:g}"
        )
    return p
