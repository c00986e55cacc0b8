"""Joint-based skeleton code g: graph attention over the spatio-temporal keypoint graph."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import star_ext

from .config import SequenceGuidanceConfig
from .graph_attention import KeypointGraphAttention
from .ops import select_ops

NODE_COORDS = 3  # (x, y, conf) per keypoint


class KeypointGraphEncoder(nn.Module):
    """Keypoints of a T-frame tracklet -> g [B, out_dim] (docs/method.md, sequence level).

    Graph: ``star_ext.skeleton_graph(T)`` (V = 17 T nodes, the bones in every
    frame, or in the first frame only with ``spatial_edges: first_frame``, each
    joint linked to itself in the next frame, self loops). Node features
    (x, y, conf), optionally concatenated with the joint's visual part feature
    ``keypoint_pool(layer4, kpts)`` projected to ``visual_dim``. Two GAT layers:
    -> hidden_dim x hidden_heads (concat), ELU, dropout; -> out_dim x 1 head,
    ELU. Then the V x out_dim node codes, flattened node-major, become g by an
    adaptive average pool to ``out_dim`` (``readout: avg_pool``) or a learned
    Linear (``readout: linear``), so T is fixed at construction.
    """

    # buffers, registered in __init__ only with the avg_pool readout
    bin_index: torch.Tensor
    bin_weight: torch.Tensor

    def __init__(
        self,
        num_frames: int,
        out_dim: int,
        feature_dim: int,
        cfg: SequenceGuidanceConfig,
        use_fused_ops: bool = True,
    ):
        super().__init__()
        self.num_frames = num_frames
        self.sigma = cfg.sigma
        self.ops = select_ops(use_fused_ops)
        first_frame = cfg.spatial_edges == "first_frame"
        rowptr, col = star_ext.skeleton_graph(num_frames, bones_in_first_frame_only=first_frame)
        num_nodes = num_frames * star_ext.NUM_COCO_KEYPOINTS
        star_ext.validate_csr(rowptr, col, num_nodes)
        # Non-persistent buffers: they follow .to(device) but stay out of checkpoints (rebuilt from T).
        self.register_buffer("rowptr", rowptr, persistent=False)
        self.register_buffer("col", col, persistent=False)
        self.visual_proj = nn.Linear(feature_dim, cfg.visual_dim) if cfg.visual_nodes else None
        in_dim = NODE_COORDS + (cfg.visual_dim if cfg.visual_nodes else 0)
        gat: dict[str, Any] = dict(dropout=cfg.attention_dropout, use_fused_ops=use_fused_ops)
        self.gat1 = KeypointGraphAttention(in_dim, cfg.hidden_dim, heads=cfg.hidden_heads, concat=True, **gat)
        self.gat2 = KeypointGraphAttention(cfg.hidden_dim * cfg.hidden_heads, cfg.out_dim, heads=1, concat=False, **gat)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_dim = out_dim
        self.readout = nn.Linear(num_nodes * cfg.out_dim, out_dim) if cfg.readout == "linear" else None
        if self.readout is None:
            index, weight = adaptive_average_bins(num_nodes * cfg.out_dim, out_dim)
            self.register_buffer("bin_index", index, persistent=False)
            self.register_buffer("bin_weight", weight, persistent=False)

    def forward(self, keypoints: torch.Tensor, feature_maps: torch.Tensor | None = None) -> torch.Tensor:
        """keypoints [B, T, 17, 3]; feature_maps [B*T, C, h, w] (needed with visual nodes) -> g [B, out_dim]."""
        b, t, k, _ = keypoints.shape
        nodes = keypoints.reshape(b, t * k, NODE_COORDS).to(self.gat1.lin.weight.dtype)
        if self.visual_proj is not None:
            if feature_maps is None:
                raise ValueError("KeypointGraphEncoder: visual nodes need the layer4 feature maps")
            kpts = keypoints.reshape(b * t, k, NODE_COORDS).to(feature_maps.dtype)
            parts = self.ops.keypoint_pool(feature_maps, kpts, self.sigma)  # [B*T, 17, C]
            visual = self.visual_proj(parts).reshape(b, t * k, -1)
            nodes = torch.cat([nodes.to(visual.dtype), visual], dim=-1)
        x = self.dropout(F.elu(self.gat1(nodes, self.rowptr, self.col)))
        x = F.elu(self.gat2(x, self.rowptr, self.col)).flatten(1)
        if self.readout is None:  # adaptive_avg_pool1d(x, out_dim), written so that ONNX exports it
            return (x[:, self.bin_index] * self.bin_weight.to(x.dtype)).sum(-1)
        return self.readout(x)


def adaptive_average_bins(length: int, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The bins of ``adaptive_avg_pool1d`` from ``length`` to ``bins``: bin j averages positions
    floor(j L / n) .. ceil((j + 1) L / n) - 1. Returns (index [n, w], weight [n, w] float64) with
    w the widest bin: the positions of each bin (padded with its last one) and 1 / its size
    (0 on the padding). The exporter has no adaptive_avg_pool1d where n does not divide L."""
    start = [j * length // bins for j in range(bins)]
    end = [-(-(j + 1) * length // bins) for j in range(bins)]
    width = max(e - s for s, e in zip(start, end, strict=False))
    index = torch.tensor([[min(s + i, e - 1) for i in range(width)] for s, e in zip(start, end, strict=False)])
    weight = torch.tensor(
        [[1.0 / (e - s) if i < e - s else 0.0 for i in range(width)] for s, e in zip(start, end, strict=False)],
        dtype=torch.float64,
    )
    return index, weight
