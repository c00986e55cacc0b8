"""Reading the dataset's own files: annotation text lines and frame images (writes: ``star.fileio``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..fileio import not_utf8
from .errors import DataFormatError


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content; a ``DataFormatError`` naming the line and byte offset otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:  # a folder, no permission, an I/O error
        raise DataFormatError(path, None, f"cannot be read ({e.strerror or e})") from None
    try:
        # A byte-order mark (Windows editors write one) is not part of the first line.
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise DataFormatError(path, *not_utf8(raw, e)) from None


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text annotation file without line terminators."""
    return read_text(path).splitlines()


def read_frame(path: str) -> np.ndarray | None:
    """Decode a frame with OpenCV as an RGB uint8 [H, W, 3] array; ``None`` if unreadable."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
