"""Small file helpers: annotation text lines, atomic writes, frame decoding."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .errors import DataFormatError


def read_lines(path: str | Path) -> list[str]:
    """Lines of a text annotation file without line terminators (``DataFormatError`` if unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DataFormatError(path, None, f"not a UTF-8 text file ({e})") from None


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through ``write(fileobj)`` into a temporary file, then rename it into place."""
    path = Path(path)
    # A plain open() (not mkstemp) so the file gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_frame(path: str) -> np.ndarray | None:
    """Decode a frame with OpenCV as an RGB uint8 [H, W, 3] array; ``None`` if unreadable."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
