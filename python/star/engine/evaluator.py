"""Evaluation of a model on a query/gallery split (docs/protocols.md): features, protocol, table, metrics.json.

``evaluate(model, data, keypoints, cfg)`` extracts the query and gallery embeddings,
runs the protocol chosen by ``cfg.eval.protocol`` and returns an :class:`EvalResult`
(per-mode ``RankingResult``, the printed table, the features). With ``output_dir`` it
writes ``metrics.json`` there. ``evaluate_features`` does the same from features
already extracted (e.g. a ``.npz`` of ``star extract``).

Protocols (``cfg.eval.protocol``): see ``star.metrics.protocols``; ``auto`` is ``bupt``
for the BUPTCampus dataset, ``hitsz-vcm`` otherwise. ``bupt-official-dropped`` is only
for comparison with published numbers; the table and metrics.json say so.

Under DDP only rank 0 should call these (pass the unwrapped model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..config import RunConfig
from ..data.keypoint_store import KeypointStore
from ..data.substitution import FrameSubstitutions
from ..data.tracklet import INFRARED, VISIBLE, VideoReidData
from ..metrics import RankingResult, format_table, protocols
from ..reports.feature_files import Features
from ..reports.metrics_file import METRICS_FILE, write_metrics
from ..reports.rank_lists import write_rank_lists
from .feature_extraction import extract_features

__all__ = ["EvalResult", "eval_loader_settings", "evaluate", "evaluate_features", "extraction_settings"]


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
    # frames substituted because undecodable (None: evaluated from saved features); printed in
    # the table, not in metrics.json, whose content depends on the embeddings alone
    substituted_frames: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The content of metrics.json: metrics as fractions in [0, 1] (``R<k>`` = CMC at rank k)."""
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            **self.info,
            "modes": {mode: _mode_metrics(r) for mode, r in self.results.items()},
            "package_version": __version__,
        }


def _mode_metrics(r: RankingResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in protocols.CMC_RANKS:
        try:
            out[f"R{k}"] = r.rank(k)
        except ValueError:  # beyond a short CMC that has not reached 1
            out[f"R{k}"] = None
    out.update(mAP=float(r.mAP), mINP=float(r.mINP), num_valid=int(r.num_valid), cmc=[float(v) for v in r.cmc])
    return out


def _protocol_set(f: Features) -> dict[str, Any]:
    return {"feats": f.feats, "pids": f.pids, "camids": f.camids, "modalities": f.modalities}


def _counts(f: Features) -> dict[str, int]:
    m = np.asarray(f.modalities)
    return {"tracklets": len(f), "ir": int((m == INFRARED).sum()), "rgb": int((m == VISIBLE).sum())}


def evaluate_features(
    query: Features,
    gallery: Features,
    *,
    protocol: str = protocols.HITSZ_VCM,
    dataset: str = "",
    same_modality: bool = False,
    rerank: bool = False,
    max_rank: int = 20,
) -> EvalResult:
    """Run ``protocol`` (``auto`` resolved with ``dataset``) on extracted features; see the module doc."""
    protocol = protocols.resolve_protocol(protocol, dataset)
    info: dict[str, Any] = {
        "num_query": len(query),
        "num_gallery": len(gallery),
        "counts": {"query": _counts(query), "gallery": _counts(gallery)},
        "rerank": bool(rerank),
        "max_rank": int(max_rank),
    }
    notes: list[str] = []
    if protocol != protocols.HITSZ_VCM:
        info["same_modality"] = bool(same_modality)
    if protocol == protocols.BUPT_OFFICIAL_DROPPED:
        batch = protocols.OFFICIAL_TEST_BATCH
        dropped = {
            name: int((~protocols.official_dropped_keep(f.modalities)).sum())
            for name, f in (("query", query), ("gallery", gallery))
        }
        info["dropped"] = {**dropped, "rule": f"last len(RGB) % {batch} RGB tracklets of each split"}
        notes.append(
            f"NOTE: bupt-official-dropped: {dropped['query']} query and {dropped['gallery']} gallery RGB "
            f"tracklets dropped (len(RGB) % {batch}, as AuxNet's test sampler); "
            "only for comparison with published numbers, not the full protocol"
        )
    results = protocols.evaluate_protocol(
        protocol,
        _protocol_set(query),
        _protocol_set(gallery),
        same_modality=same_modality,
        max_rank=max_rank,
        rerank=rerank,
    )
    title = (
        f"{dataset or 'features'}: protocol {protocol}{' + re-ranking' if rerank else ''}, "
        f"{len(query)} query / {len(gallery)} gallery tracklets"
    )
    table = "\n".join([title, *notes, format_table(results)])
    return EvalResult(
        results=results, table=table, query=query, gallery=gallery, protocol=protocol, dataset=dataset, info=info
    )


def eval_loader_settings(cfg: RunConfig) -> dict[str, Any]:
    """The ``star.data.eval_loader`` options of a run's evaluation: ``seq_len`` frames per tracklet
    at the data size, the eval batch size and loader workers."""
    return dict(
        num_frames=cfg.model.seq_len,
        height=cfg.data.height,
        width=cfg.data.width,
        batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
    )


def extraction_settings(cfg: RunConfig, device: torch.device, *, progress: bool = False) -> dict[str, Any]:
    """The ``extract_features`` options of a run's evaluation: the loader's
    (:func:`eval_loader_settings`) and float16 autocast on CUDA with ``train.amp``."""
    return dict(
        **eval_loader_settings(cfg), device=device, amp=cfg.train.amp and device.type == "cuda", progress=progress
    )


def evaluate(
    model: nn.Module,
    data: VideoReidData,
    keypoints: KeypointStore | None,
    cfg: RunConfig,
    *,
    device: str | torch.device = "cpu",
    output_dir: str | Path | None = None,
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
    frames = (len(data.query) + len(data.gallery)) * cfg.model.seq_len
    substitutions = FrameSubstitutions("evaluation", cfg.data.max_substituted_fraction, frames)
    kw = extraction_settings(cfg, device, progress=progress)
    query = extract_features(model, data.query, keypoints, substitutions=substitutions, **kw)
    gallery = extract_features(model, data.gallery, keypoints, substitutions=substitutions, **kw)
    substitutions.check()
    result = evaluate_features(
        query,
        gallery,
        protocol=cfg.eval.protocol,
        dataset=data.name,
        same_modality=cfg.eval.same_modality,
        rerank=cfg.eval.rerank,
        max_rank=cfg.eval.max_rank,
    )
    result.substituted_frames = substitutions.substituted
    result.table += f"\nframes: {substitutions.summary()}"
    if output_dir is not None:
        out = Path(output_dir)
        write_metrics(result, out / METRICS_FILE)
        if visrank and cfg.eval.visrank_queries > 0:
            write_rank_lists(
                data,
                keypoints,
                query,
                gallery,
                out / "visrank",
                topk=cfg.eval.visrank_topk,
                num_queries=cfg.eval.visrank_queries,
                protocol=result.protocol,
            )
    return result
