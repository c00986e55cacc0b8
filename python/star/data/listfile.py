"""Generic list-file dataset: bring your own data.

``<root>/train.txt``, ``<root>/query.txt`` and ``<root>/gallery.txt`` each hold one
frame per line::

    path pid camid modality tracklet

``path`` is relative to ``<root>`` (or absolute; it may contain spaces), ``pid`` and
``camid`` are integers, ``modality`` is ``ir``/``infrared``/``0`` or
``rgb``/``visible``/``1``, and ``tracklet`` any token. The frames of one tracklet are
the lines sharing (pid, camid, modality, tracklet), in file order. Blank lines and
lines starting with ``#`` are ignored. Each file is its own keypoint-store split
(``train``/``query``/``gallery``), indexed by its frame lines in order.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataFormatError, DatasetLayoutError
from .source_files import read_lines
from .tracklet import INFRARED, SPLITS, VISIBLE, FrameIndex, Tracklet, VideoReidData

LIST_TREE = """\
<root>/
  train.txt  query.txt  gallery.txt      one frame per line: path pid camid modality tracklet
  <frames, at the paths listed (relative to <root> or absolute)>
"""
_MODALITY_TOKENS = {
    "ir": INFRARED,
    "infrared": INFRARED,
    "0": INFRARED,
    "rgb": VISIBLE,
    "visible": VISIBLE,
    "1": VISIBLE,
}


def _read_list(path: Path, root: Path, split: str, min_frames: int) -> tuple[list[Tracklet], FrameIndex, int]:
    """The tracklets of one list file, its frame index, and how many tracklets were too short."""
    keys: list[str] = []
    lines: list[int] = []
    groups: dict[tuple[int, int, int, str], list[int]] = {}
    for lineno, line in enumerate(read_lines(path), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.rsplit(None, 4)
        if len(fields) != 5:
            raise DataFormatError(path, lineno, f"expected 'path pid camid modality tracklet', got {text!r}")
        frame, pid, cam, mod, tid = fields
        try:
            key = (int(pid), int(cam), _MODALITY_TOKENS[mod.lower()], tid)
        except ValueError:
            raise DataFormatError(path, lineno, f"pid and camid must be integers, got {pid!r} {cam!r}") from None
        except KeyError:
            raise DataFormatError(
                path, lineno, f"modality must be ir/infrared/0 or rgb/visible/1, got {mod!r}"
            ) from None
        groups.setdefault(key, []).append(len(keys))
        keys.append(frame)
        lines.append(lineno)
    # Path resolution keeps absolute paths as they are; relative ones are under root.
    index = FrameIndex(keys=keys, paths=[str(root / k) for k in keys], source=str(path), lines=lines)
    tracklets = [
        Tracklet(tuple(index.paths[r] for r in rows), pid, cam, mod, tid, split, tuple(rows))
        for (pid, cam, mod, tid), rows in groups.items()
        if len(rows) >= min_frames
    ]
    return tracklets, index, len(groups) - len(tracklets)


def read_list_dataset(root: str | Path, min_frames: int = 1) -> VideoReidData:
    """Read ``train.txt``/``query.txt``/``gallery.txt`` under ``root`` (train pids relabelled to 0..N-1)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(root, LIST_TREE, "list-file dataset")
    splits, index, dropped = {}, {}, {}
    for split in SPLITS:
        path = root / f"{split}.txt"
        if not path.is_file():
            raise DatasetLayoutError(path, LIST_TREE, "list-file dataset")
        splits[split], index[split], dropped[split] = _read_list(path, root, split, min_frames)
    return VideoReidData.from_splits(
        "list",
        root,
        **splits,
        frame_index=index,
        sources={split: str(root / f"{split}.txt") for split in SPLITS},
        min_frames=min_frames,
        dropped=dropped,
    )
