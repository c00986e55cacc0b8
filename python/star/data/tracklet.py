"""Tracklets, frame indices and the dataset container every reader returns.

Modality convention of the whole package: ``INFRARED = 0``, ``VISIBLE = 1``
(the HITSZ-VCM files use 1 = infrared, 2 = visible; the readers translate).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

INFRARED = 0
VISIBLE = 1
MODALITY_NAMES: tuple[str, str] = ("ir", "rgb")  # indexed by modality id

SPLITS: tuple[str, str, str] = ("train", "query", "gallery")


@dataclass(frozen=True)
class Tracklet:
    """One tracklet: its frames in temporal order and its labels.

    ``pid`` is the training label (0..N-1) in the train split and the dataset's own
    identity number in query/gallery. ``store_split`` and ``rows`` locate the frames
    in the dataset's frame index (and so in the keypoint store): frame ``i`` of the
    tracklet is row ``rows[i]`` of ``frame_index[store_split]``.
    """

    paths: tuple[str, ...]
    pid: int
    camid: int
    modality: int
    tid: str
    store_split: str
    rows: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class FrameIndex:
    """The ordered frame list of one keypoint-store split.

    ``keys`` are the frame identifiers written in ``<split>.index.txt`` (for HITSZ-VCM
    the lines of the name file), ``paths`` the absolute frame paths, ``source`` the
    annotation file the order comes from (for error messages).
    """

    keys: list[str]
    paths: list[str]
    source: str
    lines: Sequence[int] | None = None  # line of ``source`` holding each frame; None: not a line file

    def __len__(self) -> int:
        return len(self.keys)

    def where(self, i: int) -> str:
        """Where frame ``i`` is listed, for messages: ``line 12`` or ``frame 12``."""
        return f"line {self.lines[i]}" if self.lines is not None else f"frame {i + 1}"


@dataclass
class VideoReidData:
    """A loaded dataset: train/query/gallery tracklets plus the frame index of each store split."""

    name: str
    root: str
    train: list[Tracklet]
    query: list[Tracklet]
    gallery: list[Tracklet]
    frame_index: dict[str, FrameIndex]
    train_pid_map: dict[int, int] = field(default_factory=dict)  # dataset pid -> train label
    warnings: list[str] = field(default_factory=list)  # non-fatal annotation problems
    # What the reader dropped, for the empty-split error: the file listing each split's tracklets,
    # the minimum length applied and, per split, how many tracklets were shorter.
    sources: dict[str, str] = field(default_factory=dict)
    min_frames: int = 1
    dropped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_splits(
        cls, name: str, root, train: list[Tracklet], query: list[Tracklet], gallery: list[Tracklet], **fields
    ) -> VideoReidData:
        """What a reader returns: training pids relabelled to 0..N-1 (``train_pid_map`` keeps the
        dataset's), query and gallery pids as read; ``fields``: the other attributes."""
        train, pid_map = relabel_train(train)
        return cls(
            name=name, root=str(root), train=train, query=query, gallery=gallery, train_pid_map=pid_map, **fields
        )

    @property
    def num_train_pids(self) -> int:
        return len({t.pid for t in self.train})

    def split(self, name: str) -> list[Tracklet]:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per split: tracklets, identities, frames, and tracklets per modality."""
        return {s: split_stats(self.split(s)) for s in SPLITS}

    def fingerprint(self) -> str:
        """sha256 of what a trained model depends on, independent of where the dataset lies: per
        split, every tracklet's labels and frame paths relative to ``root``, and the byte size of
        its first frame (so that a dataset regenerated with other pixels under the same names
        differs too; one ``stat`` per tracklet, not per frame)."""
        digest = hashlib.sha256()
        for split in SPLITS:
            for t in self.split(split):
                first = _file_size(t.paths[0]) if t.paths else -1
                rel = (os.path.relpath(p, self.root) for p in t.paths)
                digest.update(f"{split}\t{t.pid}\t{t.camid}\t{t.modality}\t{first}\t{'|'.join(rel)}\n".encode())
        return digest.hexdigest()


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:  # an unreadable frame is the loader's business (it substitutes and counts)
        return -1


def split_stats(tracklets: list[Tracklet]) -> dict[str, int]:
    """Counts of one split, in the shape ``star check-data --json`` prints."""
    return {
        "tracklets": len(tracklets),
        "ids": len({t.pid for t in tracklets}),
        "frames": sum(len(t) for t in tracklets),
        "ir": sum(t.modality == INFRARED for t in tracklets),
        "rgb": sum(t.modality == VISIBLE for t in tracklets),
    }


def relabel_train(tracklets: list[Tracklet]) -> tuple[list[Tracklet], dict[int, int]]:
    """Map training identities to 0..N-1 in increasing order of the dataset's pid."""
    pid_map = {pid: label for label, pid in enumerate(sorted({t.pid for t in tracklets}))}
    return [replace(t, pid=pid_map[t.pid]) for t in tracklets], pid_map
