"""Pose quality of a keypoint store, per split and modality (docs/pose.md).

A pose model that fails on infrared frames shows here at once: for each store split and
each modality (``ir``, ``rgb``; ``all`` = every row of the split)

- ``mean_conf``: mean keypoint confidence over every joint of every frame;
- ``undetected_joints``: fraction of joints with conf 0 (the store's "not detected");
- ``frames_without_joints``: fraction of frames where no joint is detected;
- ``worst_joints``: the five joints with the lowest mean confidence.

``star pose`` writes it into ``meta.json`` (key ``pose_quality``); ``star check-data
--keypoints`` prints it, computing it from the memory-mapped arrays, chunk by chunk, for a
store written before it existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .skeleton import COCO17_KEYPOINTS, NUM_COCO_KEYPOINTS
from .tracklet import MODALITY_NAMES, SPLITS

QUALITY_FORMAT = 1
META_KEY = "pose_quality"
WORST_JOINTS = 5
CHUNK_ROWS = 1 << 16  # 65,536 frames: 4.5 MB of conf values per step
ALL = "all"


def row_modalities(data, sizes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Per store split, each row's modality (``MODALITY_NAMES`` index; -1: in no tracklet).

    ``data`` is a ``VideoReidData`` (its tracklets say which rows are which modality) or a
    bare mapping split -> frame index (every row -1: only ``all`` is reported).
    """
    rows = {split: np.full(n, -1, np.int8) for split, n in sizes.items()}
    if hasattr(data, "split"):
        for name in SPLITS:
            for t in data.split(name):
                rows[t.store_split][list(t.rows)] = t.modality
    return rows


def _summary(frames: int, conf_sum: np.ndarray, undetected: np.ndarray, empty_frames: int) -> dict:
    if frames == 0:
        return {
            "frames": 0,
            "mean_conf": None,
            "undetected_joints": None,
            "frames_without_joints": None,
            "worst_joints": [],
        }
    joint_mean = conf_sum / frames
    worst = np.argsort(joint_mean, kind="stable")[:WORST_JOINTS]
    return {
        "frames": frames,
        "mean_conf": round(float(joint_mean.mean()), 4),
        "undetected_joints": round(float(undetected.sum() / (frames * NUM_COCO_KEYPOINTS)), 4),
        "frames_without_joints": round(empty_frames / frames, 4),
        "worst_joints": [{"joint": COCO17_KEYPOINTS[j], "mean_conf": round(float(joint_mean[j]), 4)} for j in worst],
    }


def pose_quality(
    arrays: Mapping[str, np.ndarray],
    modalities: Mapping[str, np.ndarray],
    created_at: str | None,
    chunk_rows: int = CHUNK_ROWS,
) -> dict:
    """The quality section for store ``arrays`` (split -> [n, 17, 3], memory-mapped is fine), read chunk by chunk.

    ``created_at`` is the store's ``meta.json`` stamp: a split rewritten later (``write_keypoints``
    renews the stamp) makes the section stale, and it is then computed again.
    """
    splits = {}
    for split, arr in arrays.items():
        mod = modalities[split]
        groups = [ALL] + [MODALITY_NAMES[m] for m in range(len(MODALITY_NAMES)) if np.any(mod == m)]
        # per group: [frames, confidence sum, undetected counts, empty frames] (the _summary arguments)
        acc: dict[str, list[Any]] = {
            g: [0, np.zeros(NUM_COCO_KEYPOINTS), np.zeros(NUM_COCO_KEYPOINTS), 0] for g in groups
        }
        for start in range(0, arr.shape[0], chunk_rows):
            conf = np.asarray(arr[start : start + chunk_rows, :, 2], np.float64)
            m = mod[start : start + chunk_rows]
            for g in groups:
                c = conf if g == ALL else conf[m == MODALITY_NAMES.index(g)]
                zero = c == 0
                a = acc[g]
                a[0] += c.shape[0]
                a[1] += c.sum(axis=0)
                a[2] += zero.sum(axis=0)
                a[3] += int(zero.all(axis=1).sum())
        splits[split] = {g: _summary(*a) for g, a in acc.items()}
    return {"format": QUALITY_FORMAT, "store_created_at": created_at, "splits": splits}


def store_pose_quality(store, data) -> dict:
    """The quality of a verified ``KeypointStore`` for ``data``: its ``meta.json`` section, or computed now."""
    stored = store.meta.get(META_KEY)
    created_at = store.meta.get("created_at")
    if (
        isinstance(stored, dict)
        and stored.get("format") == QUALITY_FORMAT
        and created_at is not None
        and stored.get("store_created_at") == created_at
        and set(stored.get("splits", {})) == set(data.frame_index)
    ):
        return stored
    arrays = {split: store.array(split) for split in data.frame_index}
    return pose_quality(arrays, row_modalities(data, {s: a.shape[0] for s, a in arrays.items()}), created_at)


def format_pose_quality(quality: dict) -> str:
    """Lines for a terminal: one per split and modality."""
    lines = ["  pose quality (mean keypoint conf, undetected joints, frames with no joint; worst joints):"]
    for split, groups in quality["splits"].items():
        for group, q in groups.items():
            if not q["frames"]:
                continue
            worst = ", ".join(f"{w['joint']} {w['mean_conf']:.2f}" for w in q["worst_joints"])
            lines.append(
                f"    {split:<8} {group:<4} {q['frames']:>8} frames  conf {q['mean_conf']:.3f}  "
                f"undetected {100 * q['undetected_joints']:5.1f} %  no joint {100 * q['frames_without_joints']:5.1f} %"
                f"  worst: {worst}"
            )
    return "\n".join(lines)
