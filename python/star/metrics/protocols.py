"""The published VVI-ReID evaluation protocols and the metrics table: the one place that
knows which tracklets query which in each mode.

Protocols (``PROTOCOLS``; ``auto`` picks one from the dataset, see ``resolve_protocol``):

- ``hitsz-vcm``: the query set (``query_IDX.txt``) holds the infrared tracklets, the
  gallery set the visible ones. ``IR->RGB`` ranks the gallery set for each query-set
  tracklet; ``RGB->IR`` swaps the roles. In both, gallery items with the query's pid
  and camera are dropped (the camera filter).
- ``bupt``: ``query.txt`` and ``gallery.txt`` each mix RGB and IR tracklets; a mode
  ``A->B`` uses the modality-A query tracklets against the modality-B gallery
  tracklets, without camera filter (plus ``RGB->RGB`` and ``IR->IR`` on request).
- ``bupt-official-dropped``: ``bupt`` after dropping, from the query set and from the
  gallery set, the last ``len(RGB) % 64`` RGB tracklets, as the official AuxNet test
  sampler (``ConsistentModalitySampler``, test batch 64, used for both loaders) does.
  Only for comparison with published numbers.

``mode_sets`` gives, for a protocol, each mode's query rows, gallery rows and camera
filter; the scores (``evaluate_protocol``) and the rank-list pictures
(``star.reports.rank_lists``) both follow it. Features are compared by cosine similarity of
L2-normalised embeddings (distance ``-cos``, see ``cosine_distance``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.tracklet import INFRARED, VISIBLE
from .distance import cosine_distance, feature_pair
from .errors import MetricsInputError
from .ranking import RankingResult, evaluate_ranking
from .rerank import k_reciprocal_rerank

__all__ = [
    "IR_TO_RGB",
    "RGB_TO_IR",
    "RGB_TO_RGB",
    "IR_TO_IR",
    "MODE_MODALITIES",
    "CROSS_MODES",
    "AUTO",
    "HITSZ_VCM",
    "BUPT",
    "BUPT_OFFICIAL_DROPPED",
    "PROTOCOLS",
    "PROTOCOL_CHOICES",
    "CMC_RANKS",
    "OFFICIAL_TEST_BATCH",
    "ModeSets",
    "resolve_protocol",
    "official_dropped_keep",
    "mode_sets",
    "same_pid_same_camera",
    "evaluate_protocol",
    "evaluate_hitsz_vcm",
    "evaluate_bupt",
    "format_table",
]

IR_TO_RGB, RGB_TO_IR, RGB_TO_RGB, IR_TO_IR = "IR->RGB", "RGB->IR", "RGB->RGB", "IR->IR"
# Mode -> (query modality, gallery modality), in the tracklet codes of star.data.
MODE_MODALITIES = {
    IR_TO_RGB: (INFRARED, VISIBLE),
    RGB_TO_IR: (VISIBLE, INFRARED),
    RGB_TO_RGB: (VISIBLE, VISIBLE),
    IR_TO_IR: (INFRARED, INFRARED),
}
CROSS_MODES = (IR_TO_RGB, RGB_TO_IR)

AUTO = "auto"
HITSZ_VCM, BUPT, BUPT_OFFICIAL_DROPPED = "hitsz-vcm", "bupt", "bupt-official-dropped"
PROTOCOLS = (HITSZ_VCM, BUPT, BUPT_OFFICIAL_DROPPED)
PROTOCOL_CHOICES = (AUTO, *PROTOCOLS)  # what a config or the CLI may name
CMC_RANKS = (1, 5, 10, 20)  # the ranks of the table and of metrics.json
OFFICIAL_TEST_BATCH = 64  # AuxNet's test batch size ("Please don't change it.")
BUPT_DATASET = "bupt"


def resolve_protocol(protocol: str, dataset: str) -> str:
    """``auto`` -> ``bupt`` for the ``bupt`` dataset, ``hitsz-vcm`` for any other; else ``protocol`` (checked)."""
    if protocol == AUTO:
        return BUPT if dataset == BUPT_DATASET else HITSZ_VCM
    if protocol not in PROTOCOLS:
        raise MetricsInputError(
            f"unknown evaluation protocol {protocol!r}; expected one of {', '.join(PROTOCOL_CHOICES)}"
        )
    return protocol


def official_dropped_keep(modalities, batch_size: int | None = None) -> np.ndarray:
    """Boolean keep-mask of AuxNet's test sampler: the last ``len(RGB) % batch_size`` RGB items
    (in order) are dropped, every infrared item is kept. ``batch_size`` defaults to 64."""
    batch_size = OFFICIAL_TEST_BATCH if batch_size is None else batch_size
    modalities = np.asarray(modalities)
    rgb = np.flatnonzero(modalities == VISIBLE)
    keep = np.ones(len(modalities), dtype=bool)
    drop = len(rgb) % batch_size
    if drop:  # (the original slices idx[:-0] = [] when nothing is to be dropped; we keep all)
        keep[rgb[len(rgb) - drop :]] = False
    return keep


@dataclass(frozen=True)
class ModeSets:
    """Who queries whom in one mode: rows of the ``query_side`` set (``"query"`` or
    ``"gallery"``: the split the rows index) rank rows of the ``gallery_side`` set;
    ``camera_filter``: drop gallery items with the query's pid and camera."""

    mode: str
    query_side: str
    query_rows: np.ndarray
    gallery_side: str
    gallery_rows: np.ndarray
    camera_filter: bool


