"""BUPTCampus reader (AuxNet release, docs/protocols.md).

``data_paths.json`` maps pid -> modality -> camera -> tracklet id -> frame paths
relative to ``DATA/``. Split files hold ``pid modality camera tid`` per line; the
modality ``RGB/IR`` (training files) names an aligned pair and yields two tracklets,
one per modality, sharing pid, camera and tid. Query and gallery hold single
``RGB`` or ``IR`` tracklets of both modalities (the evaluation picks directions).

The keypoint store has one split, ``all``: every RGB and IR frame of
``data_paths.json`` in file order (FakeIR frames are not indexed).
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import DataFormatError, DatasetLayoutError
from .source_files import read_lines, read_text
from .tracklet import INFRARED, VISIBLE, FrameIndex, Tracklet, VideoReidData

BUPT_TREE = """\
<root>/
  DATA/<pid>/{RGB,IR,FakeIR}/<cam>/<pid>_<RGB|IR>_<cam>_<tid>_<frame>.jpg
  data_paths.json  train.txt  train_auxiliary.txt  query.txt  gallery.txt
"""
BUPT_CAMERAS: tuple[str, ...] = ("LS3", "G25", "CQ1", "W4", "TSG1", "TSG2")  # camera name -> id = position
STORE_SPLIT = "all"
_MODALITIES = {"IR": INFRARED, "RGB": VISIBLE}
_PAIR = "RGB/IR"

TrackKey = tuple[str, str, str, str]  # (pid, modality, camera, tid) as written in the files


def _load_paths_json(path: Path, data_dir: Path) -> tuple[FrameIndex, dict[TrackKey, tuple[int, int]]]:
    """Frame index of every RGB/IR frame plus the [start, end) row span of each tracklet."""
    try:
        tree = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON: {e.msg}") from None
    keys: list[str] = []
    spans: dict[TrackKey, tuple[int, int]] = {}
    try:
        for pid, by_mod in tree.items():
            for mod, by_cam in by_mod.items():
                if mod not in _MODALITIES:
                    continue
                for cam, by_tid in by_cam.items():
                    for tid, frames in by_tid.items():
                        if not isinstance(frames, list) or not all(isinstance(x, str) for x in frames):
                            raise TypeError(f"entry {pid}/{mod}/{cam}/{tid} is not a list of frame paths")
                        spans[(pid, mod, cam, tid)] = (len(keys), len(keys) + len(frames))
                        keys.extend(frames)
    except (AttributeError, TypeError) as e:
        detail = str(e) if isinstance(e, TypeError) else "a level is not an object"
        raise DataFormatError(
            path, None, f"expected pid -> modality -> camera -> tracklet -> [frame paths]: {detail}"
        ) from None
    base = str(data_dir)
    return FrameIndex(keys=keys, paths=[f"{base}/{k}" for k in keys], source=str(path)), spans


def _read_split(
    path: Path, index: FrameIndex, spans: dict[TrackKey, tuple[int, int]], min_frames: int
) -> tuple[list[Tracklet], int]:
    """Tracklets of one split file (a ``RGB/IR`` line gives the IR then the RGB tracklet) and how
    many were shorter than ``min_frames`` (or empty)."""
    out, dropped = [], 0
    first_line: dict[tuple[str, str, str, str], int] = {}  # tracklet -> the line that listed it
    for lineno, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4:
            raise DataFormatError(path, lineno, f"expected 'pid modality camera tid', got {line.strip()!r}")
        pid, mod, cam, tid = fields
        if not pid.isdigit():
            raise DataFormatError(path, lineno, f"pid must be an integer, got {pid!r}")
        if cam not in BUPT_CAMERAS:
            raise DataFormatError(path, lineno, f"unknown camera {cam!r}; expected one of {', '.join(BUPT_CAMERAS)}")
        mods = ("IR", "RGB") if mod == _PAIR else (mod,)
        for m in mods:
            if m not in _MODALITIES:
                raise DataFormatError(path, lineno, f"modality must be RGB, IR or RGB/IR, got {mod!r}")
            span = spans.get((pid, m, cam, tid))
            if span is None:
                raise DataFormatError(path, lineno, f"tracklet {pid}/{m}/{cam}/{tid} is not in data_paths.json")
            if (pid, m, cam, tid) in first_line:  # a duplicated line would count a tracklet twice
                raise DataFormatError(
                    path,
                    lineno,
                    f"tracklet {pid}/{m}/{cam}/{tid} is already listed on line "
                    f"{first_line[pid, m, cam, tid]}: duplicated row",
                )
            first_line[pid, m, cam, tid] = lineno
            start, end = span
            if end - start < max(min_frames, 1):
                dropped += 1
                continue
            out.append(
                Tracklet(
                    tuple(index.paths[start:end]),
                    int(pid),
                    BUPT_CAMERAS.index(cam),
                    _MODALITIES[m],
                    tid,
                    STORE_SPLIT,
                    tuple(range(start, end)),
                )
            )
    return out, dropped


def read_bupt(root: str | Path, auxiliary: bool = False, min_frames: int = 0) -> VideoReidData:
    """Read BUPTCampus into train (aligned RGB/IR pairs) / query / gallery tracklets.

    ``auxiliary=True`` adds ``train_auxiliary.txt`` to the training set. Nothing is
    dropped by default (``min_frames=0``); empty tracklets are always skipped.
    """
    root = Path(root)
    split_files = {
        "train": ["train.txt", *(["train_auxiliary.txt"] if auxiliary else [])],
        "query": ["query.txt"],
        "gallery": ["gallery.txt"],
    }
    if not root.is_dir():
        raise DatasetLayoutError(root, BUPT_TREE, "BUPTCampus")
    if not (root / "DATA").is_dir():
        raise DatasetLayoutError(root / "DATA", BUPT_TREE, "BUPTCampus")
    for f in ["data_paths.json", *(f for files in split_files.values() for f in files)]:
        if not (root / f).is_file():
            raise DatasetLayoutError(root / f, BUPT_TREE, "BUPTCampus")

    index, spans = _load_paths_json(root / "data_paths.json", root / "DATA")
    splits, dropped = {}, {}
    for split, files in split_files.items():
        read = [_read_split(root / f, index, spans, min_frames) for f in files]
        splits[split] = [t for tracklets, _ in read for t in tracklets]
        dropped[split] = sum(n for _, n in read)
    return VideoReidData.from_splits(
        "bupt",
        root,
        **splits,
        frame_index={STORE_SPLIT: index},
        sources={split: " + ".join(str(root / f) for f in files) for split, files in split_files.items()},
        min_frames=max(min_frames, 1),
        dropped=dropped,
    )
