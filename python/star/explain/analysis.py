"""``star explain``: what the skeleton guidance of a trained checkpoint does, per modality (docs/explain.md).

``explain_checkpoint(cfg, checkpoint)`` embeds up to ``max_tracklets`` tracklets of each
modality (IR, RGB) of the split (``test`` = query + gallery) with the checkpoint's model
and returns an :class:`Explanation`; with ``output_dir`` it writes ``explain.json`` and
the pictures of ``explain_figures`` there. Per modality:

1. body parts: per COCO-17 joint the graph attention it receives (:class:`JointAttention`)
   and the saliency of the embedding w.r.t. its (x, y, conf) (:class:`JointSaliency`);
2. temporal pooling: the guided pooling's weight on each exponent p (:class:`PoolingMix`);
3. frame correction: ||F' - F|| per frame position and against keypoint confidence
   (:class:`CorrectionProfile`).

A switched-off module gives None for its section, with the reason in ``absent``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch

from .._version import __version__
from ..config import ConfigError, RunConfig
from ..data import load_dataset, open_keypoint_store
from ..data.loaders import eval_loader
from ..data.skeleton import COCO17_KEYPOINTS
from ..data.synthetic import dataset_read_lock
from ..data.tracklet import INFRARED, VISIBLE, Tracklet
from ..data.transforms import normalize_frames
from ..engine.evaluator import eval_loader_settings
from ..engine.inference import load_trained_model
from ..fileio import atomic_write_text
from ..models import STAR
from ..output_paths import check_output_file, prepare_output_file
from .figures import FIGURE_FILES, write_figures
from .probes import BatchProbe, probe_batch

__all__ = [
    "CONFIDENCE_BINS",
    "DEFAULT_MAX_TRACKLETS",
    "EXPLAIN_FILE",
    "EXPLAIN_SPLITS",
    "CorrectionProfile",
    "Explanation",
    "JointAttention",
    "JointSaliency",
    "ModalityExplanation",
    "PoolingMix",
    "explain_checkpoint",
    "explain_model",
    "default_output_dir",
    "write_explanation",
]

EXPLAIN_FILE = "explain.json"
EXPLAIN_SPLITS = {"test": ("query", "gallery"), "train": ("train",)}
# Per modality: enough for stable means on the synthetic demo, seconds on 2 CPU cores (0 = all).
DEFAULT_MAX_TRACKLETS = 24
# The saliency's exact Jacobian costs C backward rows per tracklet (about 2 s on a CPU core for
# the demo's ResNet-18, C = 512), so it is measured on fewer tracklets, spread over those used.
DEFAULT_SALIENCY_TRACKLETS = 4
# Frames binned by their mean keypoint confidence (17 joints).
CONFIDENCE_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MODALITIES = {INFRARED: "IR", VISIBLE: "RGB"}

T = TypeVar("T")

Floats = tuple[float, ...]


@dataclass(frozen=True)
class JointAttention:
    """Graph attention each joint receives, per COCO-17 joint (``Explanation.joints`` order).

    A node's received weight is the sum of the softmax weights alpha_ij of the edges that
    leave it (every destination i that reads it, its self loop included), averaged over
    heads, then over its T frames and the tracklets. Averaged over all nodes it is 1.
    ``layers``: one tuple per GAT layer; ``mean``: their mean; ``uniform``: the same sum
    for uniform attention (1 / in-degree) on the graph, the value without any preference.
    ``reproduction_error``: the largest |difference| between the recomputed layers (and
    embedding) and the model's own output: the weights are those the model used.
    """

    layers: tuple[Floats, ...]
    mean: Floats
    uniform: Floats
    reproduction_error: float


@dataclass(frozen=True)
class JointSaliency:
    """Gradient saliency of the embedding e (the eval embedding, L2-normalised) per joint.

    With J = d e / d keypoints (e: C channels, keypoints [T, 17, 3]), per tracklet
    ``per_coordinate[j][k] = sqrt(sum_c sum_t J[c, t, j, k]^2)`` for k in (x, y, conf) and
    ``total[j] = sqrt(sum_k per_coordinate[j][k]^2)`` (the Frobenius norm of joint j's
    Jacobian block), both averaged over ``tracklets`` tracklets. Units: embedding change per
    unit of normalised coordinate / confidence.
    """

    per_coordinate: tuple[Floats, ...]
    total: Floats
    tracklets: int


@dataclass(frozen=True)
class PoolingMix:
    """The guided pooling's per-channel softmax weights over the exponents ``exponents``.

    Over every (tracklet, channel): ``weight_mean`` / ``weight_std`` per exponent, and
    ``dominant_share``: the fraction of them whose largest weight is on that exponent.
    """

    exponents: Floats
    weight_mean: Floats
    weight_std: Floats
    dominant_share: Floats


@dataclass(frozen=True)
class CorrectionProfile:
    """Size of the frame correction ||F'_t - F_t|| (L2 over channels; it includes the constant
    ``offset`` of ``model.frame_correction.offset``, norm offset * sqrt(C)).

    Per frame position t: mean and std over tracklets (absolute) and the mean of
    ||F'_t - F_t|| / ||F_t|| (``relative_mean``). Against the frame's mean keypoint confidence:
    ``bin_edges`` (the last bin includes 1), per bin the mean correction and the number of
    frames (``None`` for an empty bin), and the Pearson correlation over frames (None when
    either side is constant).
    """

    offset: float
    position_mean: Floats
    position_std: Floats
    relative_mean: Floats
    bin_edges: Floats
    bin_mean: tuple[float | None, ...]
    bin_frames: tuple[int, ...]
    correlation: float | None


@dataclass
class ModalityExplanation:
    """The four sections of one modality; ``absent`` maps a None section to the reason."""

    modality: str
    tracklets: int
    attention: JointAttention | None = None
    saliency: JointSaliency | None = None
    pooling: PoolingMix | None = None
    correction: CorrectionProfile | None = None
    absent: dict[str, str] = field(default_factory=dict)


@dataclass
class Explanation:
    """``star explain``'s result: the model's checkpoint and data, and one entry per modality."""

    checkpoint: str
    epoch: int
    dataset: str
    split: str
    seq_len: int
    max_tracklets: int
    counts: dict[str, dict[str, int]]  # per set of the split: tracklets per modality (all, not only those used)
    modalities: dict[str, ModalityExplanation]
    joints: tuple[str, ...] = COCO17_KEYPOINTS
    figures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The content of explain.json."""
        return {**asdict(self), "package_version": __version__}


