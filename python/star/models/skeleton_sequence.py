"""Edge-based skeleton code: bone geometry over time encoded by a BiLSTM (SPEC §3.2)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .bone_geometry import FEATURES_PER_BONE, bone_geometry
from .traced_lstm import BiLSTM


class SkeletonSequenceEncoder(nn.Module):
    """e(t) -> Linear(2*num_bones -> embed_dim) -> BiLSTM(hidden per direction).

    Returns the sequence H [B, T, 2*hidden] (queries/keys of the frame-level
    correction) and h_T [B, 2*hidden], the last state of each direction: the
    forward state after the last frame and the backward state after the first
    (the edge-based skeleton code of the guide vector).
    """

    def __init__(self, bones: Sequence[tuple[int, int]], hidden: int, embed_dim: int = 64):
        super().__init__()
        self.bones = tuple(tuple(b) for b in bones)
        self.hidden = hidden
        self.embed = nn.Linear(FEATURES_PER_BONE * len(self.bones), embed_dim)
        self.lstm = BiLSTM(embed_dim, hidden)  # nn.LSTM's parameters; traced by torch.compile

    def forward(self, keypoints: torch.Tensor, aspect: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """keypoints [B, T, K, 3] -> (H [B, T, 2*hidden], h_T [B, 2*hidden])."""
        # Geometry in the parameters' precision (float32 under autocast): atan2 of tiny bones needs it.
        e = bone_geometry(keypoints.to(self.embed.weight.dtype), self.bones, aspect)
        seq = self.lstm(self.embed(e))
        h_last = torch.cat([seq[:, -1, : self.hidden], seq[:, 0, self.hidden :]], dim=-1)
        return seq, h_last
