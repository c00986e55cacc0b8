"""STAR losses: identity CE, batch-hard triplet, frame-level CE, defence, pose-ID CE, skeleton consistency."""

from .config import LossConfig
from .consistency import skeleton_consistency_loss
from .defence import defence_loss
from .star_loss import TERMS, StarLoss, compute_losses
from .triplet import batch_hard_triplet_loss, pairwise_distances

__all__ = [
    "LossConfig",
    "StarLoss",
    "compute_losses",
    "TERMS",
    "batch_hard_triplet_loss",
    "pairwise_distances",
    "skeleton_consistency_loss",
    "defence_loss",
]
