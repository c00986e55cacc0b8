"""Evaluation of a model on a dataset's query/gallery split (SPEC §6): features, protocol, table, metrics.json.

``evaluate(model, data, keypoints, cfg)`` extracts the query and gallery embeddings,
runs the protocol chosen by ``cfg.eval.protocol`` and returns an :class:`EvalResult`
(per-mode ``RankingResult``, the printed table, the features). With ``output_dir`` it
writes ``metrics.json`` there. ``evaluate_features`` does the same from features
already extracted (e.g. a ``.npz`` of ``star extract``).

Protocols (``cfg.eval.protocol``):

- ``auto``: ``bupt`` for the BUPTCampus dataset, ``hitsz-vcm`` otherwise;
- ``hitsz-vcm``: infrared->visible (query set -> gallery set) and visible->infrared
  (swapped), dropping same-pid-same-camera gallery items;
- ``bupt``: the cross-modal modes of the mixed query/gallery sets, no camera filter
  (plus the same-modality modes with ``cfg.eval.same_modality``);
- ``bupt-official-dropped``: ``bupt`` after dropping, from the query set and from the
  gallery set, the last ``len(RGB) % 64`` RGB tracklets, as the official AuxNet test
  sampler (``ConsistentModalitySampler``, test batch 64, used for both loaders) does.
  Only for comparison with published numbers; the table and metrics.json say so.

Under DDP only rank 0 should call these (pass the unwrapped model).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..config import RunConfig
from ..fileio import atomic_write
from ..data.keypoint_store import KeypointStore
from ..data.tracklet import INFRARED, VISIBLE, VideoReidData
from ..metrics import RankingResult, evaluate_bupt, evaluate_hitsz_vcm, format_table
from .features import Features, extract_features

__all__ = [
    "EvalResult", "evaluate", "evaluate_features", "resolve_protocol", "official_dropped_keep", "write_metrics",
    "METRICS_FILE", "OFFICIAL_TEST_BATCH",
]

METRICS_FILE = "metrics.json"
OFFICIAL_TEST_BATCH = 64  # AuxNet's test batch size ("Please don't change it.")
RANKS = (1, 5, 10, 20)
PROTOCOL_CHOICES = ("hitsz-vcm", "bupt", "bupt-official-dropped")


@dataclass
class EvalResult:
    """One evaluation: ``results`` per mode (``"IR->RGB"``, ``"RGB->IR"``, ...), the printed
    ``table``, the full (undropped) query/gallery features, the resolved ``protocol``.

    ``info`` holds the counts and settings recorded in metrics.json (``num_query``,
    ``num_gallery``, per-split modality counts, ``rerank``, and for
    ``bupt-official-dropped`` the ``dropped`` counts).
    """

    results: dict[str, RankingResult]
    table: str
    query: Features
    gallery: Features
    protocol: str
    dataset: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The content of metrics.json: metrics as fractions in [0, 1] (``R<k>`` = CMC at rank k)."""
        from star import __version__

        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            **self.info,
            "modes": {mode: _mode_metrics(r) for mode, r in self.results.items()},
            "package_version": __version__,
        }


