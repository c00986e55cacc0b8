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

__all__ = ["OutputPathError", "prepare_output_file", "prepare_output_dir"]


class OutputPathError(StarError, OSError):
    """An output path that cannot be written; the message names it."""


def prepare_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as the output file ``what`` (e.g. ``"features file"``): not a folder; its
    folder created (with parents) and writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"the {what} {path} is an existing folder, not a file")
    _make_folder(path.parent, what, path)
    return path


def prepare_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as the output folder ``what``: created (with parents) when missing, writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"the {what} {path} exists and is a file, not a folder")
    _make_folder(path, what, path)
    return path


def _make_folder(folder: Path, what: str, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise OutputPathError(f"cannot write the {what} {target}: {blocker} is a file, not a folder") from None
    except PermissionError:
        raise OutputPathError(f"cannot write the {what} {target}: no permission to create {folder}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write the {what} {target}: the folder {folder} is not writable")