def default_output_dir(checkpoint: str | Path) -> Path:
    """``explain/`` beside the checkpoint, as cmc.png lies beside metrics.json."""
    return Path(checkpoint).parent / "explain"


def _spread(count: int, limit: int) -> list[int]:
    """Indices of at most ``limit`` of ``count`` items (0 = all), evenly spread: deterministic."""
    if limit <= 0 or count <= limit:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, limit).round()})


def _limited(tracklets: list[Tracklet], limit: int) -> list[Tracklet]:
    return [tracklets[i] for i in _spread(len(tracklets), limit)]


def _measured(value: T | None) -> T:
    """A probe's measurement of a section's module; it is None only when the module is absent,
    and then ``explain_model`` skips the section (see ``_absent_reasons``)."""
    assert value is not None
    return value


def _uniform_received(model: STAR) -> torch.Tensor:
    graph = _measured(model.sequence_guidance).graph
    rowptr, col = cast(torch.Tensor, graph.rowptr).cpu().long(), cast(torch.Tensor, graph.col).cpu().long()
    degree = (rowptr[1:] - rowptr[:-1]).double()
    dst = torch.repeat_interleave(torch.arange(len(degree)), rowptr[1:] - rowptr[:-1])
    received = torch.zeros(len(degree), dtype=torch.float64).index_add(0, col, 1.0 / degree[dst])
    return received.view(graph.num_frames, -1).mean(dim=0)


def _floats(values: torch.Tensor | np.ndarray) -> Floats:
    return tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1))


