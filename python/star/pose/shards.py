"""The shard plan of ``star pose``: which rows of which split each shard file holds, the
``--shard I/N`` parts, and the work folder's layout (shared by extraction and merging)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PoseSettingsError

WORK_DIR = ".pose-work"
PLAN_FILE = "plan.json"
SHARD_DIR = "shards"
STAGING_DIR = "store"


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of one split's frame index."""

    split: str
    number: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.split}-{self.number:06d}"

    def __len__(self) -> int:
        return self.stop - self.start


def plan_shards(sizes: Mapping[str, int], shard_size: int) -> list[Shard]:
    """All shards, split by split in the given order, ``shard_size`` frames each (the last one shorter)."""
    if shard_size < 1:
        raise PoseSettingsError(f"shard_size must be >= 1, got {shard_size}")
    return [
        Shard(split, k, start, min(start + shard_size, n))
        for split, n in sizes.items()
        for k, start in enumerate(range(0, n, shard_size))
    ]


def parse_shard_spec(spec: str | tuple[int, int]) -> tuple[int, int]:
    """``"I/N"`` (0 <= I < N, e.g. ``$SLURM_ARRAY_TASK_ID/8`` with ``--array=0-7``) -> (I, N)."""
    if isinstance(spec, tuple):
        i, n = spec
    else:
        try:
            i_text, n_text = str(spec).split("/")
            i, n = int(i_text), int(n_text)
        except ValueError:
            raise PoseSettingsError(f"--shard must be I/N with integers 0 <= I < N (e.g. 0/4), got {spec!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise PoseSettingsError(f"--shard I/N needs 0 <= I < N, got {i}/{n} (parts are numbered from 0)")
    return i, n


def select_part(shards: Sequence[Shard], part: int, parts: int) -> list[Shard]:
    """Part ``part`` of ``parts``: a contiguous run of shards (parts differ in size by at most one shard)."""
    g = len(shards)
    return list(shards[part * g // parts : (part + 1) * g // parts])


def frame_lists(data: Any) -> dict[str, Any]:
    index = getattr(data, "frame_index", data)
    if not isinstance(index, Mapping) or not index:
        raise TypeError("data must be a star.data.VideoReidData or a mapping split -> FrameIndex")
    return dict(index)


def read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
