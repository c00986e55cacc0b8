"""The eval-mode STAR network rewritten with standard ops only, so it exports to ONNX.

Three things in the PyTorch network do not survive an ONNX export as they are:

- the fused ops (``torch.ops.star.*``) exist only where star_ext is installed: the
  export uses the pure-PyTorch references of ``keypoint_pool`` and ``guided_gem_pool``
  (einsum / logsumexp, plain ONNX), and for ``keypoint_graph_attention`` the dense
  form below, because the reference's scatter of many edges into one node
  (``index_add``) exports to an ONNX scatter whose duplicate indices are undefined;
- the two-stream stem picks frames with ``nonzero`` and skips a stem when a batch
  has one modality only: traced, that branch would be frozen to the example batch,
  so here both stems run on every frame and ``where`` picks one (same values:
  eval-mode stems treat frames independently);
- the modality enters as int64 0/1 and is turned into the flag the network takes.

``export_network(model)`` returns such a copy; the original model is not touched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from star_ext import reference
from star_ext.graph import csr_destinations

from ..models.backbone import TwoStreamResNet
from ..models.keypoint_graph import KeypointGraphEncoder
from ..models.ops import Ops
from .errors import ExportError


class DenseGraphAttention:
    """``keypoint_graph_attention`` on one fixed CSR template as masked dense attention.

    The template becomes a constant [V, V] edge-multiplicity matrix M (M[i, j] = number
    of edges j -> i), so the softmax over the incoming edges of i is
    ``M * exp(e - max) / sum_j(M * exp(e - max))`` over all V sources: the reference's
    result, including duplicate edges and zeros for a node without incoming edges.
    Eval only (no attention dropout).
    """

    def __init__(self, rowptr: torch.Tensor, col: torch.Tensor):
        self.rowptr, self.col = rowptr, col
        num_nodes = rowptr.numel() - 1
        dst = csr_destinations(rowptr.long())
        counts = torch.zeros(num_nodes, num_nodes)
        counts.index_put_((dst, col.long()), torch.ones(col.numel()), accumulate=True)
        self.multiplicity = counts

    def __call__(self, h, a_src, a_dst, rowptr, col, negative_slope=0.2, edge_keep=None, keep_scale=1.0):
        """``star_ext.keypoint_graph_attention``'s signature and result, for the template given at construction."""
        if rowptr is not self.rowptr or col is not self.col:
            raise ExportError("DenseGraphAttention was built for another graph template")
        if edge_keep is not None:
            raise ExportError("the exported network is eval-only: no attention dropout")
        m = self.multiplicity.to(device=h.device, dtype=h.dtype)[None, :, :, None]  # [1, V_dst, V_src, 1]
        e = F.leaky_relu(a_dst.unsqueeze(2) + a_src.unsqueeze(1), negative_slope)  # [B, V_dst, V_src, Hd]
        e = e.masked_fill(m == 0, float("-inf"))
        top = e.amax(dim=2, keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # rows without edges
        weights = torch.exp(e - top) * m
        alpha = weights / weights.sum(dim=2, keepdim=True).clamp_min(torch.finfo(h.dtype).tiny)
        return torch.einsum("bijk,bjkd->bikd", alpha, h)


class ExportNetwork(nn.Module):
    """(frames float32 [B, T, 3, H, W], keypoints [B, T, 17, 3], modality int64 [B]) -> embedding [B, C]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = model

    def forward(self, frames: torch.Tensor, keypoints: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        return self.net(frames, keypoints, modality == 1)


def export_network(model: nn.Module) -> ExportNetwork:
    """An eval-mode copy of ``model`` (a ``star.models.STAR``) on the CPU that uses standard ops only."""
    net = copy.deepcopy(model).cpu().eval()
    if not isinstance(net.backbone, TwoStreamResNet):
        raise ExportError(f"cannot export a model with backbone {type(net.backbone).__name__}")
    graphs = [m for m in net.modules() if isinstance(m, KeypointGraphEncoder)]
    if len(graphs) > 1:
        raise ExportError(f"cannot export a model with {len(graphs)} keypoint graphs (one is supported)")
    dense = (
        DenseGraphAttention(cast(torch.Tensor, graphs[0].rowptr), cast(torch.Tensor, graphs[0].col)) if graphs else None
    )
    # None only without a keypoint graph: then no module calls keypoint_graph_attention.
    ops = Ops(reference.keypoint_pool, reference.guided_gem_pool, cast(Callable, dense))
    for module in net.modules():
        if isinstance(getattr(module, "ops", None), Ops):
            cast(Any, module).ops = ops  # a plain attribute, not a Tensor or Module
    return ExportNetwork(net)
