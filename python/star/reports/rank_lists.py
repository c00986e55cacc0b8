"""Rank-list pictures (docs/protocols.md): a query tracklet strip above its top-k gallery strips.

Each picture is one query. Row 0 is the query strip (blue border); rows 1..k the
gallery tracklets ranked by cosine similarity, with a green border when the pid
matches the query's and red otherwise. A strip shows ``num_frames`` frames of the
tracklet (the test sampling rule), the modality tag (IR / RGB) in its corner, and
the COCO-17 skeleton from the keypoint store drawn on every frame. A label panel on
the left of each row gives the rank, pid, camera and cosine similarity (with as many
decimals as it takes to tell neighbouring ranks apart, see ``similarity_labels``).

The ranking follows the protocol's modes (``star.metrics.protocols.mode_sets``): for HITSZ-VCM, gallery
items with the query's pid and camera are left out; for BUPTCampus, a mode
``A->B`` ranks the modality-B gallery tracklets for the modality-A queries, without
camera filter. Only queries with at least one positive left are drawn, spread evenly
over the query set (deterministic).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..data.keypoint_store import KeypointStore
from ..data.sampling import sample_frame_indices
from ..data.skeleton import COCO17_KEYPOINTS, COCO_BONES
from ..data.source_files import read_frame
from ..data.tracklet import INFRARED, VISIBLE, Tracklet, VideoReidData
from ..fileio import atomic_write
from ..metrics import MetricsInputError, feature_pair, mode_sets, resolve_protocol, same_pid_same_camera
from ..metrics.protocols import BUPT, BUPT_OFFICIAL_DROPPED
from ..output_paths import OutputPathError, prepare_output_dir
from .feature_files import Features

__all__ = [
    "write_rank_lists",
    "check_rank_list_options",
    "similarity_labels",
    "rank_list_size",
    "QUERY_COLOR",
    "MATCH_COLOR",
    "MISMATCH_COLOR",
]

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

_MOD_TAG = {INFRARED: "IR", VISIBLE: "RGB"}


def _side(name: str) -> str:
    return "left" if name.startswith("left_") else "right" if name.startswith("right_") else "centre"


_SIDE_COLOR = {"left": (255, 150, 0), "right": (0, 170, 255), "centre": (255, 230, 0)}
_BONE_COLORS = [
    _SIDE_COLOR[_side(COCO17_KEYPOINTS[i])]
    if _side(COCO17_KEYPOINTS[i]) == _side(COCO17_KEYPOINTS[j])
    else _SIDE_COLOR["centre"]
    for i, j in COCO_BONES
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
    for (i, j), color in zip(COCO_BONES, _BONE_COLORS, strict=False):
        if visible[i] and visible[j]:
            cv2.line(img, pts[i], pts[j], color, 1, cv2.LINE_AA)
    for k in np.flatnonzero(visible).tolist():
        cv2.circle(img, pts[k], 1, (255, 255, 255), -1, cv2.LINE_AA)


def _strip(t: Tracklet, keypoints: KeypointStore | None, color, num_frames: int, height: int, width: int) -> np.ndarray:
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
        strip[BORDER : BORDER + height, x0 : x0 + width] = img
        if k + 1 < num_frames:
            strip[BORDER : BORDER + height, x0 + width : x0 + width + SEP] = (40, 40, 40)
    tag = _MOD_TAG.get(t.modality, str(t.modality))
    (tw, th), base = cv2.getTextSize(tag, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
    cv2.rectangle(strip, (BORDER, BORDER), (BORDER + tw + 4, BORDER + th + base + 3), (0, 0, 0), -1)
    cv2.putText(
        strip, tag, (BORDER + 2, BORDER + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA
    )
    return strip


def _label(lines: Sequence[str], height: int, color=(0, 0, 0)) -> np.ndarray:
    panel = np.empty((height, LABEL_WIDTH, 3), dtype=np.uint8)
    panel[:] = BACKGROUND
    for i, text in enumerate(lines):
        cv2.putText(panel, text, (4, 14 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return panel


def similarity_labels(sims: Sequence[float], min_digits: int = 3, max_digits: int = 6) -> list[str]:
    """``sim <cosine>`` per ranked item, with the fewest decimals (``min_digits`` to ``max_digits``)
    at which neighbouring ranks whose similarities differ also read differently.

    The absolute cosine is kept (not the gap to the best match) so a picture still says
    whether the whole list is near-identical; the precision adapts because embeddings
    that all lie near cosine 1 (a short training) would otherwise all read ``1.000``.
    """
    sims = [float(v) for v in sims]
    for digits in range(min_digits, max_digits + 1):
        texts = [f"sim {v:.{digits}f}" for v in sims]
        if all(a != b for a, b, x, y in zip(texts, texts[1:], sims, sims[1:], strict=False) if x != y):
            break
    return texts


def _check_aligned(features: Features, tracklets: Sequence[Tracklet], split: str) -> None:
    if len(features) != len(tracklets):
        raise MetricsInputError(
            f"write_rank_lists: {split} features have {len(features)} rows but data.{split} has {len(tracklets)} "
            f"tracklets; pass the features extracted from data.{split} in order"
        )
    for i, t in enumerate(tracklets):
        if t.paths and features.paths[i] != t.paths[0]:
            raise MetricsInputError(
                f"write_rank_lists: {split} feature {i} is {features.paths[i]!r} but data.{split}[{i}] starts "
                f"with {t.paths[0]!r}; the features do not belong to this dataset split"
            )


def check_rank_list_options(*, topk: int, num_queries: int, num_frames: int = 4, image_format: str = "png") -> None:
    """The picture options of ``write_rank_lists``, checked (callers check them before extracting features)."""
    if topk < 1 or num_queries < 0 or num_frames < 1:
        raise MetricsInputError(
            f"need topk >= 1, num_queries >= 0, num_frames >= 1; got {topk}, {num_queries}, {num_frames}"
        )
    if image_format.lower() not in ("png", "jpg", "jpeg"):
        raise MetricsInputError(f"image_format must be png or jpg, got {image_format!r}")


def write_rank_lists(
    data: VideoReidData,
    keypoints: KeypointStore | None,
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
    check_rank_list_options(topk=topk, num_queries=num_queries, num_frames=num_frames, image_format=image_format)
    protocol = resolve_protocol(protocol, data.name)
    if protocol == BUPT_OFFICIAL_DROPPED:  # drawn on the whole sets
        protocol = BUPT
    _check_aligned(query, data.query, "query")
    _check_aligned(gallery, data.gallery, "gallery")
    feature_pair(query.feats, gallery.feats, ("query features", "gallery features"))
    plans = mode_sets(protocol, query.modalities, gallery.modalities, modes=modes)
    out = prepare_output_dir(out_dir, "rank-list folder")
    sets = {"query": (data.query, query), "gallery": (data.gallery, gallery)}
    written: list[Path] = []
    for mode, plan in plans.items():
        q_split, q_all = sets[plan.query_side]
        g_split, g_all = sets[plan.gallery_side]
        q_rows, g_rows = plan.query_rows, plan.gallery_rows
        if num_queries == 0 or not len(q_rows) or not len(g_rows):
            continue
        qf, gf = q_all.subset(q_rows), g_all.subset(g_rows)
        # Which gallery items each query may see, and whether it has a positive left.
        same_pid = qf.pids[:, None] == gf.pids[None, :]
        allowed = (
            ~same_pid_same_camera(qf.pids, qf.camids, gf.pids, gf.camids)
            if plan.camera_filter
            else np.ones_like(same_pid)
        )
        candidates = np.flatnonzero((same_pid & allowed).any(axis=1))
        if len(candidates) == 0:
            continue
        spread = np.linspace(0, len(candidates) - 1, min(num_queries, len(candidates))).round().astype(int)
        pick = candidates[np.unique(spread)]
        sim = (
            (F.normalize(qf.feats[torch.from_numpy(pick)].float(), dim=1) @ F.normalize(gf.feats.float(), dim=1).T)
            .numpy()
            .astype(np.float64)
        )
        slug = mode.replace("->", "2").lower()
        for row, qi in zip(sim, pick.tolist(), strict=False):
            valid = np.flatnonzero(allowed[qi])
            order = valid[np.argsort(-row[valid], kind="stable")][:topk]
            rows = [
                np.concatenate(
                    [
                        _label(["query", f"pid {qf.pids[qi]}", f"cam {qf.camids[qi]}"], height + 2 * BORDER),
                        _strip(q_split[q_rows[qi]], keypoints, QUERY_COLOR, num_frames, height, width),
                    ],
                    axis=1,
                )
            ]
            for rank, (gi, text) in enumerate(zip(order.tolist(), similarity_labels(row[order]), strict=False), 1):
                match = gf.pids[gi] == qf.pids[qi]
                rows.append(
                    np.concatenate(
                        [
                            _label(
                                [f"rank {rank}", f"pid {gf.pids[gi]}", f"cam {gf.camids[gi]}", text],
                                height + 2 * BORDER,
                                MATCH_COLOR if match else MISMATCH_COLOR,
                            ),
                            _strip(
                                g_split[g_rows[gi]],
                                keypoints,
                                MATCH_COLOR if match else MISMATCH_COLOR,
                                num_frames,
                                height,
                                width,
                            ),
                        ],
                        axis=1,
                    )
                )
            canvas = _stack(rows)
            path = out / f"{slug}_q{int(q_rows[qi]):05d}_pid{int(qf.pids[qi])}.{image_format.lower()}"
            ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
            if not ok:
                raise OutputPathError(f"cannot encode the rank-list picture {path}")

            def write_picture(f: Any, encoded: np.ndarray = encoded) -> None:
                f.write(encoded.tobytes())

            atomic_write(path, write_picture)  # a full disk: one error naming path and reason
            written.append(path)
    return written


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    h = sum(r.shape[0] for r in rows) + (QUERY_GAP + (len(rows) - 2) * ROW_GAP if len(rows) > 1 else 0)
    canvas = np.empty((h, rows[0].shape[1], 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    y = 0
    for i, r in enumerate(rows):
        canvas[y : y + r.shape[0]] = r
        y += r.shape[0] + (QUERY_GAP if i == 0 else ROW_GAP)
    return canvas
