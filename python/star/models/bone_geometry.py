"""Bone geometry of COCO-17 skeletons: length and direction of every bone per frame.

For bone (i, j): v = p_j - p_i on the stored normalised (x, y). The authors'
release encodes each bone as (||v||, atan2(v_y, v_x)), bone-major, 2 numbers a
bone. Two details matter on real keypoints, so :class:`BoneEncoding` can also:

- give the angle as (cos, sin): a horizontal bone pointing left (shoulders and
  hips of a person facing the camera) sits at atan2's +-pi cut, where keypoint
  jitter flips the value by 2 pi from frame to frame;
- zero a bone with an undetected end (confidence 0, stored as (0, 0, 0)) instead
  of encoding a segment to the image corner ((cos, sin) of a real bone is never
  (0, 0), so "missing" stays distinguishable);
- scale x by the frame's W/H, so lengths and angles are those of the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BoneEncoding:
    """How e(t) encodes a bone (see the module docstring); the defaults are the release's."""

    angle: str = "atan2"  # "atan2" | "cos_sin"
    zero_undetected: bool = False
    aspect_scale: bool = False

    @property
    def features_per_bone(self) -> int:
        """2 (length, angle) or 3 (length, cos, sin)."""
        return 2 if self.angle == "atan2" else 3


def bone_geometry(
    keypoints: torch.Tensor,
    bones: Sequence[tuple[int, int]],
    aspect: float = 1.0,
    encoding: BoneEncoding = BoneEncoding(),
) -> torch.Tensor:
    """e(t): per bone (length, angle) or (length, cos, sin), bone-major, [..., F * num_bones].

    Args:
        keypoints: [..., K, 3] as (x, y, conf), x and y normalised to [0, 1].
        bones: pairs (i, j) of joint indices; v = p_j - p_i.
        aspect: frame width / height, used with ``encoding.aspect_scale``.
        encoding: the encoding choices.
    """
    idx = torch.tensor(bones, dtype=torch.long, device=keypoints.device)
    start, end = keypoints.index_select(-2, idx[:, 0]), keypoints.index_select(-2, idx[:, 1])
    v = end[..., :2] - start[..., :2]
    vx, vy = v[..., 0], v[..., 1]
    if encoding.aspect_scale:
        vx = vx * aspect
    squared = vx * vx + vy * vy
    valid = squared > 0
    if encoding.zero_undetected:
        valid = valid & (start[..., 2] > 0) & (end[..., 2] > 0)
    # A safe length where the bone is degenerate or masked: no 0/0 reaches the values or gradients.
    safe = torch.sqrt(torch.where(valid, squared, torch.ones_like(squared)))
    length = torch.where(valid, safe, torch.zeros_like(safe))
    if encoding.angle == "atan2":
        angle = torch.atan2(torch.where(valid, vy, torch.zeros_like(vy)), torch.where(valid, vx, torch.ones_like(vx)))
        if encoding.zero_undetected:
            angle = angle * valid.to(angle.dtype)
        parts = [length, angle]
    else:
        mask = valid.to(safe.dtype)
        parts = [length, vx / safe * mask, vy / safe * mask]
    return torch.stack(parts, dim=-1).flatten(-2)
