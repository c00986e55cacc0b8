"""COCO-17 keypoint conventions shared by the data pipeline, pose extraction and models."""

from __future__ import annotations

COCO17_KEYPOINTS: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(COCO17_KEYPOINTS)


def _flip_permutation(names: tuple[str, ...]) -> tuple[int, ...]:
    """Index of the mirrored joint for every joint (left <-> right, centre joints fixed)."""
    def mirror(n: str) -> str:
        if n.startswith("left_"):
            return "right_" + n[5:]
        if n.startswith("right_"):
            return "left_" + n[6:]
        return n

    return tuple(names.index(mirror(n)) for n in names)


# After a horizontal flip, joint k of the new skeleton is joint COCO17_FLIP[k] of the old one.
COCO17_FLIP: tuple[int, ...] = _flip_permutation(COCO17_KEYPOINTS)

# The 19 COCO bones (SPEC §3.2), 0-indexed (i, j): bone vector p_j - p_i.
COCO17_BONES: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
