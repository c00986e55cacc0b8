"""Defence loss of the style disturbance (SAADG)."""

from __future__ import annotations

import torch

from .precision import at_least_float32


def defence_loss(f: torch.Tensor, f_dis: torch.Tensor) -> torch.Tensor:
    """mean ||f - f_dis||_2 over frames: the features should not move when the style is disturbed.

    f, f_dis [..., C]; the norm is taken over the last dimension.
    """
    if f.shape != f_dis.shape:
        raise ValueError(
            f"defence_loss: f and f_dis must have the same shape, got {tuple(f.shape)} and {tuple(f_dis.shape)}"
        )
    return torch.linalg.vector_norm(at_least_float32(f - f_dis), dim=-1).mean()
