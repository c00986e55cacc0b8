"""Errors raised by ``star.pose`` (each names the file, model or shard it is about)."""

from __future__ import annotations

from ..errors import StarError


class PoseError(StarError, RuntimeError):
    """Pose extraction cannot go on: bad frame, missing shards, settings that contradict a run in progress."""


class PoseSettingsError(PoseError, ValueError):
    """A setting of ``extract_keypoints`` / ``star pose`` is invalid (``--shard``, ``--batch``, ...)."""


class ModelNotFoundError(PoseError, FileNotFoundError):
    """The pose or detector weights are neither at the given path nor in rtmlib's cache."""


class UnreadableFrameError(PoseError):
    """A frame file is missing or cannot be decoded."""

    def __init__(self, path: str, reason: str = "cannot be read or decoded"):
        self.path = path
        self.reason = reason
        super().__init__(f"frame {path}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.reason))