def mode_sets(
    protocol: str,
    query_modalities,
    gallery_modalities,
    *,
    same_modality: bool = False,
    modes: Sequence[str] | None = None,
) -> dict[str, ModeSets]:
    """The modes of ``protocol`` (resolved, not ``auto``) for a query/gallery set with these
    modality codes: the cross-modal modes, plus the same-modality ones with ``same_modality``
    (BUPTCampus only), or exactly ``modes`` when given."""
    qm, gm = np.asarray(query_modalities), np.asarray(gallery_modalities)
    available: tuple[str, ...]
    if protocol == HITSZ_VCM:
        available = CROSS_MODES
    elif protocol in PROTOCOLS:
        available = tuple(MODE_MODALITIES)
    else:
        raise MetricsInputError(f"mode_sets needs a resolved protocol, one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    wanted = tuple(modes) if modes is not None else CROSS_MODES + ((RGB_TO_RGB, IR_TO_IR) if same_modality else ())
    for mode in wanted:
        if mode not in available:
            raise MetricsInputError(f"protocol {protocol} has modes {', '.join(available)}, not {mode!r}")
    if protocol == HITSZ_VCM:
        q_all, g_all = np.arange(len(qm)), np.arange(len(gm))
        sides = {IR_TO_RGB: ("query", q_all, "gallery", g_all), RGB_TO_IR: ("gallery", g_all, "query", q_all)}
        return {mode: ModeSets(mode, *sides[mode], camera_filter=True) for mode in wanted}
    q_keep: bool | np.ndarray
    g_keep: bool | np.ndarray
    q_keep = g_keep = True
    if protocol == BUPT_OFFICIAL_DROPPED:
        q_keep, g_keep = official_dropped_keep(qm), official_dropped_keep(gm)
    out = {}
    for mode in wanted:
        q_mod, g_mod = MODE_MODALITIES[mode]
        out[mode] = ModeSets(
            mode,
            "query",
            np.flatnonzero((qm == q_mod) & q_keep),
            "gallery",
            np.flatnonzero((gm == g_mod) & g_keep),
            camera_filter=False,
        )
    return out


def same_pid_same_camera(q_pids, q_camids, g_pids, g_camids) -> np.ndarray:
    """[num_query, num_gallery] mask of the gallery items the camera filter drops (the rule
    ``evaluate_ranking`` applies, in its own vectorised form, when given cameras)."""
    q_pids, q_camids = np.asarray(q_pids), np.asarray(q_camids)
    return (q_pids[:, None] == np.asarray(g_pids)[None, :]) & (q_camids[:, None] == np.asarray(g_camids)[None, :])


def evaluate_protocol(
    protocol: str,
    query: Mapping,
    gallery: Mapping,
    *,
    same_modality: bool = False,
    max_rank: int = 20,
    rerank: bool = False,
    rerank_params: Mapping | None = None,
    chunk_size: int | None = None,
) -> dict[str, RankingResult]:
    """Every mode of ``protocol`` (resolved) on a query and a gallery set.

    ``query`` / ``gallery``: mappings with ``feats`` [n, d] (numpy or torch, any device),
    ``pids``, ``camids`` and ``modalities`` (star.data codes) per tracklet; ``camids`` is
    read only by camera-filtered modes, ``modalities`` only by the BUPTCampus protocols.
    ``rerank`` applies k-reciprocal re-ranking per mode on its subsets (normalised
    features; ``rerank_params`` go to ``k_reciprocal_rerank``); ``max_rank`` is the CMC
    length, ``chunk_size`` see ``evaluate_ranking``.
    """
    q, g = feature_pair(query["feats"], gallery["feats"], ("query features", "gallery features"))
    sets = {"query": dict(query, feats=q), "gallery": dict(gallery, feats=g)}
    n = {"query": len(q), "gallery": len(g)}
    plans = mode_sets(
        protocol,
        query.get("modalities", np.zeros(len(q))),
        gallery.get("modalities", np.zeros(len(g))),
        same_modality=same_modality,
    )
    dist = None if rerank else cosine_distance(q, g)
    results = {}
    for mode, plan in plans.items():
        qs, gs = sets[plan.query_side], sets[plan.gallery_side]
        qr, gr = plan.query_rows, plan.gallery_rows
        if rerank:
            sub = _reranked(
                _rows(qs["feats"], qr, n[plan.query_side]), _rows(gs["feats"], gr, n[plan.gallery_side]), rerank_params
            )
        else:
            assert dist is not None  # computed above whenever rerank is off
            # The RGB->IR matrix of HITSZ-VCM is the transposed query x gallery one: same similarities.
            full = dist if plan.query_side == "query" else dist.T
            sub = _block(full, qr, gr, n[plan.query_side], n[plan.gallery_side])
        labels = [
            _labels(sets[side], key, side, n[side])[rows]
            for key in ("pids", "camids")[: 2 if plan.camera_filter else 1]
            for side, rows in ((plan.query_side, qr), (plan.gallery_side, gr))
        ]
        results[mode] = _evaluate(mode, sub, *labels, max_rank=max_rank, chunk_size=chunk_size)
    return results


def evaluate_hitsz_vcm(
    q_feat,
    q_pids,
    q_camids,
    g_feat,
    g_pids,
    g_camids,
    *,
    max_rank: int = 20,
    rerank: bool = False,
    rerank_params: Mapping | None = None,
    chunk_size: int | None = None,
) -> dict[str, RankingResult]:
    """HITSZ-VCM, both modes, one deterministic trial (see the module doc).

    Args:
        q_feat, g_feat: [n, d] embeddings (numpy or torch; any device).
        q_pids, q_camids, g_pids, g_camids: integer ids per tracklet.
        max_rank, rerank, rerank_params, chunk_size: see ``evaluate_protocol``.

    Returns:
        ``{"IR->RGB": RankingResult, "RGB->IR": RankingResult}``.
    """
    return evaluate_protocol(
        HITSZ_VCM,
        {"feats": q_feat, "pids": q_pids, "camids": q_camids},
        {"feats": g_feat, "pids": g_pids, "camids": g_camids},
        max_rank=max_rank,
        rerank=rerank,
        rerank_params=rerank_params,
        chunk_size=chunk_size,
    )


def evaluate_bupt(
    q_feat,
    q_pids,
    q_modalities,
    g_feat,
    g_pids,
    g_modalities,
    *,
    same_modality: bool = False,
    max_rank: int = 20,
    rerank: bool = False,
    rerank_params: Mapping | None = None,
    chunk_size: int | None = None,
) -> dict[str, RankingResult]:
    """BUPTCampus: cross-modal modes without the camera filter (see the module doc).

    Args:
        q_feat, g_feat: [n, d] embeddings.
        q_pids, g_pids: integer ids per tracklet.
        q_modalities, g_modalities: per tracklet ``"RGB"`` or ``"IR"``
            (case-insensitive), as in the split files.
        same_modality: also evaluate ``RGB->RGB`` and ``IR->IR``.
        rerank, rerank_params, max_rank, chunk_size: see ``evaluate_protocol``.

    Returns:
        ``{"IR->RGB": ..., "RGB->IR": ...}`` (+ same-modality modes).
    """
    q, g = feature_pair(q_feat, g_feat)
    return evaluate_protocol(
        BUPT,
        {"feats": q, "pids": q_pids, "modalities": _modality_codes(q_modalities, "q_modalities", len(q))},
        {"feats": g, "pids": g_pids, "modalities": _modality_codes(g_modalities, "g_modalities", len(g))},
        same_modality=same_modality,
        max_rank=max_rank,
        rerank=rerank,
        rerank_params=rerank_params,
        chunk_size=chunk_size,
    )


def format_table(results: Mapping[str, RankingResult]) -> str:
    """Table of R1/R5/R10/R20/mAP/mINP in percent (2 decimals), one row per mode.

    A rank past a result's CMC length shows ``-`` unless it is known to be
    100 (see ``RankingResult.rank``).
    """
    header = ["Mode", *(f"R{k}" for k in CMC_RANKS), "mAP", "mINP"]
    rows = [header]
    for mode, r in results.items():
        row = [str(mode)]
        for k in CMC_RANKS:
            try:
                row.append(f"{100 * r.rank(k):.2f}")
            except ValueError:
                row.append("-")
        rows.append(row + [f"{100 * r.mAP:.2f}", f"{100 * r.mINP:.2f}"])
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    return "\n".join(
        "  ".join([row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=False)])
        for row in rows
    )


