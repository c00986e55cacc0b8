"""Skeleton-guided multi-order GeM pooling of frame features over time (SPEC §3.3.5)."""

from __future__ import annotations

import torch
from torch import nn

from .config import PoolingConfig
from .ops import select_ops

# Learnable exponents are kept at or above this, so (mean x^p)^(1/p) stays defined.
MIN_EXPONENT = 0.1


class GuidedPooling(nn.Module):
    """z = sum_i softmax_i(W_i s) * GeM_{p_i}(F'), per channel.

    The scores of all P exponents come from one Linear(guide_dim -> P*dim)
    (the P matrices W_i stacked); the weights are a softmax over the P
    exponents for every channel. ``exponents`` is a Parameter when learnable,
    a buffer otherwise.
    """

    def __init__(self, guide_dim: int, dim: int, cfg: PoolingConfig, use_fused_ops: bool = True):
        super().__init__()
        self.dim, self.eps = dim, cfg.eps
        self.ops = select_ops(use_fused_ops)
        p = torch.tensor(cfg.exponents, dtype=torch.float32)
        if cfg.learnable:
            self.exponents = nn.Parameter(p)
        else:
            self.register_buffer("exponents", p)
        self.score = nn.Linear(guide_dim, p.numel() * dim)

    def mixture_weights(self, guide: torch.Tensor) -> torch.Tensor:
        """[B, guide_dim] -> softmax over the exponents, [B, P, dim]."""
        return self.score(guide).view(guide.shape[0], -1, self.dim).softmax(dim=1)

    def forward(self, frames: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """frames [B, T, dim] (>= 0), guide s [B, guide_dim] -> z [B, dim]."""
        weight = self.mixture_weights(guide)
        # One dtype for the op: float32 under autocast (cheap here, and safer for p up to 7).
        dtype = torch.promote_types(frames.dtype, weight.dtype)
        p = self.exponents.clamp(min=MIN_EXPONENT).to(dtype)
        return self.ops.guided_gem_pool(frames.to(dtype), weight.to(dtype), p, self.eps)
