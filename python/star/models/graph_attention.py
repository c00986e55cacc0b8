"""A GAT layer on a dense batch of graphs sharing one CSR template, on the fused op."""

from __future__ import annotations

import torch
from torch import nn

from .ops import select_ops


class KeypointGraphAttention(nn.Module):
    """Graph attention with the semantics of PyG's ``GATConv`` (add_self_loops=True).

    h = x W (no bias), per head k: a_src = <h_j, att_src_k>, a_dst = <h_i, att_dst_k>,
    alpha_ij = softmax_j(LeakyReLU(a_dst_i + a_src_j)) over the incoming edges
    of i, out_i = sum_j alpha_ij h_j, heads concatenated or averaged, + bias.
    In training, attention coefficients are dropped with probability
    ``dropout`` (kept ones scaled by 1 / (1 - dropout)), as GATConv does.
    The self loops must be in the template (``star_ext.skeleton_graph`` adds them).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        bias: bool = True,
        use_fused_ops: bool = True,
    ):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"KeypointGraphAttention: dropout must be in [0, 1), got {dropout}")
        self.out_dim, self.heads, self.concat = out_dim, heads, concat
        self.negative_slope, self.dropout = negative_slope, dropout
        self.ops = select_ops(use_fused_ops)
        self.lin = nn.Linear(in_dim, heads * out_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(heads, out_dim))
        self.bias = nn.Parameter(torch.empty(heads * out_dim if concat else out_dim)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot weights and attention vectors, zero bias (GATConv's initialisation)."""
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, rowptr: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        """x [B, V, in_dim], template (rowptr [V+1], col [E]) -> [B, V, heads*out_dim or out_dim]."""
        h, a_src, a_dst = self.project(x)
        keep, scale = None, 1.0
        if self.training and self.dropout > 0:
            keep = torch.rand(x.shape[0], col.numel(), self.heads, device=x.device) >= self.dropout
            scale = 1.0 / (1.0 - self.dropout)
        return self.combine_heads(
            self.ops.keypoint_graph_attention(h, a_src, a_dst, rowptr, col, self.negative_slope, keep, scale)
        )

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, V, in_dim] -> h = x W [B, V, heads, out_dim] and the logits a_src, a_dst [B, V, heads]."""
        b, v, _ = x.shape
        h = self.lin(x).view(b, v, self.heads, self.out_dim)
        # Under autocast these logits come out float32 and h half; the op's autocast kernel casts them to h's dtype.
        return h, (h * self.att_src).sum(-1), (h * self.att_dst).sum(-1)

    def combine_heads(self, out: torch.Tensor) -> torch.Tensor:
        """Per-head messages [B, V, heads, out_dim] -> concatenated or averaged heads, + bias."""
        b, v = out.shape[:2]
        out = out.reshape(b, v, self.heads * self.out_dim) if self.concat else out.mean(dim=2)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.lin.in_features}, {self.out_dim}, heads={self.heads}, concat={self.concat}, "
            f"dropout={self.dropout}, fused={self.ops is select_ops(True)}"
        )
