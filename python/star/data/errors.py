"""Errors raised by ``star.data``.

Every error names the file (and line, for text files) it is about, so a bad
dataset fails once, clearly, before any long work starts.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import StarError


class DataError(StarError, RuntimeError):
    """Base class of every dataset / keypoint-store error."""


class DatasetLayoutError(DataError):
    """The dataset root does not have the expected layout (a path is missing)."""

    def __init__(self, missing: str | Path, expected_tree: str, what: str = "dataset"):
        self.missing = str(missing)
        super().__init__(f"{what} layout not found: missing {self.missing}\nexpected layout:\n{expected_tree.rstrip()}")


class DataFormatError(DataError):
    """A line (or entry) of an annotation file cannot be parsed or is inconsistent."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class KeypointStoreError(DataError):
    """The keypoint store is missing, malformed or not aligned with the dataset."""


class SynthConfigError(DataError, ValueError):
    """A ``SynthConfig`` setting is out of range or gives an empty split."""


class SynthOutputError(DataError, FileExistsError):
    """The synthetic dataset's output folder is a file, or holds something else."""


class EmptySplitError(DataError):
    """A split has no tracklet: its annotation file lists none, or every one is shorter than the minimum."""


class UnreadableFolderError(DataError):
    """A frame folder exists but cannot be listed (no read permission, an I/O error)."""

    def __init__(self, folder: str | Path, error: OSError, listed_at: str):
        self.folder = str(folder)
        reason = error.strerror or type(error).__name__
        super().__init__(
            f"cannot read the frame folder {self.folder}: {reason.lower()} (its frames are listed at {listed_at}); "
            "check its permissions"
        )


class MissingFramesError(DataError):
    """Frame files listed by an annotation file do not exist (found when the dataset is loaded)."""

    def __init__(self, path: str | Path, count: int, total: int, examples: list[str]):
        self.path = str(path)
        self.count = count
        shown = "".join(f"\n  {e}" for e in examples)
        more = f"\n  ... and {count - len(examples)} more" if count > len(examples) else ""
        super().__init__(f"{self.path}: {count} missing of the {total} frames listed:{shown}{more}")
