"""Keypoint extraction over a whole dataset (docs/pose.md): batched, sharded, resumable, multi-process.

``extract_keypoints(data, PoseOptions(out=..., model=...))`` runs RTMPose (:mod:`star.pose.runtime`, rtmlib's
processing on onnxruntime) on every frame of ``data.frame_index`` and writes the keypoint
store of :mod:`star.data.keypoint_store` at ``out``.

How a run is organised (everything under ``<out>/.pose-work/``):

- ``plan.json``: what is being computed -- sha256 of the pose (and detector) weights, the
  input size, the shard size, the store dtype, and per split the number of frames and the
  sha256 of its frame keys. A later run with other settings stops with an error instead of
  mixing results (``force=True`` / ``--force`` discards the work directory).
- ``shards/<split>-<NNNNNN>.npy``: float32 [n, 17, 3] store rows of ``shard_size``
  consecutive frames of one split, each written to a temporary name, fsync'ed and renamed.
  A rerun skips the shards that exist and recomputes the others (an interrupted shard
  was never renamed into place). Batches never straddle shards, so a resumed run computes
  the same batches as an uninterrupted one.
- merging (:mod:`star.pose.merge`; automatic at the end of a full run, or ``merge_shards`` / ``star pose --merge``
  after ``--shard I/N`` runs) checks that every shard is there, writes the store with
  ``write_keypoints`` into ``.pose-work/store`` and then moves the ``.npy`` and index files
  into ``out``, ``meta.json`` last (an older ``meta.json`` is removed first): a store is
  either complete or absent, never half-written. The work directory is then deleted.

Per frame: the box is the whole frame (re-ID frames are person crops) or, with a YOLOX
detector, its best person box. Stored x, y are the rtmlib keypoints divided by the frame
width / height and conf the rtmlib score clipped to [0, 1]; keypoints with score <= 0 or
outside the frame, and every keypoint of a frame where the detector finds no person, are
(0, 0, 0) -- see :func:`star.pose.runtime.to_store`.

One run per output folder: a run holds ``<out>/.star.lock`` (parts of ``shard=I/N`` their own
lock and run side by side; see :mod:`star.pose.locks`), and a second run fails at once naming
the first. A full run removes the temporaries that killed runs left in the work directory.

A missing frame stops the run before any inference starts (naming the file and the index it
comes from); a frame that cannot be decoded stops it when met, naming the file (finished
shards are kept: fix the frame and rerun). With ``skip_unreadable=True`` such frames get a
warning and conf 0 instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..fileio import atomic_write, lines_digest, remove_stale_temporaries
from ..progress import counting_progress as frame_progress
from .errors import PoseError, PoseSettingsError, UnreadableFrameError
from .frames import FrameExtractor, PoseSettings
from .locks import pose_run_lock
from .merge import merge_locked
from .options import PoseOptions
from .runtime import RTMPoseModel, YOLOXDetector, available_cpus
from .shards import PLAN_FILE, SHARD_DIR, STAGING_DIR, WORK_DIR, Shard, frame_lists, plan_shards, read_json, select_part
from .weights import DEFAULT_DET_MODEL, resolve_model
from .workers import run_pool

PLAN_FORMAT = 1


class PoseWarning(UserWarning):
    """Pose extraction went on, but something deserves attention (e.g. an unreadable frame got conf 0)."""


def _file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- the run


@dataclass
class PoseRun:
    """What ``extract_keypoints`` did."""

    out: Path
    frames: int  # frames of the shards this run is responsible for
    frames_computed: int
    shards: int
    shards_skipped: int  # already finished by an earlier (interrupted) run
    shards_computed: int
    seconds: float
    complete: bool  # the store at ``out`` is written
    part: tuple[int, int] | None = None
    unreadable: list[str] = field(default_factory=list)
    up_to_date: bool = False  # the store at ``out`` was already complete for these settings: nothing done

    @property
    def frames_per_s(self) -> float:
        return self.frames_computed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        where = f"part {self.part[0]}/{self.part[1]}: " if self.part else ""
        text = (
            f"{where}{self.shards_computed} shards ({self.frames_computed} frames) computed at "
            f"{self.frames_per_s:.1f} frames/s, {self.shards_skipped} of {self.shards} already done"
        )
        if self.up_to_date:
            return f"the keypoint store at {self.out} is already complete for these settings (force=True recomputes it)"
        if self.unreadable:
            text += f"; {len(self.unreadable)} unreadable frames stored with conf 0"
        return text + (f"; keypoint store written to {self.out}" if self.complete else "")


def _plan(index: Mapping[str, Any], fingerprint: dict, shard_size: int) -> dict:
    return {
        "format": PLAN_FORMAT,
        "pose_extraction": fingerprint,
        "shard_size": shard_size,
        "splits": {s: {"num_frames": len(ix.keys), "index_sha256": lines_digest(ix.keys)} for s, ix in index.items()},
    }


def _model_name(spec, path) -> str:
    text = os.fspath(spec)
    return text if "/" not in text and os.sep not in text else Path(path).name


def _store_matches(out: Path, plan: dict) -> bool:
    """``out`` already holds the complete store this plan would produce."""
    meta = read_json(out / "meta.json")
    if not meta or not isinstance(meta.get("pose_extraction"), dict):
        return False
    if {k: v for k, v in meta["pose_extraction"].items() if k != "models"} != plan["pose_extraction"]:
        return False
    splits = meta.get("splits", {})
    for split, info in plan["splits"].items():
        have = splits.get(split)
        if not have or have.get("index_sha256") != info["index_sha256"] or have.get("num_frames") != info["num_frames"]:
            return False
        if not (out / f"{split}.npy").is_file():
            return False
    return True


def _describe_difference(old: dict, new: dict) -> str:
    keys = []
    for k in ("pose_extraction", "shard_size", "splits"):
        if old.get(k) != new.get(k):
            if k == "pose_extraction":
                keys += [f"{k}.{s}" for s in new[k] if old.get(k, {}).get(s) != new[k][s]]
            else:
                keys.append(k)
    return ", ".join(keys) or "format"


def _check_frames(index: Mapping[str, Any], shards: Sequence[Shard], skip_unreadable: bool) -> list[str]:
    """Missing frame files of ``shards``: an error (naming the first ones) unless ``skip_unreadable``."""
    missing: list[tuple[str, int, str]] = []
    for sh in shards:
        paths = index[sh.split].paths
        for row in range(sh.start, sh.stop):
            if not os.path.isfile(paths[row]):
                missing.append((sh.split, row, paths[row]))
    if missing and not skip_unreadable:
        shown = "\n".join(f"  {p} (frame {row + 1} of {getattr(index[s], 'source', s)})" for s, row, p in missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise UnreadableFrameError(
            missing[0][2],
            f"does not exist; {len(missing)} frame file(s) missing:\n{shown}{more}\n"
            "(fix the dataset, or pass --skip-unreadable to store conf 0 for them)",
        )
    return [p for _, _, p in missing]


def extract_keypoints(
    data: Any,
    options: PoseOptions = PoseOptions(),  # noqa: B008  (a frozen dataclass: immutable)
    *,
    on_shard_done: Callable[[str], None] | None = None,
) -> PoseRun:
    """Run RTMPose on every frame of ``data`` and write its keypoint store at ``options.out``.

    ``data``: a ``star.data.VideoReidData`` (or a mapping split -> ``FrameIndex``); ``options``:
    what to run and how (:class:`PoseOptions`, checked when it was built). Resumable: see the
    module docstring; ``options.force`` discards ``<out>/.pose-work`` and recomputes
    everything (not while other parts are running). ``on_shard_done(name)`` is called after
    each shard is saved.
    """
    t0 = time.perf_counter()
    index = frame_lists(data)
    if options.out is None:
        if not hasattr(data, "root"):
            raise PoseSettingsError("out is required when data is not a VideoReidData")
        options = dataclasses.replace(options, out=Path(data.root) / "keypoints")
    out = Path(options.out)  # type: ignore[arg-type]  # set just above
    model, detector, det_model, workers = options.model, options.detector, options.det_model, options.workers
    part = options.part

    model_path = resolve_model(model, "pose model")
    det_path = resolve_model(det_model or DEFAULT_DET_MODEL, "detector model") if detector else None
    cpus = available_cpus()
    settings = PoseSettings(
        model_path=str(model_path),
        det_path=str(det_path) if det_path else None,
        device=options.device,
        batch=options.batch,
        threads=options.threads or max(1, cpus // workers),
        decode_threads=options.decode_threads or max(1, min(8, cpus // workers)),
        skip_unreadable=options.skip_unreadable,
    )
    pose = RTMPoseModel(model_path, options.device, settings.threads)  # checks the model; reused in-process
    # What the results depend on (compared between runs); file names are informative only.
    fingerprint = {
        "tool": "star pose",
        "pose_model_sha256": _file_digest(model_path),
        "input_size": list(pose.input_hw),
        "detector": None if not detector else {"name": detector, "sha256": _file_digest(cast(Path, det_path))},
        "box": "best detector box" if detector else "whole frame",
        "dtype": options.dtype,
    }
    plan = _plan(index, fingerprint, options.shard_size)
    plan["models"] = {
        "pose": _model_name(model, model_path),
        "detector": _model_name(det_model or DEFAULT_DET_MODEL, det_path) if detector else None,
    }

    det = YOLOXDetector(det_path, options.device, settings.threads) if detector else None  # checked before any work
    work = out / WORK_DIR
    all_shards = plan_shards({s: v["num_frames"] for s, v in plan["splits"].items()}, options.shard_size)
    mine = select_part(all_shards, *part) if part else all_shards
    # --force discards every part's work: it holds the whole store, as a full run does.
    with pose_run_lock(out, work, None if options.force else part):
        run = _extract_locked(data, index, options, plan, settings, pose, det, mine, on_shard_done)
    run.seconds = time.perf_counter() - t0
    return run


def _extract_locked(
    data: Any,
    index: Mapping[str, Any],
    options: PoseOptions,
    plan: dict,
    settings: PoseSettings,
    pose: RTMPoseModel,
    det: YOLOXDetector | None,
    mine: list[Shard],
    on_shard_done: Callable[[str], None] | None,
) -> PoseRun:
    """The body of :func:`extract_keypoints`, run while holding the output folder's lock
    (``options.out`` resolved)."""
    out, part, workers = Path(options.out), options.part, options.workers  # type: ignore[arg-type]
    work = out / WORK_DIR
    shard_dir = work / SHARD_DIR
    n_frames = sum(len(s) for s in mine)
    if options.force:
        shutil.rmtree(shard_dir, ignore_errors=True)
        shutil.rmtree(work / STAGING_DIR, ignore_errors=True)
        (work / PLAN_FILE).unlink(missing_ok=True)
    elif not (work / PLAN_FILE).exists() and _store_matches(out, plan):
        return PoseRun(
            out=out,
            frames=n_frames,
            frames_computed=0,
            shards=len(mine),
            shards_skipped=len(mine),
            shards_computed=0,
            seconds=0.0,
            complete=True,
            part=part,
            up_to_date=True,
        )

    shard_dir.mkdir(parents=True, exist_ok=True)
    if part is None:  # no other run writes here now: temporaries of killed runs are garbage
        remove_stale_temporaries(shard_dir)
        remove_stale_temporaries(work)
    old = read_json(work / PLAN_FILE)
    if old is None:
        atomic_write(work / PLAN_FILE, lambda f: json.dump(plan, f, indent=2), "w", durable=True)
    elif {k: v for k, v in old.items() if k != "models"} != {k: v for k, v in plan.items() if k != "models"}:
        raise PoseError(
            f"{work} holds an unfinished run with other settings ({_describe_difference(old, plan)} differ); "
            "rerun it with the same settings, or pass --force (force=True) to discard it"
        )

    pending = [s for s in mine if not (shard_dir / f"{s.name}.npy").is_file()]
    unreadable = _check_frames(index, pending, settings.skip_unreadable)
    if 1 < workers and len(pending) < workers:  # a shard is one worker's task
        warnings.warn(
            f"{workers} workers but {len(pending)} shard(s) to compute: {workers - len(pending)} worker(s) "
            "will idle (a smaller --shard-size makes more shards)",
            PoseWarning,
            stacklevel=3,
        )
    todo = sum(len(s) for s in pending)
    computed = 0
    bad: list[str] = []
    if pending:
        desc = f"pose {part[0]}/{part[1]}" if part else "pose"
        with frame_progress(todo, desc, enabled=options.progress) as advance:
            if workers == 1:
                with FrameExtractor(settings, pose, det) as fx:
                    for sh in pending:
                        rows, b = fx(index[sh.split].paths[sh.start : sh.stop], progress=advance)

                        def save_rows(f: Any, rows: np.ndarray = rows) -> None:
                            np.save(f, rows)

                        atomic_write(shard_dir / f"{sh.name}.npy", save_rows, durable=True)
                        bad += b
                        computed += 1
                        if on_shard_done is not None:
                            on_shard_done(sh.name)
            else:
                del pose, det  # each worker builds its own sessions
                bad += run_pool(settings, workers, index, pending, shard_dir, advance, on_shard_done)
                computed = len(pending)
    for p in sorted(set(bad) - set(unreadable)) + unreadable:
        warnings.warn(f"frame {p} is unreadable: stored with conf 0", PoseWarning, stacklevel=3)
    complete = False
    if part is None:
        merge_locked(data, index, out)
        complete = True
    return PoseRun(
        out=out,
        frames=n_frames,
        frames_computed=todo,
        shards=len(mine),
        shards_skipped=len(mine) - len(pending),
        shards_computed=computed,
        seconds=0.0,
        complete=complete,
        part=part,
        unreadable=sorted(set(bad) | set(unreadable)),
    )