def _attention(model: STAR, probes: list[BatchProbe]) -> JointAttention:
    layers = [torch.cat([_measured(p.received)[i] for p in probes]).mean(dim=(0, 1)) for i in range(2)]
    return JointAttention(
        layers=tuple(_floats(layer) for layer in layers),
        mean=_floats(torch.stack(layers).mean(dim=0)),
        uniform=_floats(_uniform_received(model)),
        reproduction_error=max(p.reproduction_error for p in probes),
    )


def _saliency(probes: list[BatchProbe]) -> JointSaliency:
    # only the batches holding one of the tracklets picked for saliency have it
    measured = [p.saliency_squares for p in probes if p.saliency_squares is not None]
    squares = torch.cat(measured).sum(dim=1)  # [N, 17, 3]
    return JointSaliency(
        per_coordinate=tuple(_floats(row) for row in squares.sqrt().mean(dim=0)),
        total=_floats(squares.sum(dim=2).sqrt().mean(dim=0)),
        tracklets=len(squares),
    )


def _pooling(model: STAR, probes: list[BatchProbe]) -> PoolingMix:
    weights = torch.cat([_measured(p.pool_weights) for p in probes])  # [N, P, C]
    flat = weights.transpose(0, 1).reshape(weights.shape[1], -1)  # [P, N*C]
    dominant = torch.bincount(flat.argmax(dim=0), minlength=flat.shape[0]).double() / flat.shape[1]
    return PoolingMix(
        exponents=_floats(cast(torch.Tensor, _measured(model.sequence_guidance).pooling.exponents).detach().cpu()),
        weight_mean=_floats(flat.mean(dim=1)),
        weight_std=_floats(flat.std(dim=1, unbiased=False)),
        dominant_share=_floats(dominant),
    )


def _correction(model: STAR, probes: list[BatchProbe]) -> CorrectionProfile:
    frames = torch.cat([_measured(p.frames) for p in probes])
    size = (torch.cat([_measured(p.corrected) for p in probes]) - frames).norm(dim=2)  # [N, T]
    relative = size / frames.norm(dim=2).clamp(min=1e-12)
    conf = torch.cat([p.confidence for p in probes]).numpy().ravel()
    values = size.numpy().ravel()
    edges = np.asarray(CONFIDENCE_BINS)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, len(edges) - 2)
    counts = [int((which == i).sum()) for i in range(len(edges) - 1)]
    means = [float(values[which == i].mean()) if n else None for i, n in enumerate(counts)]
    correlation = None
    if values.std() > 0 and conf.std() > 0:
        correlation = float(np.corrcoef(conf, values)[0, 1])
    return CorrectionProfile(
        offset=float(_measured(model.frame_correction).offset),
        position_mean=_floats(size.mean(dim=0)),
        position_std=_floats(size.std(dim=0, unbiased=False)),
        relative_mean=_floats(relative.mean(dim=0)),
        bin_edges=_floats(edges),
        bin_mean=tuple(means),
        bin_frames=tuple(counts),
        correlation=correlation,
    )


def _absent_reasons(model: STAR) -> dict[str, str]:
    reasons = {}
    if model.sequence_guidance is None:
        pooled = model.cfg.pooling.unguided
        reasons["attention"] = "model.sequence.enabled is false in the checkpoint: no keypoint graph"
        reasons["pooling"] = (
            f"model.sequence.enabled is false in the checkpoint: frames are pooled without a "
            f"skeleton (model.pooling.unguided: {pooled})"
        )
    if model.frame_correction is None:
        reasons["correction"] = "model.frame_correction.enabled is false in the checkpoint: frames are not corrected"
    if model.skeleton_encoder is None:
        reasons["saliency"] = (
            "the embedding does not depend on the keypoints: model.frame_correction.enabled and "
            "model.sequence.enabled are false in the checkpoint"
        )
    return reasons


