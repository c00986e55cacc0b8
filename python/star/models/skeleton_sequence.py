"""Edge-based skeleton code: bone geometry over time encoded by a BiLSTM (docs/method.md, frame level)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from .bone_geometry import BoneEncoding, bone_geometry
from .traced_lstm import BiLSTM


class SkeletonSequenceEncoder(nn.Module):
    """e(t) -> Linear(F*num_bones -> embed_dim) -> BiLSTM(hidden per direction).

    Returns the sequence H [B, T, 2*hidden] (queries/keys of the frame-level
    correction) and the edge-based skeleton code h_T [B, 2*hidden] of the guide
    vector: with ``final_states`` the last state of each direction (forward after
    frame T, backward after frame 1); otherwise both directions' outputs at frame
    T, as released (the backward half has then seen frame T only).
    """

    def __init__(
        self,
        bones: Sequence[tuple[int, int]],
        hidden: int,
        embed_dim: int = 64,
        encoding: BoneEncoding = BoneEncoding(),  # noqa: B008  (a frozen dataclass: immutable)
        final_states: bool = False,
    ):
        super().__init__()
        self.bones = cast(tuple[tuple[int, int], ...], tuple(tuple(b) for b in bones))
        self.hidden = hidden
        self.encoding = encoding
        self.final_states = final_states
        self.embed = nn.Linear(encoding.features_per_bone * len(self.bones), embed_dim)
        self.lstm = BiLSTM(embed_dim, hidden)  # nn.LSTM's parameters; traced by torch.compile

    def forward(self, keypoints: torch.Tensor, aspect: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """keypoints [B, T, K, 3] -> (H [B, T, 2*hidden], h_T [B, 2*hidden])."""
        # Geometry in the parameters' precision (float32 under autocast): atan2 of tiny bones needs it.
        e = bone_geometry(keypoints.to(self.embed.weight.dtype), self.bones, aspect, self.encoding)
        seq = self.lstm(self.embed(e))
        if self.final_states:
            return seq, torch.cat([seq[:, -1, : self.hidden], seq[:, 0, self.hidden :]], dim=-1)
        return seq, seq[:, -1]
