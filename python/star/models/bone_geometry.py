"""Bone geometry of COCO-17 skeletons: length and direction of every bone per frame.

STAR encodes each bone by its length and angle. Two details of the encoding
matter on real keypoints, so we fix them here (a deliberate, documented
deviation in form, not in information):

- the angle is given as (cos, sin), not as atan2's value: a horizontal bone
  pointing left (shoulders and hips of a person facing the camera) sits at the
  +-pi cut, where keypoint jitter would flip its angle by 2 pi from frame to frame;
- a bone with an undetected end (confidence 0, stored as (0, 0, 0)) gets the
  zero vector, not the geometry of a segment to the image corner. (cos, sin) of a
  real bone is never (0, 0), so "missing" stays distinguishable.
"""

from __future__ import annotations

from typing import Sequence

import torch

FEATURES_PER_BONE = 3  # length, cos(angle), sin(angle)


def bone_geometry(
    keypoints: torch.Tensor, bones: Sequence[tuple[int, int]], aspect: float = 1.0
) -> torch.Tensor:
    """e(t) = (lengths, cos angles, sin angles) of the bones, [..., 3 * num_bones].

    For bone (i, j): v = p_j - p_i, length ||v||, angle of v. A bone whose
    ends are not both detected (conf > 0) is all zeros.

    Args:
        keypoints: [..., K, 3] as (x, y, conf), x and y normalised to [0, 1].
        bones: pairs (i, j) of joint indices.
        aspect: frame width / height. x is scaled by it so lengths are in units
            of the frame height and angles are true angles in the image, not
            distorted by the frame's 2:1 shape.
    """
    idx = torch.tensor(bones, dtype=torch.long, device=keypoints.device)
    start, end = keypoints.index_select(-2, idx[:, 0]), keypoints.index_select(-2, idx[:, 1])
    v = end[..., :2] - start[..., :2]
    vx, vy = v[..., 0] * aspect, v[..., 1]
    squared = vx * vx + vy * vy
    present = (start[..., 2] > 0) & (end[..., 2] > 0) & (squared > 0)
    # A safe length where the bone is absent or degenerate: no 0/0 reaches the values or gradients.
    length = torch.sqrt(torch.where(present, squared, torch.ones_like(squared)))
    mask = present.to(length.dtype)
    return torch.cat([length * mask, vx / length * mask, vy / length * mask], dim=-1)
