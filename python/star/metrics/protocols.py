"""The published VVI-ReID evaluation protocols and the metrics table.

Mode names are ``"<query modality>-><gallery modality>"``: ``IR->RGB``
(infrared to visible) and ``RGB->IR`` (visible to infrared), plus the
same-modality ``RGB->RGB`` and ``IR->IR`` for BUPTCampus on request.
Features are compared by cosine similarity of L2-normalised embeddings
(distance ``-cos``, see ``cosine_distance``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .distance import as_features, cosine_distance
from .ranking import RankingResult, evaluate_ranking
from .rerank import k_reciprocal_rerank

__all__ = ["IR_TO_RGB", "RGB_TO_IR", "RGB_TO_RGB", "IR_TO_IR",
           "evaluate_hitsz_vcm", "evaluate_bupt", "format_table"]

IR_TO_RGB, RGB_TO_IR, RGB_TO_RGB, IR_TO_IR = "IR->RGB", "RGB->IR", "RGB->RGB", "IR->IR"


def evaluate_hitsz_vcm(q_feat, q_pids, q_camids, g_feat, g_pids, g_camids, *,
                       max_rank: int = 20, rerank: bool = False,
                       rerank_params: Optional[Mapping] = None,
                       chunk_size: Optional[int] = None) -> dict[str, RankingResult]:
    """HITSZ-VCM, both modes, one deterministic trial.

    The query set (``query_IDX.txt``) holds the infrared tracklets, the
    gallery set the visible ones. ``IR->RGB`` ranks the gallery set for each
    query-set tracklet; ``RGB->IR`` swaps the roles (the gallery-set RGB
    tracklets query the query-set IR tracklets). In both, gallery items with
    the query's pid and camera are dropped.

    Args:
        q_feat, g_feat: [n, d] embeddings (numpy or torch; any device).
        q_pids, q_camids, g_pids, g_camids: integer ids per tracklet.
        max_rank: CMC length. chunk_size: see ``evaluate_ranking``.
        rerank: apply k-reciprocal re-ranking (per mode, on the normalised
            features); ``rerank_params`` go to ``k_reciprocal_rerank``.

    Returns:
        ``{"IR->RGB": RankingResult, "RGB->IR": RankingResult}``.
    """
    kw = dict(max_rank=max_rank, chunk_size=chunk_size)
    if rerank:
        ir_rgb = _reranked(q_feat, g_feat, rerank_params)
        rgb_ir = _reranked(g_feat, q_feat, rerank_params)
    else:
        ir_rgb = cosine_distance(q_feat, g_feat)
        rgb_ir = ir_rgb.T  # same similarities; evaluate_ranking reads it in row blocks
    return {
        IR_TO_RGB: _evaluate(IR_TO_RGB, ir_rgb, q_pids, g_pids, q_camids, g_camids, **kw),
        RGB_TO_IR: _evaluate(RGB_TO_IR, rgb_ir, g_pids, q_pids, g_camids, q_camids, **kw),
    }


def evaluate_bupt(q_feat, q_pids, q_modalities, g_feat, g_pids, g_modalities, *,
                  same_modality: bool = False, max_rank: int = 20, rerank: bool = False,
                  rerank_params: Optional[Mapping] = None,
                  chunk_size: Optional[int] = None) -> dict[str, RankingResult]:
    """BUPTCampus: cross-modal modes without the camera filter.

    ``query.txt`` and ``gallery.txt`` each mix RGB and IR tracklets; a mode
    ``A->B`` uses the modality-A query tracklets against the modality-B
    gallery tracklets. No camera filter: every gallery item counts.

    Args:
        q_feat, g_feat: [n, d] embeddings.
        q_pids, g_pids: integer ids per tracklet.
        q_modalities, g_modalities: per tracklet ``"RGB"`` or ``"IR"``
            (case-insensitive), as in the split files.
        same_modality: also evaluate ``RGB->RGB`` and ``IR->IR``.
        rerank, rerank_params, max_rank, chunk_size: as in
            ``evaluate_hitsz_vcm``; re-ranking runs per mode on its subsets.

    Returns:
        ``{"IR->RGB": ..., "RGB->IR": ...}`` (+ same-modality modes).
    """
    q, g = as_features(q_feat, "q_feat"), as_features(g_feat, "g_feat")
    q_pids, g_pids = _ids(q_pids, "q_pids", len(q)), _ids(g_pids, "g_pids", len(g))
    q_ir = _is_infrared(q_modalities, "q_modalities", len(q))
    g_ir = _is_infrared(g_modalities, "g_modalities", len(g))
    modes = {IR_TO_RGB: (q_ir, ~g_ir), RGB_TO_IR: (~q_ir, g_ir)}
    if same_modality:
        modes.update({RGB_TO_RGB: (~q_ir, ~g_ir), IR_TO_IR: (q_ir, g_ir)})
    dist = None if rerank else cosine_distance(q, g)
    results = {}
    for mode, (qm, gm) in modes.items():
        qi = torch.from_numpy(np.flatnonzero(qm)).to(q.device)
        gi = torch.from_numpy(np.flatnonzero(gm)).to(q.device)
        sub = (_reranked(q[qi], g[gi], rerank_params) if rerank
               else dist[qi[:, None], gi])
        results[mode] = _evaluate(mode, sub, q_pids[qm], g_pids[gm], max_rank=max_rank,
                                  chunk_size=chunk_size)
    return results


def format_table(results: Mapping[str, RankingResult]) -> str:
    """Table of R1/R5/R10/R20/mAP/mINP in percent (2 decimals), one row per mode.

    A rank past a result's CMC length shows ``-`` unless it is known to be
    100 (see ``RankingResult.rank``).
    """
    header = ["Mode", "R1", "R5", "R10", "R20", "mAP", "mINP"]
    rows = [header]
    for mode, r in results.items():
        row = [str(mode)]
        for k in (1, 5, 10, 20):
            try:
                row.append(f"{100 * r.rank(k):.2f}")
            except ValueError:
                row.append("-")
        rows.append(row + [f"{100 * r.mAP:.2f}", f"{100 * r.mINP:.2f}"])
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    return "\n".join(
        "  ".join([row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])])
        for row in rows)


def _evaluate(mode: str, dist, *args, **kwargs) -> RankingResult:
    """evaluate_ranking, with the mode named in its errors."""
    try:
        return evaluate_ranking(dist, *args, **kwargs)
    except ValueError as e:
        raise ValueError(f"{mode}: {e}") from e


def _reranked(q_feat, g_feat, params: Optional[Mapping]) -> torch.Tensor:
    q, g = as_features(q_feat, "q_feat"), as_features(g_feat, "g_feat")
    return k_reciprocal_rerank(F.normalize(q.float(), dim=1), F.normalize(g.float(), dim=1),
                               **dict(params or {}))


def _ids(ids, name: str, length: int) -> np.ndarray:
    arr = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    if arr.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {arr.shape}")
    return arr


def _is_infrared(modalities, name: str, length: int) -> np.ndarray:
    labels = np.char.upper(_ids(modalities, name, length).astype(str))
    bad = ~np.isin(labels, ["RGB", "IR"])
    if bad.any():
        raise ValueError(f"{name} must hold 'RGB' or 'IR', got {labels[bad][0]!r}")
    return labels == "IR"
