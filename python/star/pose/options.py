"""What a ``star pose`` run is asked to do: :class:`PoseOptions`, built once (the CLI builds it
from its arguments) and handed to ``extract_keypoints``, which passes it down unchanged.

Building one checks every option (``PoseSettingsError`` naming it), so a bad value fails
before a model is loaded or a frame is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import PoseSettingsError
from .frames import DEFAULT_BATCH
from .shards import parse_shard_spec
from .weights import DEFAULT_POSE_MODEL

__all__ = ["DEFAULT_SHARD_SIZE", "DETECTORS", "STORE_DTYPES", "PoseOptions"]

DEFAULT_SHARD_SIZE = 1024
DETECTORS = ("yolox",)
STORE_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class PoseOptions:
    """The options of one keypoint extraction (docs/pose.md; ``star pose --help`` names them alike).

    ``out``: the store directory (None: ``<data.root>/keypoints``); ``model``: pose weights
    (path, known name or rtmlib URL; see ``star.pose.resolve_model``); ``detector="yolox"``
    with ``det_model`` runs YOLOX first (None: the whole frame is the box). ``batch`` frames
    per inference call (models with a fixed batch axis get their own batch size), ``workers``
    processes (each with ``threads`` onnxruntime threads and ``decode_threads`` decoding
    threads; None shares the CPUs), ``shard=(I, N)`` or ``"I/N"`` computes only part I of N
    and leaves merging to ``merge_shards``; ``shard_size`` frames per shard file; ``dtype``
    of the store; ``skip_unreadable``: missing/undecodable frames get conf 0 and a warning
    instead of an error; ``force``: discard ``<out>/.pose-work`` and recompute everything;
    ``progress``: a progress bar.
    """

    out: str | os.PathLike[str] | None = None
    model: str | os.PathLike[str] = DEFAULT_POSE_MODEL
    detector: str | None = None
    det_model: str | os.PathLike[str] | None = None
    batch: int = DEFAULT_BATCH
    workers: int = 1
    shard: str | tuple[int, int] | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    device: str = "cpu"
    threads: int | None = None
    decode_threads: int | None = None
    dtype: str = "float16"
    skip_unreadable: bool = False
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.detector is not None and self.detector not in DETECTORS:
            raise PoseSettingsError(f"detector must be one of {DETECTORS} or None, got {self.detector!r}")
        if self.dtype not in STORE_DTYPES:
            raise PoseSettingsError(f"dtype must be float16 or float32, got {self.dtype!r}")
        if self.batch < 1 or self.workers < 1:
            raise PoseSettingsError(f"batch and workers must be >= 1, got batch={self.batch}, workers={self.workers}")
        for name, value in (("threads", self.threads), ("decode_threads", self.decode_threads)):
            if value is not None and value < 1:  # 0 or -4 would silently mean "the default"
                raise PoseSettingsError(f"{name} must be >= 1 (or left out for the default), got {value}")
        if self.shard is not None:
            parse_shard_spec(self.shard)

    @property
    def part(self) -> tuple[int, int] | None:
        """The part ``(I, N)`` of ``shard``, or None for a full run."""
        return parse_shard_spec(self.shard) if self.shard is not None else None
