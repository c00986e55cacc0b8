"""What ``star explain`` measures inside a STAR network, one batch of tracklets at a time.

``probe_batch`` runs the model's own eval forward (fused ops) with forward hooks on the
graph-attention layers, the frame correction and the guided pooling, and derives from
what they saw:

- the graph-attention weights, recomputed in pure PyTorch from each layer's parameters
  and its captured input (``star_ext.reference.graph_attention_coefficients``); the
  messages they give are compared with the layer's real output (``reproduction_error``);
- the keypoint saliency: the squared Jacobian of the embedding w.r.t. the keypoints,
  summed over embedding channels (see :func:`keypoint_jacobian_squares`);
- the guided pooling's per-channel exponent weights, and F and F' of the frame correction.

Switched-off modules give None.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from star_ext import reference

from ..models import STAR, KeypointGraphAttention

# Copies of one tracklet's layer4 maps pushed through the skeleton head at once by the
# saliency: bounds the memory of that batch (2**24 floats = 64 MiB of maps).
SALIENCY_BATCH_ELEMENTS = 1 << 24


@dataclass
class BatchProbe:
    """Measurements of one batch of B tracklets of T frames (None: module switched off).

    ``received``: per graph-attention layer, the attention each node receives, averaged
    over heads, [B, T, 17]; ``reproduction_error``: the largest |output| difference between
    the recomputed attention and each layer's real output (and the recomputed embedding).
    ``saliency_squares``: [len(saliency_rows), T, 17, 3] (see ``keypoint_jacobian_squares``). ``pool_weights``:
    [B, P, C]. ``frames`` / ``corrected``: F and F' [B, T, C]; ``confidence``: mean keypoint
    confidence of every frame [B, T].
    """

    received: list[torch.Tensor] | None
    reproduction_error: float
    saliency_squares: torch.Tensor | None
    pool_weights: torch.Tensor | None
    frames: torch.Tensor | None
    corrected: torch.Tensor | None
    confidence: torch.Tensor


@contextmanager
def _captured(modules: dict[str, nn.Module | None]) -> Iterator[dict[str, tuple[tuple[Any, ...], Any]]]:
    """Records (positional inputs, output) of each named module's forward while the block runs."""
    seen: dict[str, tuple[tuple[Any, ...], Any]] = {}
    handles = []
    for name, module in modules.items():
        if module is not None:

            def hook(_m: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
                seen[name] = (args, out)

            handles.append(module.register_forward_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def attention_received(alpha: torch.Tensor, col: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """alpha [B, E, heads] -> the weight every node receives as a source, sum over the edges
    leaving it, averaged over heads: [B, V]. Averaged over nodes it is 1 (each destination's
    weights sum to 1)."""
    b, _, heads = alpha.shape
    out = alpha.new_zeros(b, num_nodes, heads).index_add(1, col.to(alpha.device, torch.long), alpha)
    return out.mean(dim=2)


def layer_attention(
    layer: KeypointGraphAttention, x: torch.Tensor, rowptr: torch.Tensor, col: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha [B, E, heads], the layer's output recomputed from alpha) for a KeypointGraphAttention
    ``layer`` on input ``x``, in pure PyTorch from the layer's parameters (eval: no dropout)."""
    h, a_src, a_dst = layer.project(x)
    alpha = reference.graph_attention_coefficients(a_src, a_dst, rowptr, col, layer.negative_slope)
    return alpha, layer.combine_heads(reference.graph_attention_messages(h, alpha, rowptr, col))


def keypoint_jacobian_squares(model: STAR, maps: torch.Tensor, keypoints: torch.Tensor, aspect: float) -> torch.Tensor:
    """S[t, j, k] = sum over embedding channels c of (d e_c / d keypoints[t, j, k])^2 for ONE tracklet.

    ``maps``: its clean layer4 maps [T, C, h, w] (they do not depend on the keypoints),
    ``keypoints`` [T, 17, 3] as (x, y, conf), e = ``model.embed_from_maps`` (the eval
    embedding). The Jacobian is exact: in eval mode the tracklets of a batch do not
    interact (BatchNorm uses running statistics), so n copies of the tracklet with copy i
    differentiating channel c_i give n Jacobian rows in one backward pass.
    """
    t = keypoints.shape[0]
    with torch.no_grad():
        dim = model.embed_from_maps(maps, keypoints[None], aspect).shape[1]
    per_pass = max(1, min(dim, SALIENCY_BATCH_ELEMENTS // max(1, maps.numel())))
    squares = torch.zeros(keypoints.shape, dtype=torch.float64, device=keypoints.device)
    for start in range(0, dim, per_pass):
        n = min(per_pass, dim - start)
        kp = keypoints[None].expand(n, *keypoints.shape).clone().requires_grad_(True)
        with torch.enable_grad():
            e = model.embed_from_maps(maps.repeat(n, 1, 1, 1), kp, aspect)
            rows = e[torch.arange(n, device=e.device), torch.arange(start, start + n, device=e.device)]
            (grad,) = torch.autograd.grad(rows.sum(), kp)
        squares += grad.double().pow(2).sum(dim=0)
    assert squares.shape == (t, *keypoints.shape[1:])
    return squares


def probe_batch(
    model: STAR,
    frames: torch.Tensor,
    keypoints: torch.Tensor,
    modality: torch.Tensor,
    *,
    saliency_rows: Sequence[int] = (),
) -> BatchProbe:
    """Run ``model`` (eval mode) on one batch and measure it; see the module docstring. The
    saliency, C backward rows per tracklet, is computed for the tracklets ``saliency_rows``."""
    b, t, _, height, width = frames.shape
    aspect = width / height
    guidance = model.sequence_guidance
    graph = guidance.graph if guidance is not None else None
    watched = {
        "maps": model.backbone.layer4,
        "gat1": graph.gat1 if graph is not None else None,
        "gat2": graph.gat2 if graph is not None else None,
        "correction": model.frame_correction,
        "pooling": guidance.pooling if guidance is not None else None,
    }
    with torch.no_grad(), _captured(watched) as seen:
        embedding = model(frames, keypoints, modality)
    maps = seen["maps"][1]
    errors = []
    with torch.no_grad():
        errors.append(float((model.embed_from_maps(maps, keypoints, aspect) - embedding).abs().max()))
    received = None
    if graph is not None:
        received = []
        for name, layer in (("gat1", graph.gat1), ("gat2", graph.gat2)):
            (x, rowptr, col), out = seen[name]
            with torch.no_grad():
                alpha, recomputed = layer_attention(layer, x, rowptr, col)
            errors.append(float((recomputed - out).abs().max()))
            received.append(attention_received(alpha, col, x.shape[1]).view(b, t, -1).double().cpu())
    squares = None
    if saliency_rows and model.skeleton_encoder is not None:  # else nothing reads the keypoints
        per_tracklet = maps.view(b, t, *maps.shape[1:])
        squares = torch.stack(
            [keypoint_jacobian_squares(model, per_tracklet[i], keypoints[i], aspect) for i in saliency_rows]
        ).cpu()
    pool_weights = None
    if guidance is not None:
        (_, guide), _ = seen["pooling"]
        with torch.no_grad():
            pool_weights = guidance.pooling.mixture_weights(guide).double().cpu()
    frames_f = corrected = None
    if model.frame_correction is not None:
        (frames_f, _), corrected = seen["correction"]
        frames_f, corrected = frames_f.double().cpu(), corrected.double().cpu()
    return BatchProbe(
        received=received,
        reproduction_error=max(errors),
        saliency_squares=squares,
        pool_weights=pool_weights,
        frames=frames_f,
        corrected=corrected,
        confidence=keypoints[..., 2].double().mean(dim=-1).cpu(),
    )