def _rows(feats: torch.Tensor, rows: np.ndarray, n: int) -> torch.Tensor:
    return feats if len(rows) == n else feats[torch.from_numpy(rows).to(feats.device)]


def _block(dist: torch.Tensor, q_rows: np.ndarray, g_rows: np.ndarray, nq: int, ng: int) -> torch.Tensor:
    """``dist[q_rows][:, g_rows]``, without a copy when the rows are all of them."""
    if len(q_rows) == nq and len(g_rows) == ng:
        return dist
    qi = torch.from_numpy(q_rows).to(dist.device)
    gi = torch.from_numpy(g_rows).to(dist.device)
    return dist[qi[:, None], gi]


def _evaluate(mode: str, dist, *args, **kwargs) -> RankingResult:
    """evaluate_ranking, with the mode named in its errors."""
    try:
        return evaluate_ranking(dist, *args, **kwargs)
    except MetricsInputError as e:
        raise MetricsInputError(f"{mode}: {e}") from e


def _reranked(q: torch.Tensor, g: torch.Tensor, params: Mapping | None) -> torch.Tensor:
    return k_reciprocal_rerank(F.normalize(q.float(), dim=1), F.normalize(g.float(), dim=1), **dict(params or {}))


def _labels(features: Mapping, key: str, side: str, length: int) -> np.ndarray:
    """``features[key]`` checked, named as the evaluate_* arguments (``q_pids``, ``g_camids``...)."""
    return _ids(features[key], f"{side[0]}_{key}", length)


def _ids(ids, name: str, length: int) -> np.ndarray:
    arr = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    if arr.shape != (length,):
        raise MetricsInputError(f"{name} must have shape ({length},), got {arr.shape}")
    return arr


def _modality_codes(labels, name: str, length: int) -> np.ndarray:
    """``"RGB"`` / ``"IR"`` labels (any case) -> star.data modality codes."""
    upper = np.char.upper(_ids(labels, name, length).astype(str))
    bad = ~np.isin(upper, ["RGB", "IR"])
    if bad.any():
        raise MetricsInputError(f"{name} must hold 'RGB' or 'IR', got {upper[bad][0]!r}")
    return np.where(upper == "IR", INFRARED, VISIBLE)
