"""The base of every error a user can fix (docs/architecture.md).

``star.cli`` prints a :class:`StarError` as one ``error:`` line; anything else is a
bug in the package and is shown with its traceback. Each package keeps its own
subclasses (``DataError``, ``ConfigError``, ``CheckpointError``, ``PoseError``...),
all derived from this one, so callers can catch one class.
"""

from __future__ import annotations

import errno
import os

__all__ = [
    "StarError",
    "DatasetBusyError",
    "OutputLockedError",
    "WriteFailedError",
    "is_environment_write_error",
    "write_failure_reason",
]


class StarError(Exception):
    """A problem with the user's input, files or settings; the message says what and where."""


class OutputLockedError(StarError):
    """Another run holds the output folder (``star.fileio.exclusive_dir_lock``)."""


class DatasetBusyError(StarError):
    """A dataset folder is being replaced while a run reads it, or read while one replaces it
    (``star.fileio.dataset_lock``)."""


class WriteFailedError(StarError, OSError):
    """Writing an output failed for a reason of the machine, not of the package (disk full,
    read-only file system, no permission); the message names the path and the reason."""

    def __init__(self, path: str | os.PathLike[str], error: OSError):
        self.path = str(path)
        super().__init__(error.errno, f"cannot write {self.path}: {write_failure_reason(error)}")

    def __str__(self) -> str:
        return self.args[1]


# errno -> the reason a user reads; these are the environment's, never the package's, fault
# Keyed by OSError.errno, which is None for an OSError raised without one (lookup then misses).
_REASONS: dict[int | None, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large for the file system",
}


def write_failure_reason(error: OSError) -> str:
    """The plain-words reason of a failed write (``no space left on the device``, ``read-only file system``...)."""
    return _REASONS.get(error.errno) or (error.strerror or str(error)).lower()


def is_environment_write_error(error: BaseException) -> bool:
    """An OSError whose cause is the machine (full, read-only, no permission), not the package."""
    return isinstance(error, OSError) and error.errno in _REASONS