def explain_model(
    model: STAR,
    tracklets: list[Tracklet],
    keypoints,
    cfg: RunConfig,
    device: torch.device,
    modality: str,
    saliency_tracklets: int = DEFAULT_SALIENCY_TRACKLETS,
) -> ModalityExplanation:
    """The sections of one modality's ``tracklets`` (already limited) for an eval-mode ``model``;
    the saliency on ``saliency_tracklets`` of them (spread; 0 = all)."""
    result = ModalityExplanation(modality=modality, tracklets=len(tracklets), absent=_absent_reasons(model))
    if not tracklets:
        for section in ("attention", "saliency", "pooling", "correction"):
            result.absent.setdefault(section, f"no {modality} tracklets in the split")
        return result
    loader = eval_loader(tracklets, keypoints, **eval_loader_settings(cfg), pin_memory=False)
    wanted = _spread(len(tracklets), saliency_tracklets) if "saliency" not in result.absent else []
    probes = []
    for batch in loader:
        first = int(batch["index"][0])
        rows = [i - first for i in wanted if first <= i < first + len(batch["index"])]
        probes.append(
            probe_batch(
                model,
                normalize_frames(batch["frames"].to(device)),
                batch["keypoints"].to(device),
                batch["modality"].to(device),
                saliency_rows=rows,
            )
        )
    if "attention" not in result.absent:
        result.attention = _attention(model, probes)
        result.pooling = _pooling(model, probes)
    if "saliency" not in result.absent:
        result.saliency = _saliency(probes)
    if "correction" not in result.absent:
        result.correction = _correction(model, probes)
    return result


def explain_checkpoint(
    cfg: RunConfig,
    checkpoint: str | Path,
    *,
    split: str = "test",
    max_tracklets: int = DEFAULT_MAX_TRACKLETS,
    saliency_tracklets: int = DEFAULT_SALIENCY_TRACKLETS,
    output_dir: str | Path | None = None,
    force: bool = False,
) -> Explanation:
    """Explain ``checkpoint`` on ``cfg``'s dataset (see the module docstring). ``output_dir``
    (None: nothing written): explain.json and the pictures, paths checked before any work."""
    if split not in EXPLAIN_SPLITS:
        raise ConfigError(f"--split {split!r} is not a split to explain; choose one of {', '.join(EXPLAIN_SPLITS)}")
    for flag, value in (("--max-tracklets", max_tracklets), ("--saliency-tracklets", saliency_tracklets)):
        if value < 0:
            raise ConfigError(f"{flag} must be >= 0 (0 = every tracklet), got {value}")
    if output_dir is not None:
        out = Path(output_dir)
        check_output_file(out / EXPLAIN_FILE, "explanation file", kind="metrics file", inputs=[checkpoint], force=force)
        for name in FIGURE_FILES:
            check_output_file(out / name, "explanation picture", kind="image", inputs=[checkpoint], force=force)
    sets = EXPLAIN_SPLITS[split]
    with dataset_read_lock(cfg.data.root, "star explain"):
        data = load_dataset(cfg.data.dataset, cfg.data.root, verbose=False, required_splits=sets)
        keypoints = open_keypoint_store(data, cfg.data.keypoints)
        trained = load_trained_model(checkpoint, cfg.train.device, cfg.model)
        tracklets = [t for name in sets for t in data.split(name)]
        modalities = {
            name: explain_model(
                trained.model,
                _limited([t for t in tracklets if t.modality == flag], max_tracklets),
                keypoints,
                cfg,
                trained.device,
                name,
                saliency_tracklets,
            )
            for flag, name in MODALITIES.items()
        }
    counts = {
        name: {m: sum(t.modality == flag for t in data.split(name)) for flag, m in MODALITIES.items()} for name in sets
    }
    result = Explanation(
        checkpoint=str(checkpoint),
        epoch=trained.epoch,
        dataset=data.name,
        split=split,
        seq_len=cfg.model.seq_len,
        max_tracklets=max_tracklets,
        counts=counts,
        modalities=modalities,
    )
    if output_dir is not None:
        path = prepare_output_file(Path(output_dir) / EXPLAIN_FILE, "explanation file")  # creates the folder
        result.figures = [p.name for p in write_figures(result.to_dict(), output_dir)]
        write_explanation(result, path)
    return result


def write_explanation(result: Explanation, path: str | Path) -> Path:
    """``result.to_dict()`` as JSON at ``path``, atomically."""
    path = prepare_output_file(path, "explanation file")
    return atomic_write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")
