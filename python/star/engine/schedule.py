"""Optimiser and learning-rate schedule of the STAR recipe (docs/method.md, training recipe).

SGD (momentum, weight decay, Nesterov; or ``optim.name: adam`` / ``adamw``; torch's fused
implementation when every parameter is on CUDA) over two
parameter groups: the backbone tensors that were initialised from pretrained
weights run at ``optim.pretrained_lr_mult`` x lr, everything else at lr. The schedule is a linear
warm-up from ``warmup_start_factor`` to 1 over ``warmup_epochs``, then x ``gamma`` at
every milestone epoch. It is stepped once per iteration: the warm-up ramps smoothly
per iteration (not in epoch-sized stairs), the milestone decays take effect at the
first iteration of the milestone epoch, exactly as an epoch-stepped MultiStepLR.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import nn

from ..config import OptimConfig


def param_groups(model: nn.Module, cfg: OptimConfig, pretrained: Collection[str] = ()) -> list[dict]:
    """SGD parameter groups of ``model``'s trainable parameters.

    ``pretrained``: names (as in ``model.named_parameters()``) initialised from
    pretrained weights; they form the ``"pretrained"`` group at
    ``cfg.pretrained_lr_mult`` x lr. Without any, all parameters are in one group at lr.
    """
    pretrained = set(pretrained)
    new: list[nn.Parameter] = []
    old: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (old if name in pretrained else new).append(p)
    groups = [{"name": "new", "params": new, "lr": cfg.lr}]
    if old:
        groups.append({"name": "pretrained", "params": old, "lr": cfg.lr * cfg.pretrained_lr_mult})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig, pretrained: Collection[str] = ()) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg, pretrained)
    # On CUDA the fused kernels: GradScaler hands them its scale and found-inf flag on the
    # device instead of reading the flag on the host every step. Elsewhere torch's default
    # implementation, as before (CPU results unchanged).
    params = [p for g in groups for p in g["params"]]
    fused: dict[str, Any] = (
        {"fused": True} if params and all(p.is_cuda and p.is_floating_point() for p in params) else {}
    )
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.name == "adamw":
        # Decoupled decay (w -= lr * wd * w). Adam's L2 term goes through the per-parameter
        # normalisation instead, so a tensor whose gradient is small next to wd * w is pulled
        # to zero at ~lr per step: it silenced STAR's frame correction in a 600-step CPU run.
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        **fused,
    )


def lr_factor(step: int, iters_per_epoch: int, cfg: OptimConfig) -> float:
    """Multiplier of the base lr at global iteration ``step`` (0-based)."""
    warmup_iters = cfg.warmup_epochs * iters_per_epoch
    factor = 1.0
    if step < warmup_iters:
        factor = cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * step / warmup_iters
    epoch = step // iters_per_epoch
    return factor * cfg.gamma ** bisect.bisect_right(list(cfg.milestones), epoch)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, iters_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration ``LambdaLR`` of :func:`lr_factor` (call ``step()`` after every optimiser step).

    Its ``state_dict`` holds the step count only; the schedule itself comes from ``cfg``.
    """
    if iters_per_epoch < 1:
        raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")

    def factor(step: int) -> float:  # a plain function: LambdaLR does not pickle it into state_dict
        return lr_factor(step, iters_per_epoch, cfg)

    fn: Callable[[int], float] = factor
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
