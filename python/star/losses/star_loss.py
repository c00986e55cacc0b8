"""The STAR training objective over a model's :class:`~star.models.StarOutput`."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..models.star import StarOutput
from .config import LossConfig
from .consistency import skeleton_consistency_loss
from .defence import defence_loss
from .precision import at_least_float32
from .triplet import batch_hard_triplet_loss

TermFn = Callable[[StarOutput, torch.Tensor, LossConfig], dict[str, torch.Tensor]]


def _ce(logits: torch.Tensor, targets: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    return F.cross_entropy(at_least_float32(logits), targets, label_smoothing=cfg.label_smoothing)


def _frame_ce(logits: torch.Tensor, pids: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Every frame [B, T, K] carries its tracklet's identity."""
    return _ce(logits.flatten(0, 1), pids.repeat_interleave(logits.shape[1]), cfg)


def _frame_id(out: StarOutput, pids: torch.Tensor, cfg: LossConfig) -> dict[str, torch.Tensor]:
    terms = {"frame_id": _frame_ce(out.frame_logits, pids, cfg)}
    # The disturbed frames share the classifier and the weight; without style disturbance there are none.
    if out.frame_logits_dis is not None:
        terms["frame_id_dis"] = _frame_ce(out.frame_logits_dis, pids, cfg)
    return terms


# name: (weight field of LossConfig, StarOutput fields it needs, function giving the named terms).
# compute_losses checks the needed fields are not None before calling, hence the casts.
TERMS: dict[str, tuple[str, tuple[str, ...], TermFn]] = {
    "id": ("id_weight", ("logits",), lambda o, p, c: {"id": _ce(o.logits, p, c)}),
    "triplet": (
        "triplet_weight",
        ("z",),
        lambda o, p, c: {"triplet": batch_hard_triplet_loss(o.z, p, c.triplet_margin)},
    ),
    "frame_id": ("frame_id_weight", ("frame_logits",), _frame_id),
    "defence": (
        "defence_weight",
        ("f", "f_dis"),
        lambda o, p, c: {"defence": defence_loss(o.f, cast(torch.Tensor, o.f_dis))},
    ),
    "pose": ("pose_weight", ("pose_logits",), lambda o, p, c: {"pose": _ce(cast(torch.Tensor, o.pose_logits), p, c)}),
    "consistency": (
        "consistency_weight",
        ("h_t", "g"),
        lambda o, p, c: {
            "consistency": skeleton_consistency_loss(
                cast(torch.Tensor, o.h_t), cast(torch.Tensor, o.g), c.consistency_tau
            )
        },
    ),
}


def compute_losses(
    outputs: StarOutput, pids: torch.Tensor, cfg: LossConfig | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the active terms and their unweighted values (plus ``"total"``).

    The values are detached float32 0-d tensors on the loss's device (``float(v)`` for a number).

    A term with weight > 0 whose inputs the model did not produce (its part is
    switched off) raises ``ValueError``: set its weight to 0 or switch the part on.
    """
    cfg = cfg if cfg is not None else LossConfig()
    if not isinstance(outputs, StarOutput):
        raise TypeError(
            f"compute_losses needs the StarOutput of a model in training mode, got {type(outputs).__name__} "
            "(in eval mode the model returns embeddings)"
        )
    if pids.shape != outputs.logits.shape[:1]:
        raise ValueError(f"pids must have shape [B] = [{outputs.logits.shape[0]}], got {tuple(pids.shape)}")
    weighted: dict[str, tuple[float, torch.Tensor]] = {}
    for name, (weight_field, needs, fn) in TERMS.items():
        weight = getattr(cfg, weight_field)
        if weight == 0:
            continue
        missing = [field for field in needs if getattr(outputs, field) is None]
        if missing:
            raise ValueError(
                f"loss term {name!r} has weight {weight} but the model output has no {', '.join(missing)}; "
                f"set loss.{weight_field}=0 or switch on the model part that produces it"
            )
        weighted.update((term, (weight, value)) for term, value in fn(outputs, pids, cfg).items())
    if not weighted:
        raise ValueError("every loss term is switched off (all weights are 0)")
    # a Tensor, not sum()'s start value 0: weighted is not empty
    total = cast(torch.Tensor, sum(weight * value for weight, value in weighted.values()))
    # Detached device tensors, not floats: a host copy here would synchronise every training
    # step with the device; the trainer's meters copy them once per logging period.
    logged = {term: value.detach().float() for term, (_, value) in weighted.items()}
    logged["total"] = total.detach().float()
    return total, logged


class StarLoss(nn.Module):
    """``compute_losses`` with its config held: ``StarLoss(cfg)(outputs, pids) -> (total, terms)``."""

    def __init__(self, cfg: LossConfig | None = None):
        super().__init__()
        self.cfg = cfg if cfg is not None else LossConfig()

    def forward(self, outputs: StarOutput, pids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return compute_losses(outputs, pids, self.cfg)
