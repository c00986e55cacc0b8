"""Small file helpers of the readers: annotation text lines, frame decoding (atomic writes: ``star.fileio``)."""

from __future__ import annotations

from pathlib import Path

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


def read_frame(path: str) -> np.ndarray | None:
    """Decode a frame with OpenCV as an RGB uint8 [H, W, 3] array; ``None`` if unreadable."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
