"""The base of every error a user can fix (SPEC §1).

``star.cli`` prints a :class:`StarError` as one ``error:`` line; anything else is a
bug in the package and is shown with its traceback. Each package keeps its own
subclasses (``DataError``, ``ConfigError``, ``CheckpointError``, ``PoseError``...),
all derived from this one, so callers can catch one class.
"""

from __future__ import annotations

__all__ = ["StarError", "OutputLockedError"]


class StarError(Exception):
    """A problem with the user's input, files or settings; the message says what and where."""


class OutputLockedError(StarError):
    """Another run holds the output folder (``star.fileio.exclusive_dir_lock``)."""
