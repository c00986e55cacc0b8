"""Rank-list pictures (SPEC §6): a query tracklet strip above its top-k gallery strips.

Each picture is one query. Row 0 is the query strip (blue border); rows 1..k the
gallery tracklets ranked by cosine similarity, with a green border when the pid
matches the query's and red otherwise. A strip shows ``num_frames`` frames of the
tracklet (the test sampling rule), the modality tag (IR / RGB) in its corner, and
the COCO-17 skeleton from the keypoint store drawn on every frame. A label panel on
the left of each row gives the rank, pid, camera and similarity.

The ranking follows the evaluation rule of the protocol: for HITSZ-VCM, gallery
items with the query's pid and camera are left out; for BUPTCampus, a mode
``A->B`` ranks the modality-B gallery tracklets for the modality-A queries, without
camera filter. Only queries with at least one positive left are drawn, spread evenly
over the query set (deterministic).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..data.fileio import read_frame
from ..data.keypoint_store import KeypointStore
from ..data.sampling import sample_frame_indices
from ..data.skeleton import COCO17_BONES, COCO17_KEYPOINTS
from ..data.tracklet import INFRARED, VISIBLE, Tracklet, VideoReidData
from .features import Features

__all__ = ["write_rank_lists", "rank_list_size", "MODE_MODALITIES", "QUERY_COLOR", "MATCH_COLOR", "MISMATCH_COLOR"]

# Layout (pixels). Colours are RGB.
BORDER = 4  # coloured border around every strip
SEP = 2  # between the frames of a strip
ROW_GAP = 6  # between gallery rows
QUERY_GAP = 14  # below the query row
LABEL_WIDTH = 92  # text panel left of every strip
QUERY_COLOR = (40, 90, 230)
MATCH_COLOR = (0, 200, 0)
MISMATCH_COLOR = (230, 0, 0)
BACKGROUND = (255, 255, 255)
MISSING_FRAME = (128, 128, 128)
KEYPOINT_CONF = 0.2  # keypoints below this confidence are not drawn

MODE_MODALITIES = {"IR->RGB": (INFRARED, VISIBLE), "RGB->IR": (VISIBLE, INFRARED),
                   "RGB->RGB": (VISIBLE, VISIBLE), "IR->IR": (INFRARED, INFRARED)}
_MOD_TAG = {INFRARED: "IR", VISIBLE: "RGB"}


def _side(name: str) -> str:
    return "left" if name.startswith("left_") else "right" if name.startswith("right_") else "centre"


_SIDE_COLOR = {"left": (255, 150, 0), "right": (0, 170, 255), "centre": (255, 230, 0)}
_BONE_COLORS = [
    _SIDE_COLOR[_side(COCO17_KEYPOINTS[i])] if _side(COCO17_KEYPOINTS[i]) == _side(COCO17_KEYPOINTS[j])
    else _SIDE_COLOR["centre"]
    for i, j in COCO17_BONES
]


def rank_list_size(num_rows: int, num_frames: int, height: int, width: int) -> tuple[int, int]:
    """(height, width) in pixels of a picture with ``num_rows`` strips (query + gallery rows)."""
    strip_h = height + 2 * BORDER
    strip_w = num_frames * width + (num_frames - 1) * SEP + 2 * BORDER
    gaps = (QUERY_GAP + (num_rows - 2) * ROW_GAP) if num_rows > 1 else 0
    return num_rows * strip_h + gaps, LABEL_WIDTH + strip_w


def _draw_skeleton(img: np.ndarray, kp: np.ndarray) -> None:
    h, w = img.shape[:2]
    visible = (kp[:, 2] > KEYPOINT_CONF) & (kp[:, 0] >= 0) & (kp[:, 0] <= 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= 1)
    pts = [(int(round(x * w - 0.5)), int(round(y * h - 0.5))) for x, y in kp[:, :2].tolist()]
    for (i, j), color in zip(COCO17_BONES, _BONE_COLORS):
        if visible[i] and visible[j]:
            cv2.line(img, pts[i], pts[j], color, 1, cv2.LINE_AA)
    for k in np.flatnonzero(visible).tolist():
        cv2.circle(img, pts[k], 1, (255, 255, 255), -1, cv2.LINE_AA)


def _strip(
    t: Tracklet, keypoints: Optional[KeypointStore], color, num_frames: int, height: int, width: int
) -> np.ndarray:
    """RGB uint8 strip of ``t``: sampled frames side by side, skeletons, coloured border, modality tag."""
    positions = sample_frame_indices(len(t), num_frames, train=False)
    kps = None
    if keypoints is not None:
        kps = keypoints.gather(t.store_split, np.asarray(t.rows, dtype=np.int64)[positions])
    h, w = rank_list_size(1, num_frames, height, width)
    strip = np.empty((h, w - LABEL_WIDTH, 3), dtype=np.uint8)
    strip[:] = color
    for k, p in enumerate(positions.tolist()):
        img = read_frame(t.paths[p])
        if img is None:
            img = np.empty((height, width, 3), np.uint8)
            img[:] = MISSING_FRAME
        elif img.shape[:2] != (height, width):
            img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        img = np.ascontiguousarray(img)
        if kps is not None:
            _draw_skeleton(img, kps[k])
        x0 = BORDER + k * (width + SEP)
        strip[BORDER:BORDER + height, x0:x0 + width] = img
        if k + 1 < num_frames:
            strip[BORDER:BORDER + height, x0 + width:x0 + width + SEP] = (40, 40, 40)
    tag = _MOD_TAG.get(t.modality, str(t.modality))
    (tw, th), base = cv2.getTextSize(tag, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
    cv2.rectangle(strip, (BORDER, BORDER), (BORDER + tw + 4, BORDER + th + base + 3), (0, 0, 0), -1)
    cv2.putText(strip, tag, (BORDER + 2, BORDER + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                cv2.LINE_AA)
    return strip


def _label(lines: Sequence[str], height: int, color=(0, 0, 0)) -> np.ndarray:
    panel = np.empty((height, LABEL_WIDTH, 3), dtype=np.uint8)
    panel[:] = BACKGROUND
    for i, text in enumerate(lines):
        cv2.putText(panel, text, (4, 14 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return panel


def _check_aligned(features: Features, tracklets: Sequence[Tracklet], split: str) -> None:
    if len(features) != len(tracklets):
        raise ValueError(
            f"write_rank_lists: {split} features have {len(features)} rows but data.{split} has {len(tracklets)} "
            f"tracklets; pass the features extracted from data.{split} in order"
        )
    for i, t in enumerate(tracklets):
        if t.paths and features.paths[i] != t.paths[0]:
            raise ValueError(
                f"write_rank_lists: {split} feature {i} is {features.paths[i]!r} but data.{split}[{i}] starts "
                f"with {t.paths[0]!r}; the features do not belong to this dataset split"
            )


def _mode_sets(protocol: str, mode: str, data: VideoReidData, query: Features, gallery: Features):
    """(query tracklets, query features, gallery tracklets, gallery features, camera filter) of ``mode``."""
    if protocol == "hitsz-vcm":
        if mode == "IR->RGB":
            return data.query, query, data.gallery, gallery, True
        if mode == "RGB->IR":
            return data.gallery, gallery, data.query, query, True
        raise ValueError(f"protocol hitsz-vcm has modes IR->RGB and RGB->IR, not {mode!r}")
    qm, gm = MODE_MODALITIES[mode]
    qi = np.flatnonzero(np.asarray(query.modalities) == qm)
    gi = np.flatnonzero(np.asarray(gallery.modalities) == gm)
    return ([data.query[i] for i in qi], query.subset(qi), [data.gallery[i] for i in gi], gallery.subset(gi), False)


def write_rank_lists(
    data: VideoReidData,
    keypoints: Optional[KeypointStore],
    query: Features,
    gallery: Features,
    out_dir: str | Path,
    *,
    topk: int = 10,
    num_queries: int = 8,
    num_frames: int = 4,
    height: int = 128,
    width: int = 64,
    protocol: str = "auto",
    modes: Sequence[str] = ("IR->RGB",),
    image_format: str = "png",
) -> list[Path]:
    """Write one picture per query into ``out_dir`` (see the module doc); returns their paths.

    ``query`` / ``gallery`` are the features of ``data.query`` / ``data.gallery`` in
    order (as ``extract_features`` or ``evaluate`` return them). ``protocol``:
    ``auto`` / ``hitsz-vcm`` / ``bupt`` / ``bupt-official-dropped`` (drawn like
    ``bupt``); ``modes``: any of ``IR->RGB``, ``RGB->IR`` (and ``RGB->RGB``, ``IR->IR``
    for BUPTCampus). Files are ``<ir2rgb|...>_q<row>_pid<pid>.<image_format>``,
    ``<row>`` being the query's row in its split. Frames are shown at
    ``height`` x ``width``; a picture is ``rank_list_size(1 + k, num_frames, height, width)``
    pixels, ``k = min(topk, gallery items left)``.
    """
    from .evaluator import resolve_protocol

    if topk < 1 or num_queries < 0 or num_frames < 1:
        raise ValueError(f"need topk >= 1, num_queries >= 0, num_frames >= 1; got {topk}, {num_queries}, {num_frames}")
    if image_format.lower() not in ("png", "jpg", "jpeg"):
        raise ValueError(f"image_format must be png or jpg, got {image_format!r}")
    protocol = resolve_protocol(protocol, data.name)
    if protocol == "bupt-official-dropped":
        protocol = "bupt"
    _check_aligned(query, data.query, "query")
    _check_aligned(gallery, data.gallery, "gallery")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for mode in modes:
        if mode not in MODE_MODALITIES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODE_MODALITIES)}")
        q_tracks, qf, g_tracks, gf, cam_filter = _mode_sets(protocol, mode, data, query, gallery)
        if num_queries == 0 or not q_tracks or not g_tracks:
            continue
        q_rows = _query_rows(protocol, mode, query, gallery)
        # Which gallery items each query may see, and whether it has a positive left.
        same_pid = qf.pids[:, None] == gf.pids[None, :]
        allowed = ~(same_pid & (qf.camids[:, None] == gf.camids[None, :])) if cam_filter else np.ones_like(same_pid)
        candidates = np.flatnonzero((same_pid & allowed).any(axis=1))
        if len(candidates) == 0:
            continue
        spread = np.linspace(0, len(candidates) - 1, min(num_queries, len(candidates))).round().astype(int)
        pick = candidates[np.unique(spread)]
        sim = F.normalize(qf.feats[torch.from_numpy(pick)].float(), dim=1) @ F.normalize(gf.feats.float(), dim=1).T
        sim = sim.numpy().astype(np.float64)
        slug = mode.replace("->", "2").lower()
        for row, qi in zip(sim, pick.tolist()):
            valid = np.flatnonzero(allowed[qi])
            order = valid[np.argsort(-row[valid], kind="stable")][:topk]
            rows = [np.concatenate([
                _label(["query", f"pid {qf.pids[qi]}", f"cam {qf.camids[qi]}"], height + 2 * BORDER),
                _strip(q_tracks[qi], keypoints, QUERY_COLOR, num_frames, height, width),
            ], axis=1)]
            for rank, gi in enumerate(order.tolist(), 1):
                match = gf.pids[gi] == qf.pids[qi]
                rows.append(np.concatenate([
                    _label([f"rank {rank}", f"pid {gf.pids[gi]}", f"cam {gf.camids[gi]}", f"sim {row[gi]:.3f}"],
                           height + 2 * BORDER, MATCH_COLOR if match else MISMATCH_COLOR),
                    _strip(g_tracks[gi], keypoints, MATCH_COLOR if match else MISMATCH_COLOR, num_frames, height,
                           width),
                ], axis=1))
            canvas = _stack(rows)
            path = out / f"{slug}_q{int(q_rows[qi]):05d}_pid{int(qf.pids[qi])}.{image_format.lower()}"
            if not cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
                raise OSError(f"cannot write {path}")
            written.append(path)
    return written


def _query_rows(protocol: str, mode: str, query: Features, gallery: Features) -> np.ndarray:
    """Row of each mode query in its own split (for file names)."""
    if protocol == "hitsz-vcm":
        return np.arange(len(query) if mode == "IR->RGB" else len(gallery))
    return np.flatnonzero(np.asarray(query.modalities) == MODE_MODALITIES[mode][0])


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    h = sum(r.shape[0] for r in rows) + (QUERY_GAP + (len(rows) - 2) * ROW_GAP if len(rows) > 1 else 0)
    canvas = np.empty((h, rows[0].shape[1], 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    y = 0
    for i, r in enumerate(rows):
        canvas[y:y + r.shape[0]] = r
        y += r.shape[0] + (QUERY_GAP if i == 0 else ROW_GAP)
    return canvas
