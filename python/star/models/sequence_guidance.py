"""Sequence level: guide vector from the skeleton codes, guided temporal pooling (docs/method.md, sequence level)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .config import PoolingConfig, SequenceGuidanceConfig
from .guided_pooling import GuidedPooling
from .keypoint_graph import KeypointGraphEncoder


class GuidanceOutput(NamedTuple):
    """z [B, C] pooled sequence feature; g [B, C]; s [B, 2C]; pose logits [B, classes] (training, if on)."""

    z: torch.Tensor
    g: torch.Tensor
    s: torch.Tensor
    pose_logits: torch.Tensor | None


class SequenceGuidance(nn.Module):
    """The skeleton head: keypoint graph -> g; s = BN([h_T; g]); z = guided pooling of F' by s.

    ``s`` also feeds the pose-ID classifier (a Linear, with a bias when
    ``cfg.pose_classifier_bias``) when ``cfg.pose_classifier``; its logits are
    only computed in training.
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        num_frames: int,
        cfg: SequenceGuidanceConfig,
        pooling: PoolingConfig,
        use_fused_ops: bool = True,
    ):
        super().__init__()
        self.graph = KeypointGraphEncoder(num_frames, dim, dim, cfg, use_fused_ops)
        self.guide_bn = nn.BatchNorm1d(2 * dim)
        self.pose_classifier = (
            nn.Linear(2 * dim, num_classes, bias=cfg.pose_classifier_bias) if cfg.pose_classifier else None
        )
        self.pooling = GuidedPooling(2 * dim, dim, pooling, use_fused_ops)

    def forward(
        self,
        frames: torch.Tensor,
        keypoints: torch.Tensor,
        h_last: torch.Tensor,
        feature_maps: torch.Tensor | None = None,
    ) -> GuidanceOutput:
        """frames F' [B, T, C], keypoints [B, T, 17, 3], h_T [B, C], layer4 maps [B*T, C, h, w] (visual nodes)."""
        g = self.graph(keypoints, feature_maps)
        s = self.guide_bn(torch.cat([h_last, g.to(h_last.dtype)], dim=-1))
        z = self.pooling(frames, s)
        pose = self.pose_classifier(s) if self.training and self.pose_classifier is not None else None
        return GuidanceOutput(z, g, s, pose)
