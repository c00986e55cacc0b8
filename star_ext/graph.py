"""Graph templates in the CSR form ``keypoint_graph_attention`` takes.

A template is ``(rowptr [V+1], col [E])`` over *destination* nodes: the
sources of the edges into node ``i`` are ``col[rowptr[i]:rowptr[i+1]]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch

# The one definition of the COCO-17 joint count and bones in the project (star.data.skeleton
# re-exports them): star_ext is importable without the star package, so they live here.
NUM_COCO_KEYPOINTS = 17

# The 19 COCO-17 bones STAR uses for bone geometry and the graph, 0-indexed (i, j):
# bone vector p_j - p_i.
COCO_BONES: tuple[tuple[int, int], ...] = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
)


def edges_to_csr(
    src: torch.Tensor, dst: torch.Tensor, num_nodes: int, dtype: torch.dtype = torch.int64
) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR over destinations of a directed edge list; sources sorted within a row.

    Duplicate edges are kept (they count twice in the softmax, as in PyG).
    """
    src = torch.as_tensor(src, dtype=torch.int64).flatten()
    dst = torch.as_tensor(dst, dtype=torch.int64).flatten()
    if src.numel() != dst.numel():
        raise ValueError(f"edges_to_csr: src has {src.numel()} entries but dst has {dst.numel()}")
    if num_nodes < 0:
        raise ValueError(f"edges_to_csr: num_nodes must be >= 0, got {num_nodes}")
    for name, idx in (("src", src), ("dst", dst)):
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_nodes):
            raise ValueError(f"edges_to_csr: {name} holds a node outside [0, {num_nodes})")
    order = torch.argsort(dst * max(num_nodes, 1) + src, stable=True)
    counts = torch.bincount(dst, minlength=num_nodes)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64)
    rowptr[1:] = torch.cumsum(counts, 0)
    return rowptr.to(dtype), src[order].to(dtype)


def skeleton_graph(
    num_frames: int,
    bones: Iterable[tuple[int, int]] = COCO_BONES,
    num_joints: int = NUM_COCO_KEYPOINTS,
    self_loops: bool = True,
    dtype: torch.dtype = torch.int64,
    bones_in_first_frame_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The spatio-temporal skeleton graph of STAR as CSR.

    Node ``t * num_joints + j`` is joint ``j`` in frame ``t``. Edges, all in
    both directions: every bone inside every frame, and each joint to itself in
    the next frame; plus one self loop per node. ``bones_in_first_frame_only``
    keeps the bone edges of frame 0 only, as the authors' released graph does
    (with T = 12: 19*2 + 17*11*2 directed edges + 204 loops).
    """
    if num_frames < 1:
        raise ValueError(f"skeleton_graph: num_frames must be >= 1, got {num_frames}")
    bones = cast(list[tuple[int, int]], [tuple(b) for b in bones])
    for i, j in bones:
        if not (0 <= i < num_joints and 0 <= j < num_joints) or i == j:
            raise ValueError(f"skeleton_graph: bone ({i}, {j}) is not a pair of distinct joints in [0, {num_joints})")
    src: list[int] = []
    dst: list[int] = []

    def both_ways(a: int, b: int) -> None:
        src.extend((a, b))
        dst.extend((b, a))

    for t in range(num_frames):
        base = t * num_joints
        if t == 0 or not bones_in_first_frame_only:
            for i, j in bones:
                both_ways(base + i, base + j)
        if t + 1 < num_frames:
            for j in range(num_joints):
                both_ways(base + j, base + num_joints + j)
    num_nodes = num_frames * num_joints
    if self_loops:
        src.extend(range(num_nodes))
        dst.extend(range(num_nodes))
    return edges_to_csr(torch.tensor(src), torch.tensor(dst), num_nodes, dtype)


def csr_destinations(rowptr: torch.Tensor) -> torch.Tensor:
    """The destination node of every edge of a CSR (the COO row index)."""
    counts = rowptr[1:] - rowptr[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=rowptr.device), counts.to(torch.int64))
