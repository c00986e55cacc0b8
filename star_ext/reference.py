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

import math

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


def guided_gem_pool(
    x: torch.Tensor, weight: torch.Tensor, p: torch.Tensor, eps: float = 1e-6, floor: float = 0.0
) -> torch.Tensor:
    """Per-channel mixture of generalized means over time.

    x [B, T, C], weight [B, P, C], p [P] -> out [B, C] with
    out = sum_i weight[:, i] * (mean_t clamp(x, eps) ** p[i] + floor) ** (1 / p[i]).
    Computed in log space: log(mean_t x^p + floor) is the logsumexp of the T
    terms p log x_t and of log(T floor), minus log T, so large p and x do not
    overflow. Each exponent needs ``SUPPORTED_EXPONENTS[0] <= |p| <=
    SUPPORTED_EXPONENTS[1]``: ValueError otherwise for p on the CPU; on another
    device or under torch.compile / tracing, where finding it would read the
    device, the output is NaN instead (as from the CUDA kernel). eps and floor
    must be finite and >= 0 (ValueError otherwise). NaN in a column of x gives
    NaN, +inf gives +inf for p > 0 (a finite mean for p < 0 unless every frame
    is +inf); values below eps, -inf included, count as eps.

    With eps = 0 a frame can be exactly 0: its x^p is 0 for p > 0; for p < 0
    it is inf and makes z = 0, as a column of zeros does for p > 0 without
    floor. Frames at 0 get zero gradient w.r.t. x for every p (the derivative
    of x^p there is 0 for p > 1, but 1 for p = 1 and infinite for p < 1), and a
    z that zero frames make 0 passes no gradient to x or p.
    """
    p = _supported_exponents(p)
    _check_eps_and_floor(eps, floor)
    t = x.shape[1]
    x = torch.clamp(x, min=eps)
    p = p.to(x.dtype)
    if eps > 0:
        scaled, vanished = p.view(1, -1, 1, 1) * torch.log(x).unsqueeze(1), None  # [B, P, T, C]
    else:
        scaled, vanished = _scaled_logs_with_zeros(x, p, floor)
    if floor > 0:
        # T * floor = exp(log T + log floor): one more term of the logsumexp, the same for every p.
        floor_term = scaled.new_full((*scaled.shape[:2], 1, scaled.shape[3]), math.log(t) + math.log(floor))
        scaled = torch.cat([scaled, floor_term], dim=2)
    log_mean = torch.logsumexp(scaled, dim=2) - torch.log(x.new_tensor(float(t)))
    z = torch.exp(log_mean / p.view(1, -1, 1))  # [B, P, C]
    if vanished is not None:
        z = torch.where(vanished, 0.0, z)
    return (weight * z).sum(dim=1)


def _scaled_logs_with_zeros(x: torch.Tensor, p: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """p log x [B, P, T, C] of x >= 0 with frames at 0 (eps = 0), and where z vanishes [B, P, C].

    p log 0 is -inf for p > 0. z is 0 for p < 0 with a frame at 0, and for
    p > 0 when every frame is 0 and floor = 0 (not in NaN columns, which stay
    NaN); those means get finite stand-ins here, so their (masked) gradients
    are not NaN. log x is taken of 1 at zeros: they get no gradient.
    """
    zero = (x == 0).unsqueeze(1)  # [B, 1, T, C]
    log_x = torch.log(torch.where(zero, 1.0, x.unsqueeze(1)))
    p = p.view(1, -1, 1, 1)
    # Every frame at 0 gives z = 0 only without a floor (a Python branch: traceable for the ONNX export).
    all_zero = zero.all(dim=2, keepdim=True) if floor == 0 else torch.zeros_like(zero[:, :, :1])
    positive = p > 0
    # [B, P, 1, C]; logic, not a where on bools (onnxruntime's Where has no bool kernel)
    vanished = (positive & all_zero) | (~positive & zero.any(dim=2, keepdim=True))
    vanished = vanished & ~torch.isnan(x).any(dim=1, keepdim=True).unsqueeze(1)
    scaled = torch.where(zero & positive & ~vanished, -math.inf, p * log_x)
    return scaled, vanished.squeeze(2)


def _check_eps_and_floor(eps: float, floor: float) -> None:
    for name, value in (("eps", eps), ("floor", floor)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"guided_gem_pool: {name} must be a non-negative finite number, got {value}")


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
    alpha = graph_attention_coefficients(a_src, a_dst, rowptr, col, negative_slope)
    if edge_keep is not None:
        alpha = alpha * edge_keep.to(alpha.dtype) * keep_scale
    return graph_attention_messages(h, alpha, rowptr, col)


def graph_attention_messages(
    h: torch.Tensor, alpha: torch.Tensor, rowptr: torch.Tensor, col: torch.Tensor
) -> torch.Tensor:
    """out[:, i] = sum over the edges e into i of alpha[:, e] * h[:, col[e]]: h [B, V, Hd, D], alpha [B, E, Hd]."""
    rowptr = rowptr.to(device=h.device, dtype=torch.long)
    col = col.to(device=h.device, dtype=torch.long)
    messages = alpha.unsqueeze(-1) * h[:, col]  # [B, E, Hd, D]
    return torch.zeros_like(h).index_add(1, csr_destinations(rowptr), messages)


def graph_attention_coefficients(
    a_src: torch.Tensor, a_dst: torch.Tensor, rowptr: torch.Tensor, col: torch.Tensor, negative_slope: float = 0.2
) -> torch.Tensor:
    """The attention weights of ``keypoint_graph_attention`` before dropout: alpha [B, E, Hd].

    alpha[:, e] = softmax over the edges into dst(e) of LeakyReLU(a_dst[dst(e)] + a_src[col[e]]),
    so the weights of every destination with edges sum to 1.
    """
    b, v, heads = a_src.shape
    rowptr = rowptr.to(device=a_src.device, dtype=torch.long)
    col = col.to(device=a_src.device, dtype=torch.long)
    dst = csr_destinations(rowptr)
    e = F.leaky_relu(a_dst[:, dst] + a_src[:, col], negative_slope)  # [B, E, Hd]
    # Softmax per destination: subtract the per-destination max for stability.
    e_max = torch.full((b, v, heads), float("-inf"), device=a_src.device, dtype=e.dtype)
    e_max = e_max.scatter_reduce(1, dst.view(1, -1, 1).expand_as(e), e, reduce="amax", include_self=True)
    ex = torch.exp(e - e_max[:, dst])
    denom = torch.zeros((b, v, heads), device=a_src.device, dtype=e.dtype).index_add(1, dst, ex)
    return ex / denom[:, dst]


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
