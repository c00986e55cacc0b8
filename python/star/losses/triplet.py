"""Batch-hard triplet loss."""

from __future__ import annotations

import torch

from .precision import at_least_float32


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of x [N, D], [N, N]."""
    sq = (x * x).sum(dim=1)
    d2 = sq.view(-1, 1) + sq.view(1, -1) - 2.0 * (x @ x.t())
    # The clamp keeps sqrt's gradient finite where rounding gives d2 <= 0.
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet_loss(features: torch.Tensor, pids: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """mean_a max(0, max_p d(a, p) - min_n d(a, n) + margin) over the batch (Hermans et al. 2017).

    Positives are the other samples of the anchor's identity, negatives all
    samples of other identities, whatever their modality (the batch mixes
    infrared and visible tracklets). Anchors without a positive or a negative
    are left out; a batch with none left gives 0 (still differentiable).
    """
    if features.dim() != 2 or pids.shape != features.shape[:1]:
        raise ValueError(
            "batch_hard_triplet_loss: features must be [N, D] and pids [N], "
            f"got {tuple(features.shape)} and {tuple(pids.shape)}"
        )
    dist = pairwise_distances(at_least_float32(features))
    same = pids.view(-1, 1) == pids.view(1, -1)
    positive = same & ~torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    hardest_pos = dist.masked_fill(~positive, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(dim=1)
    valid = positive.any(dim=1) & ~same.all(dim=1)
    losses = torch.relu(hardest_pos - hardest_neg + margin)
    return torch.where(valid, losses, 0.0).sum() / valid.sum().clamp(min=1)
