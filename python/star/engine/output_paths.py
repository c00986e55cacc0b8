"""Output paths of eval / extract / visrank, checked before any long work.

A path the user gives for an output file may be an existing folder, or lie under
something that is a file; a folder may be a file already or not writable. Each of
those is an :class:`OutputPathError` naming the path and what is wrong, raised before
a model is loaded or features are extracted (not an ``IsADirectoryError`` after it).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StarError

__all__ = ["OutputPathError", "OutputNotAFolderError", "OutputNotWritableError", "check_output_file", "check_output_dir", "prepare_output_file", "prepare_output_dir"]


class OutputPathError(StarError, OSError):
    """An output path that cannot be written; the message names it."""


class OutputNotAFolderError(OutputPathError, NotADirectoryError):
    """An output folder (or a folder above an output file) is an existing file."""


class OutputNotWritableError(OutputPathError, PermissionError):
    """An output folder (or the nearest existing folder above it) is not writable."""


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` can become the output file ``what`` (e.g. ``"features file"``): not a folder, and
    its folder exists writable or can be created. Creates nothing (a command that fails
    later leaves no empty folders behind)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"the {what} {path} is an existing folder, not a file")
    _check_folder(path.parent, what, path)
    return path


def check_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` can become the output folder ``what``: a writable folder, or creatable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputNotAFolderError(f"the {what} {path} exists and is a file, not a folder")
    _check_folder(path, what, path)
    return path


def prepare_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """``check_output_file``, then its folder created (with parents): ready to write."""
    path = check_output_file(path, what)
    _make_folder(path.parent, what, path)
    return path


def prepare_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``check_output_dir``, then the folder created (with parents)."""
    path = check_output_dir(path, what)
    _make_folder(path, what, path)
    return path


def _check_folder(folder: Path, what: str, target: Path) -> None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise OutputNotAFolderError(f"cannot write the {what} {target}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputNotWritableError(f"cannot write the {what} {target}: the folder {existing} is not writable")


def _make_folder(folder: Path, what: str, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a race with another process, or a filesystem that refuses
        raise OutputPathError(f"cannot create the folder {folder} for the {what} {target}: {exc}") from None
