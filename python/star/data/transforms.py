"""Per-tracklet synchronised transforms that move the keypoints with the image.

Training: resize to H x W, Pad(pad) + RandomCrop(H, W), horizontal flip with
probability ``flip_prob``; one set of random parameters per tracklet, applied to all
of its frames and keypoints. Test: resize only. The recipe's Pad(10) is for 288 x 144
frames; by default the pad scales with the frame height (3 px at 96 x 48), so small
frames are not shifted by a third of their width.

Keypoint conventions: x, y normalized to [0, 1] of the frame with pixel ``k``
covering [k, k+1) (centre (k + 0.5) / W), so a resize leaves them unchanged; the
crop shifts them; the flip maps x -> 1 - x and swaps left/right joints. A keypoint
moved outside the frame by the crop keeps its (out-of-range) x, y, so bone geometry
stays consistent with the image, but gets conf 0: the image no longer shows it.
Undetected keypoints (conf 0) stay exactly (0, 0, 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .skeleton import COCO17_FLIP

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)  # the one definition (models import it)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def default_pad(height: int) -> int:
    """Pad(10) of the STAR recipe at 288-pixel frames, scaled to ``height`` (at least 1)."""
    return max(1, round(10 * height / 288))


@dataclass(frozen=True)
class CropFlip:
    """Random parameters of one tracklet: crop offset in the padded image, and flip."""

    dx: int
    dy: int
    flip: bool


class TrackletTransform:
    """Resize (+ pad/random-crop/flip when ``train``) a tracklet's frames and keypoints together."""

    def __init__(
        self, height: int = 288, width: int = 144, train: bool = True, pad: int | None = None, flip_prob: float = 0.5
    ):
        self.height, self.width, self.train = height, width, train
        self.pad = default_pad(height) if pad is None else pad
        self.flip_prob = flip_prob

    def sample(self, rng: np.random.Generator | None) -> CropFlip:
        """Draw one tracklet's parameters (the identity transform in test mode, no rng needed)."""
        if not self.train:
            return CropFlip(self.pad, self.pad, False)
        if rng is None:
            raise ValueError("a training transform needs an rng")
        return CropFlip(
            int(rng.integers(0, 2 * self.pad + 1)),
            int(rng.integers(0, 2 * self.pad + 1)),
            bool(rng.random() < self.flip_prob),
        )

    def apply_frames(self, frames: list[np.ndarray], p: CropFlip) -> np.ndarray:
        """[T, H, W, 3] uint8: every frame resized, shifted by the crop, flipped."""
        h, w = self.height, self.width
        out = np.zeros((len(frames), h, w, 3), dtype=np.uint8)
        # Pad + crop == shift by (pad - offset); only the overlap needs copying. Flipping
        # first and shifting by the mirrored offset gives the same image, and cv2.flip of a
        # single frame is much cheaper than copying a reversed view of the whole stack.
        sx, sy = self.pad - p.dx, self.pad - p.dy
        if p.flip:
            sx = -sx
        x0, x1, y0, y1 = max(0, sx), min(w, w + sx), max(0, sy), min(h, h + sy)
        for t, frame in enumerate(frames):
            if frame.shape[:2] != (h, w):
                frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
            if p.flip:
                frame = cv2.flip(frame, 1)
            out[t, y0:y1, x0:x1] = frame[y0 - sy : y1 - sy, x0 - sx : x1 - sx]
        return out

    def apply_keypoints(self, keypoints: np.ndarray, p: CropFlip) -> np.ndarray:
        """[T, 17, 3] float32 keypoints moved like the frames (see the module doc)."""
        kp = np.array(keypoints, dtype=np.float32)
        detected = kp[..., 2] > 0
        kp[..., 0] += (self.pad - p.dx) / self.width
        kp[..., 1] += (self.pad - p.dy) / self.height
        if p.flip:
            kp[..., 0] = 1.0 - kp[..., 0]
            kp = kp[:, list(COCO17_FLIP)]
            detected = detected[:, list(COCO17_FLIP)]
        inside = (kp[..., 0] >= 0) & (kp[..., 0] <= 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= 1)
        kp[..., 2] = np.where(inside, kp[..., 2], 0.0)
        kp[~detected] = 0.0
        return kp

    def __call__(
        self, frames: list[np.ndarray], keypoints: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        p = self.sample(rng)
        return self.apply_frames(frames, p), self.apply_keypoints(keypoints, p)


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] RGB -> float32 ImageNet-normalized (run it on the GPU after transfer)."""
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(3, 1, 1)
    return (frames.float() / 255.0 - mean) / std
