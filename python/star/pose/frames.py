"""Per-frame work of ``star pose``: decode, warp / letterbox, batched inference, store rows.

:class:`FrameExtractor` turns a list of frame files into keypoint-store rows; decoding and
the affine warp run in threads (OpenCV releases the GIL) ahead of the batched inference.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import UnreadableFrameError
from .runtime import NUM_COCO_KEYPOINTS, RTMPoseModel, YOLOXDetector, to_store

DEFAULT_BATCH = 32


@dataclass(frozen=True)
class PoseSettings:
    """What a (worker) process needs to build its models: resolved weights and run options."""

    model_path: str
    det_path: str | None = None
    device: str = "cpu"
    batch: int = DEFAULT_BATCH
    threads: int | None = None  # onnxruntime intra-op threads (None: onnxruntime's default)
    decode_threads: int = 2
    skip_unreadable: bool = False


def read_frame_bgr(path: str) -> np.ndarray | None:
    """The frame as OpenCV/rtmlib read it (BGR uint8 [H, W, 3]); None when missing or undecodable."""
    return cv2.imread(path, cv2.IMREAD_COLOR)


class FrameExtractor:
    """Store rows for lists of frame files: decoding + warping in threads, overlapped with batched inference."""

    def __init__(self, settings: PoseSettings, pose: RTMPoseModel | None = None, detector: YOLOXDetector | None = None):
        self.settings = settings
        self.pose = pose or RTMPoseModel(settings.model_path, settings.device, settings.threads)
        self.detector = detector or (
            YOLOXDetector(settings.det_path, settings.device, settings.threads) if settings.det_path else None
        )
        self.batch = max(1, int(settings.batch))
        self.pool = cf.ThreadPoolExecutor(max(1, settings.decode_threads), thread_name_prefix="star-pose-decode")
        self.depth = max(1, settings.decode_threads) + 1  # batches being decoded ahead of inference

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FrameExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self, path: str, bad: list[str]) -> np.ndarray | None:
        img = read_frame_bgr(path)
        if img is None:
            if not self.settings.skip_unreadable:
                reason = "does not exist" if not os.path.exists(path) else "cannot be decoded (corrupt or not an image)"
                raise UnreadableFrameError(path, reason)
            bad.append(path)
        return img

    def _load(self, paths: Sequence[str]) -> dict:
        n = len(paths)
        bad: list[str] = []
        ok = np.ones(n, bool)
        sizes = np.ones((n, 2), np.float64)
        if self.detector is not None:
            det_in = self.detector.new_batch(n)
            ratios = [1.0] * n  # Python floats, as rtmlib (a float64 scalar would promote float32 boxes)
            images: list[np.ndarray | None] = []
            for i, p in enumerate(paths):
                img = self._read(p, bad)
                images.append(img)
                if img is None:
                    ok[i] = False
                    det_in[i] = 0
                    continue
                sizes[i] = (img.shape[1], img.shape[0])
                ratios[i] = self.detector.prepare(img, det_in[i])
            return dict(det_in=det_in, ratios=ratios, images=images, ok=ok, sizes=sizes, bad=bad)
        x = self.pose.new_batch(n)
        centers = np.zeros((n, 2), np.float64)
        scales = np.ones((n, 2), np.float64)
        for i, p in enumerate(paths):
            img = self._read(p, bad)
            if img is None:
                ok[i] = False
                x[i] = 0
                continue
            h, w = img.shape[:2]
            sizes[i] = (w, h)
            centers[i], scales[i] = self.pose.prepare(img, np.array([0, 0, w, h]), x[i])
        return dict(x=x, centers=centers, scales=scales, ok=ok, sizes=sizes, bad=bad)

    def _infer(self, b: dict) -> np.ndarray:
        ok, sizes = b["ok"], b["sizes"]
        rows = np.zeros((len(ok), NUM_COCO_KEYPOINTS, 3), np.float32)
        if self.detector is not None:
            outputs = self.detector.infer(b["det_in"], self.batch)
            boxes = [self.detector.best_box(outputs[i], b["ratios"][i]) if ok[i] else None for i in range(len(ok))]
            have = [i for i, box in enumerate(boxes) if box is not None]
            if not have:
                return rows
            x = self.pose.new_batch(len(have))
            centers = np.zeros((len(have), 2), np.float64)
            scales = np.ones((len(have), 2), np.float64)
            for j, i in enumerate(have):
                centers[j], scales[j] = self.pose.prepare(b["images"][i], boxes[i], x[j])
            sel = np.array(have)
        else:
            x, centers, scales = b["x"], b["centers"], b["scales"]
            sel = np.arange(len(ok))
        simcc_x, simcc_y = self.pose.run(x, self.batch)[:2]
        kpts, scores = self.pose.decode(simcc_x, simcc_y, centers, scales)
        rows[sel] = to_store(kpts, scores, sizes[sel, 0], sizes[sel, 1])
        rows[~ok] = 0.0
        return rows

    def __call__(
        self, paths: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """Store rows [len(paths), 17, 3] (float32) and the unreadable frames (with ``skip_unreadable``)."""
        out = np.zeros((len(paths), NUM_COCO_KEYPOINTS, 3), np.float32)
        bad: list[str] = []
        starts = list(range(0, len(paths), self.batch))
        pending: deque = deque()
        nxt = 0

        def submit() -> None:
            nonlocal nxt
            if nxt < len(starts):
                s = starts[nxt]
                pending.append((s, self.pool.submit(self._load, paths[s : s + self.batch])))
                nxt += 1

        for _ in range(self.depth):
            submit()
        try:
            while pending:
                s, fut = pending.popleft()
                b = fut.result()
                submit()
                rows = self._infer(b)
                out[s : s + len(rows)] = rows
                bad.extend(b["bad"])
                if progress is not None:
                    progress(len(rows))
        finally:
            for _, fut in pending:
                fut.cancel()
        return out, bad
