"""Temporal pooling of frame features: skeleton-guided multi-order GeM, and the baseline's pooling."""

from __future__ import annotations

import torch
from torch import nn

from .config import PoolingConfig
from .ops import select_ops

# Learnable exponents are kept at or above this, so (mean x^p)^(1/p) stays defined.
MIN_EXPONENT = 0.1


def _exponent_buffer(module: nn.Module, values: tuple[float, ...], learnable: bool) -> None:
    """``module.exponents``: a Parameter when learnable, else a buffer.

    The fixed exponents are kept in float64, exactly the config's numbers, and cast to
    the computation's dtype in the forward: built in float32 and cast to float64 later,
    0.7 would be 0.69999998807907 in a float64 model. They come from the config, so the
    buffer stays out of checkpoints.
    """
    if learnable:
        module.exponents = nn.Parameter(torch.tensor(values, dtype=torch.get_default_dtype()))
    else:
        module.register_buffer("exponents", torch.tensor(values, dtype=torch.float64), persistent=False)


class GuidedPooling(nn.Module):
    """z = sum_i softmax_i(W_i s) * GeM_{p_i}(F'), per channel.

    The scores of all P exponents come from one Linear(guide_dim -> P*dim)
    (the P matrices W_i stacked); the weights are a softmax over the P
    exponents for every channel. GeM_p(x) = (mean_t max(x, eps)^p + floor)^(1/p)
    (``PoolingConfig``), on the fused ``guided_gem_pool`` op.
    """

    exponents: torch.Tensor  # a Parameter or a buffer, set by _exponent_buffer

    def __init__(self, guide_dim: int, dim: int, cfg: PoolingConfig, use_fused_ops: bool = True):
        super().__init__()
        self.dim, self.eps, self.floor, self.learnable = dim, cfg.eps, cfg.floor, cfg.learnable
        self.ops = select_ops(use_fused_ops)
        _exponent_buffer(self, cfg.exponents, cfg.learnable)
        self.score = nn.Linear(guide_dim, len(cfg.exponents) * dim)

    def mixture_weights(self, guide: torch.Tensor) -> torch.Tensor:
        """[B, guide_dim] -> softmax over the exponents, [B, P, dim]."""
        return self.score(guide).view(guide.shape[0], -1, self.dim).softmax(dim=1)

    def forward(self, frames: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """frames [B, T, dim] (>= 0), guide s [B, guide_dim] -> z [B, dim]."""
        weight = self.mixture_weights(guide)
        # One dtype for the op: float32 under autocast (cheap here, and safer for p up to 7).
        dtype = torch.promote_types(frames.dtype, weight.dtype)
        p = self.exponents.clamp(min=MIN_EXPONENT) if self.learnable else self.exponents
        return self.ops.guided_gem_pool(frames.to(dtype), weight.to(dtype), p.to(dtype), self.eps, self.floor)


class UnguidedPooling(nn.Module):
    """The baseline's temporal pooling (no skeleton): GeM with one exponent, or the mean over frames.

    GeM_p(x) = (mean_t max(x, eps)^p + floor)^(1/p), on the fused op with a single
    exponent of weight 1 (the release: p = 3, eps = 0, floor = 1e-12).
    """

    def __init__(self, cfg: PoolingConfig, use_fused_ops: bool = True):
        super().__init__()
        self.gem = cfg.unguided == "gem"
        self.eps, self.floor = cfg.eps, cfg.floor
        self.ops = select_ops(use_fused_ops)
        _exponent_buffer(self, (cfg.unguided_exponent,), learnable=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, T, dim] (>= 0) -> [B, dim]."""
        if not self.gem:
            return frames.mean(dim=1)
        b, _, dim = frames.shape
        weight = frames.new_ones(b, 1, dim)
        return self.ops.guided_gem_pool(frames, weight, self.exponents.to(frames.dtype), self.eps, self.floor)
