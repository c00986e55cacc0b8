"""``star check-data``: validate a dataset's layout, frames and keypoint store before training."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataFormatError
from .keypoint_quality import store_pose_quality
from .keypoint_store import META_FILE, KeypointStore
from .registry import format_summary, load_dataset
from .source_files import read_frame
from .tracklet import FrameIndex


@dataclass
class CheckReport:
    """Outcome of a successful check: per-split counts, what was checked, non-fatal findings."""

    summary: str
    stats: dict[str, dict[str, int]]
    frames_checked: int
    keypoints: str | None  # the verified store, or None when there is none
    warnings: list[str] = field(default_factory=list)
    pose_quality: dict | None = None  # with an explicit --keypoints: star.data.keypoint_quality's section


def _first_undecodable(index: FrameIndex, workers: int) -> int | None:
    """Position of the first frame OpenCV cannot decode (decoding runs in threads; cv2 releases the GIL)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, img in enumerate(pool.map(read_frame, index.paths, chunksize=64)):
            if img is None:
                return i
    return None


def check_dataset(
    name: str, root: str | Path, keypoints: str | Path | None = None, *, decode: bool = False
) -> CheckReport:
    """Load dataset ``name`` at ``root`` and check it; raise ``DataError`` naming the first problem.

    Checks: the annotation files parse (file:line on error), no split is empty, every
    indexed frame exists (``load_dataset`` does these; every frame is decoded too with
    ``decode``), and the keypoint store, ``keypoints`` or else ``<root>/keypoints`` when
    present, is aligned with the frame index and holds valid values. With an explicit
    ``keypoints`` the report carries its pose quality per split and modality
    (``meta.json``'s section, or computed from the arrays for an older store).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(name, root, verbose=False)
    found = [str(w.message) for w in caught]

    checked = 0
    for index in data.frame_index.values():
        if decode:
            bad = _first_undecodable(index, workers=min(8, os.cpu_count() or 1))
            if bad is not None:
                raise DataFormatError(index.source, None, f"{index.where(bad)}, {index.paths[bad]}, cannot be decoded")
        checked += len(index)

    store_dir = Path(keypoints) if keypoints is not None else Path(root) / "keypoints"
    store = quality = None
    if keypoints is not None or (store_dir / META_FILE).is_file():
        opened = KeypointStore(store_dir)
        opened.verify(data.frame_index)
        store = str(store_dir)
        if keypoints is not None:
            quality = store_pose_quality(opened, data)
    return CheckReport(
        summary=format_summary(data),
        stats=data.stats(),
        frames_checked=checked,
        keypoints=store,
        warnings=found,
        pose_quality=quality,
    )
