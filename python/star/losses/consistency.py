"""Skeleton consistency loss between the edge-based and joint-based skeleton codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .precision import at_least_float32


def skeleton_consistency_loss(h_t: torch.Tensor, g: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """L_sc = KL(softmax(h_T / tau) || softmax(g / tau)) * tau^2, averaged over the batch.

    h_t [B, C] (BiLSTM code), g [B, C] (keypoint-graph code). Gradients reach
    both codes: the loss aligns them with each other.
    """
    if h_t.shape != g.shape or h_t.dim() != 2:
        raise ValueError(
            f"skeleton_consistency_loss: h_t and g must both be [B, C], got {tuple(h_t.shape)} and {tuple(g.shape)}"
        )
    if tau <= 0:
        raise ValueError(f"skeleton_consistency_loss: tau must be > 0, got {tau}")
    log_p = F.log_softmax(at_least_float32(h_t) / tau, dim=1)
    log_q = F.log_softmax(at_least_float32(g) / tau, dim=1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * tau * tau
