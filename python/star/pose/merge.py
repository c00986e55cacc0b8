"""``star pose --merge``: check every shard of a run is present and assemble the keypoint store."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write, lines_digest
from .errors import PoseError
from .locks import pose_run_lock
from .runtime import NUM_COCO_KEYPOINTS
from .shards import PLAN_FILE, SHARD_DIR, STAGING_DIR, WORK_DIR, frame_lists, plan_shards, read_json


def merge_shards(data: Any, out: str | os.PathLike | None = None) -> Path:
    """Check every shard of the run at ``out`` is there and assemble the keypoint store.

    Raises :class:`PoseError` naming the missing shards (and the frames they cover), or when
    the shards were computed for another frame index. Returns ``out``.
    """
    index = frame_lists(data)
    out = Path(out) if out is not None else Path(data.root) / "keypoints"
    with pose_run_lock(out, out / WORK_DIR, None):
        return merge_locked(data, index, out)


def merge_locked(data: Any, index: Mapping[str, Any], out: Path) -> Path:
    from star.data.keypoint_quality import META_KEY as QUALITY_KEY
    from star.data.keypoint_quality import pose_quality, row_modalities
    from star.data.keypoint_store import META_FILE, write_keypoints

    work = out / WORK_DIR
    plan = read_json(work / PLAN_FILE)
    if plan is None:
        raise PoseError(
            f"nothing to merge: {work / PLAN_FILE} not found (run `star pose` first, with --shard I/N per part)"
        )
    for split, info in plan["splits"].items():
        if split not in index or lines_digest(index[split].keys) != info["index_sha256"]:
            raise PoseError(f"{work}: the shards were computed for another frame index (split {split!r} differs)")
    if set(index) != set(plan["splits"]):
        raise PoseError(f"{work}: the shards cover splits {sorted(plan['splits'])}, the dataset has {sorted(index)}")
    shard_dir = work / SHARD_DIR
    shards = plan_shards({s: v["num_frames"] for s, v in plan["splits"].items()}, plan["shard_size"])
    missing = [s for s in shards if not (shard_dir / f"{s.name}.npy").is_file()]
    if missing:
        shown = ", ".join(f"{s.name} (frames {s.start}-{s.stop - 1})" for s in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise PoseError(
            f"cannot merge: {len(missing)} of {len(shards)} shards missing in {shard_dir}: {shown}{more}; "
            "run the missing --shard parts (or `star pose` without --shard) first"
        )
    fp = dict(plan["pose_extraction"], models=plan.get("models"))
    staging = work / STAGING_DIR
    if staging.exists():
        shutil.rmtree(staging)
    for split in plan["splits"]:
        parts = []
        for s in (s for s in shards if s.split == split):
            path = shard_dir / f"{s.name}.npy"
            try:
                arr = np.load(path)
            except (OSError, ValueError) as e:
                raise PoseError(f"{path}: unreadable shard ({e}); delete it and rerun to recompute it") from None
            if arr.shape != (len(s), NUM_COCO_KEYPOINTS, 3):
                raise PoseError(
                    f"{path}: shard has shape {arr.shape}, expected {(len(s), NUM_COCO_KEYPOINTS, 3)}; "
                    "delete it and rerun"
                )
            parts.append(arr)
        arr = np.concatenate(parts) if parts else np.zeros((0, NUM_COCO_KEYPOINTS, 3), np.float32)
        write_keypoints(
            staging,
            split,
            arr,
            index[split].keys,
            pose_model=(fp["models"] or {}).get("pose", "rtmpose"),
            input_size=tuple(fp["input_size"]),
            dtype=fp["dtype"],
        )
    meta = json.loads((staging / META_FILE).read_text(encoding="utf-8"))
    meta["pose_extraction"] = fp
    stored = {split: np.load(staging / f"{split}.npy", mmap_mode="r") for split in plan["splits"]}
    meta[QUALITY_KEY] = pose_quality(
        stored, row_modalities(data, {s: len(a) for s, a in stored.items()}), meta["created_at"]
    )
    del stored  # the memory maps, before the files move
    atomic_write(staging / META_FILE, lambda f: json.dump(meta, f, indent=2), "w", durable=True)
    # Publish: drop the old meta.json first, so no reader sees new arrays under old metadata.
    (out / META_FILE).unlink(missing_ok=True)
    for split in plan["splits"]:
        for name in (f"{split}.npy", f"{split}.index.txt"):
            os.replace(staging / name, out / name)
    os.replace(staging / META_FILE, out / META_FILE)
    shutil.rmtree(work)
    return out
