"""Frame level: skeleton-guided correction of frame features by two-way cross-attention."""

from __future__ import annotations

import torch
from torch import nn


class FrameCorrection(nn.Module):
    """F' = FFN([E_o; E_s]) + F + offset (docs/method.md, frame level).

    E_o = MHA(Q=H, K=F, V=F): the skeleton sequence reads the visual frames.
    E_s = MHA(Q=F, K=H, V=H): the frames read the skeleton sequence.
    FFN = Linear(2C -> C)-ReLU-Linear(C -> C)-ReLU, so with F >= 0 (after the
    backbone's ReLU) F' stays >= 0, as the generalized means need; the
    release's offset 1e-3 keeps it > 0.
    """

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0, offset: float = 1e-3):
        super().__init__()
        self.skeleton_queries = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.frame_queries = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
        self.offset = offset

    def forward(self, frames: torch.Tensor, skeleton: torch.Tensor) -> torch.Tensor:
        """frames F [B, T, C], skeleton H [B, T, C] -> F' [B, T, C]."""
        e_o, _ = self.skeleton_queries(skeleton, frames, frames, need_weights=False)
        e_s, _ = self.frame_queries(frames, skeleton, skeleton, need_weights=False)
        out = self.ffn(torch.cat([e_o, e_s], dim=-1)) + frames
        return out + self.offset if self.offset else out
