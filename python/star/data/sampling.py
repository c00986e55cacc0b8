"""Sequence sampling: which T frames of an n-frame tracklet are used (MITML's rule, docs/protocols.md)."""

from __future__ import annotations

import math

import numpy as np


def chunk_indices(n: int, num_frames: int) -> np.ndarray:
    """[num_frames, ceil(n / num_frames)] frame indices: consecutive chunks, padded with the last frame."""
    if n < 1 or num_frames < 1:
        raise ValueError(f"need n >= 1 and num_frames >= 1, got n={n}, num_frames={num_frames}")
    size = math.ceil(n / num_frames)
    idx = np.minimum(np.arange(size * num_frames), n - 1)
    return idx.reshape(num_frames, size)


def sample_frame_indices(n: int, num_frames: int, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    """The ``num_frames`` indices used from an ``n``-frame tracklet.

    Test: the first frame of every chunk. Train: one uniformly random frame of every
    chunk (``rng`` required).
    """
    chunks = chunk_indices(n, num_frames)
    if not train:
        return chunks[:, 0].copy()
    if rng is None:
        raise ValueError("training-mode sampling needs an rng")
    return chunks[np.arange(num_frames), rng.integers(0, chunks.shape[1], size=num_frames)]
