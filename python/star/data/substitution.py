"""Counting the frames ``TrackletDataset`` substituted because they could not be decoded.

A single corrupt JPEG should not stop a week-long training (it is replaced, with a
warning), but a dataset of garbage must not train and evaluate to a plausible-looking
number either. Each item of ``TrackletDataset`` carries how many of its sampled frames
were substituted and which files; ``FrameSubstitutions`` adds them up over one part of a
run (a training epoch, an evaluation) and stops with :class:`TooManySubstitutedFramesError`
once more than ``max_fraction`` of that part's frames were substituted: at once when the
count already exceeds the allowance of the whole part, else when the part ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import DataError

# Keys of a TrackletDataset item (and of a collated batch).
SUBSTITUTED = "substituted"  # int: sampled frames replaced by a neighbour or a black frame
SUBSTITUTED_FILES = "substituted_files"  # str: the unreadable files, one per line ("" for none)
FIRST_FILES = 5  # unreadable files named in the error and the summary


class TooManySubstitutedFramesError(DataError):
    """More than the allowed fraction of frames could not be decoded (``data.max_substituted_fraction``)."""


class FrameSubstitutions:
    """The substituted frames of one part of a run (``what``: ``"epoch 3"``, ``"evaluation"``)."""

    def __init__(self, what: str, max_fraction: float, expected_frames: int | None = None):
        self.what = what
        self.max_fraction = max_fraction
        self.expected_frames = expected_frames  # frames the whole part loads, for the early stop
        self.frames = 0
        self.substituted = 0
        self.files: list[str] = []

    def add(self, batch: Mapping[str, Any]) -> None:
        """Count a collated batch (``frames`` [B, T, ...]); raise as soon as the allowance of
        the whole part (``expected_frames``) is exceeded."""
        shape = batch["frames"].shape
        self.frames += int(shape[0]) * int(shape[1])
        count = int(batch[SUBSTITUTED].sum()) if SUBSTITUTED in batch else 0
        if not count:
            return
        self.substituted += count
        for joined in batch[SUBSTITUTED_FILES]:
            for name in joined.splitlines():
                if len(self.files) < FIRST_FILES and name not in self.files:
                    self.files.append(name)
        if self.expected_frames is not None and self.substituted > self.max_fraction * self.expected_frames:
            raise self.error(f"{self.frames} of the {self.expected_frames} frames read so far")

    def check(self) -> None:
        """At the end of the part: raise when more than ``max_fraction`` of its frames were substituted."""
        if self.frames and self.substituted > self.max_fraction * self.frames:
            raise self.error(f"the {self.frames} frames read")

    def error(self, among: str) -> TooManySubstitutedFramesError:
        return TooManySubstitutedFramesError(
            f"{self.what}: {self.substituted} frames could not be decoded and were substituted, among {among} "
            f"(the limit data.max_substituted_fraction is {self.max_fraction:.2%}); first unreadable files: "
            f"{', '.join(self.files)}; check the dataset with `star check-data --decode`"
        )

    def summary(self) -> str:
        """``3 of 2880 frames substituted (unreadable: a.jpg, ...)``, or ``no frame substituted``."""
        if not self.substituted:
            return f"no frame substituted (of {self.frames})"
        return (
            f"{self.substituted} of {self.frames} frames substituted "
            f"(unreadable: {', '.join(self.files)}{', ...' if self.substituted > len(self.files) else ''})"
        )
