"""COCO-17 keypoint conventions shared by the data pipeline, pose extraction and models.

The bones and the joint count are defined once, in ``star_ext`` (the compiled ops' graph
needs them and ``star_ext`` does not import ``star``); they are re-exported here under
the same names (tests/test_models.py ties the joint names to the count).
"""

from __future__ import annotations

from star_ext.graph import COCO_BONES as COCO_BONES  # re-exported (see above)
from star_ext.graph import NUM_COCO_KEYPOINTS as NUM_COCO_KEYPOINTS

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