def _mode_metrics(r: RankingResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in RANKS:
        try:
            out[f"R{k}"] = r.rank(k)
        except ValueError:  # beyond a short CMC that has not reached 1
            out[f"R{k}"] = None
    out.update(mAP=float(r.mAP), mINP=float(r.mINP), num_valid=int(r.num_valid), cmc=[float(v) for v in r.cmc])
    return out


def resolve_protocol(protocol: str, dataset: str) -> str:
    """``auto`` -> ``bupt`` for the ``bupt`` dataset, ``hitsz-vcm`` for any other; else ``protocol`` (checked)."""
    if protocol == "auto":
        return "bupt" if dataset == "bupt" else "hitsz-vcm"
    if protocol not in PROTOCOL_CHOICES:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; expected auto or one of {list(PROTOCOL_CHOICES)}")
    return protocol


def official_dropped_keep(modalities: np.ndarray, batch_size: Optional[int] = None) -> np.ndarray:
    """Boolean keep-mask of AuxNet's test sampler: the last ``len(RGB) % batch_size`` RGB items
    (in order) are dropped, every infrared item is kept. ``batch_size`` defaults to 64."""
    batch_size = OFFICIAL_TEST_BATCH if batch_size is None else batch_size
    modalities = np.asarray(modalities)
    rgb = np.flatnonzero(modalities == VISIBLE)
    keep = np.ones(len(modalities), dtype=bool)
    drop = len(rgb) % batch_size
    if drop:  # (the original slices idx[:-0] = [] when nothing is to be dropped; we keep all)
        keep[rgb[len(rgb) - drop:]] = False
    return keep


def _modality_labels(modalities: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(modalities) == INFRARED, "IR", "RGB")


def _counts(f: Features) -> dict[str, int]:
    m = np.asarray(f.modalities)
    return {"tracklets": len(f), "ir": int((m == INFRARED).sum()), "rgb": int((m == VISIBLE).sum())}


def evaluate_features(
    query: Features,
    gallery: Features,
    *,
    protocol: str = "hitsz-vcm",
    dataset: str = "",
    same_modality: bool = False,
    rerank: bool = False,
    max_rank: int = 20,
) -> EvalResult:
    """Run ``protocol`` (``auto`` resolved with ``dataset``) on extracted features; see the module doc."""
    protocol = resolve_protocol(protocol, dataset)
    info: dict[str, Any] = {
        "num_query": len(query),
        "num_gallery": len(gallery),
        "counts": {"query": _counts(query), "gallery": _counts(gallery)},
        "rerank": bool(rerank),
        "max_rank": int(max_rank),
    }
    notes: list[str] = []
    if protocol == "hitsz-vcm":
        results = evaluate_hitsz_vcm(
            query.feats, query.pids, query.camids, gallery.feats, gallery.pids, gallery.camids,
            max_rank=max_rank, rerank=rerank,
        )
    else:
        q, g = query, gallery
        if protocol == "bupt-official-dropped":
            q = query.subset(official_dropped_keep(query.modalities))
            g = gallery.subset(official_dropped_keep(gallery.modalities))
            dropped = {"query": len(query) - len(q), "gallery": len(gallery) - len(g)}
            info["dropped"] = {**dropped, "rule": f"last len(RGB) % {OFFICIAL_TEST_BATCH} RGB tracklets of each split"}
            notes.append(
                f"NOTE: bupt-official-dropped: {dropped['query']} query and {dropped['gallery']} gallery RGB "
                f"tracklets dropped (len(RGB) % {OFFICIAL_TEST_BATCH}, as AuxNet's test sampler); "
                "only for comparison with published numbers, not the full protocol"
            )
        info["same_modality"] = bool(same_modality)
        results = evaluate_bupt(
            q.feats, q.pids, _modality_labels(q.modalities), g.feats, g.pids, _modality_labels(g.modalities),
            same_modality=same_modality, max_rank=max_rank, rerank=rerank,
        )
    title = (
        f"{dataset or 'features'}: protocol {protocol}{' + re-ranking' if rerank else ''}, "
        f"{len(query)} query / {len(gallery)} gallery tracklets"
    )
    table = "\n".join([title, *notes, format_table(results)])
    return EvalResult(
        results=results, table=table, query=query, gallery=gallery, protocol=protocol, dataset=dataset, info=info
    )


def evaluate(
    model: nn.Module,
    data: VideoReidData,
    keypoints: Optional[KeypointStore],
    cfg: RunConfig,
    *,
    device: str | torch.device = "cpu",
    output_dir: Optional[str | Path] = None,
    progress: bool = False,
    visrank: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on ``data.query`` / ``data.gallery``.

    Frames: ``seq_len`` of ``cfg.model`` per tracklet at ``cfg.data.height`` x
    ``cfg.data.width``, batches of ``cfg.data.eval_batch_size``, ``cfg.data.num_workers``
    loader workers, float16 autocast on CUDA when ``cfg.train.amp``. Protocol and options
    from ``cfg.eval``. With ``output_dir``: writes ``<output_dir>/metrics.json`` and, when
    ``visrank`` and ``cfg.eval.visrank_queries > 0``, rank-list pictures in
    ``<output_dir>/visrank``. The model's train/eval mode is restored.
    """
    device = torch.device(device)
    kw = dict(
        num_frames=cfg.model.seq_len,
        height=cfg.data.height,
        width=cfg.data.width,
        batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        device=device,
        amp=cfg.train.amp and device.type == "cuda",
        progress=progress,
    )
    query = extract_features(model, data.query, keypoints, **kw)
    gallery = extract_features(model, data.gallery, keypoints, **kw)
    result = evaluate_features(
        query, gallery,
        protocol=cfg.eval.protocol, dataset=data.name, same_modality=cfg.eval.same_modality,
        rerank=cfg.eval.rerank, max_rank=cfg.eval.max_rank,
    )
    if output_dir is not None:
        out = Path(output_dir)
        write_metrics(result, out / METRICS_FILE)
        if visrank and cfg.eval.visrank_queries > 0:
            from .visrank import write_rank_lists

            write_rank_lists(
                data, keypoints, query, gallery, out / "visrank",
                topk=cfg.eval.visrank_topk, num_queries=cfg.eval.visrank_queries, protocol=result.protocol,
            )
    return result


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_metrics(result: EvalResult, path: str | Path) -> Path:
    """Write ``result.to_dict()`` as JSON to ``path`` (a directory means ``<path>/metrics.json``), atomically."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_json_safe(result.to_dict()), indent=2)
    atomic_write(path, lambda f: f.write(text + "\n"), mode="w")
    return path
