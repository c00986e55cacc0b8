"""Bone geometry of COCO-17 skeletons: length and angle of every bone per frame."""

from __future__ import annotations

from typing import Sequence

import torch


def bone_geometry(
    keypoints: torch.Tensor, bones: Sequence[tuple[int, int]], aspect: float = 1.0
) -> torch.Tensor:
    """e(t) = (lengths, angles) of the bones, [..., 2 * num_bones].

    For bone (i, j): v = p_j - p_i, length ||v||, angle atan2(v_y, v_x).

    Args:
        keypoints: [..., K, 3] as (x, y, conf), x and y normalised to [0, 1].
        bones: pairs (i, j) of joint indices.
        aspect: frame width / height. x is scaled by it so lengths are in units
            of the frame height and angles are true angles in the image, not
            distorted by the frame's 2:1 shape.
    """
    idx = torch.tensor(bones, dtype=torch.long, device=keypoints.device)
    xy = keypoints[..., :2]
    v = xy.index_select(-2, idx[:, 1]) - xy.index_select(-2, idx[:, 0])
    vx, vy = v[..., 0] * aspect, v[..., 1]
    return torch.cat([torch.hypot(vx, vy), torch.atan2(vy, vx)], dim=-1)
