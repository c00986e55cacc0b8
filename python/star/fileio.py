"""File helpers shared by the whole package: atomic writes and a frame-index fingerprint.

Kept free of torch and OpenCV so that light processes (pose workers) can use it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None], mode: str = "wb", *,
                 durable: bool = False) -> Path:
    """Write ``path`` through ``write(fileobj)`` into a temporary file in the same folder, then
    rename it into place: readers see the old file or the new one, never a half-written one.

    ``durable``: also fsync the file and its folder, so the new content survives a power loss
    (checkpoints, pose shards). Text modes write UTF-8.
    """
    path = Path(path)
    # A plain open() (not mkstemp) so the file gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, *, durable: bool = False) -> Path:
    """``atomic_write`` of a UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text), "w", durable=durable)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync a folder so a rename inside it is on disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def lines_digest(lines: Iterable[str]) -> str:
    """sha256 of the lines joined by newlines: the keypoint store's frame-index fingerprint."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
