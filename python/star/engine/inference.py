"""Using a trained checkpoint: rebuild the model, evaluate, extract features, draw rank lists.

These are the library halves of ``star eval``, ``star extract`` and ``star visrank``.
A checkpoint (``last.pt`` or ``best.pt``) carries the resolved configuration of
its run, so ``run_config_from_checkpoint`` gives back a ``RunConfig`` that the
caller may override (e.g. another ``data.root`` or ``eval.rerank=true``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..config import RunConfig
from ..data import KeypointStore, VideoReidData, load_dataset, open_keypoint_store
from ..models import STAR, ModelConfig
from .checkpoint import CheckpointError, load_checkpoint
from .evaluator import EvalResult, evaluate
from .features import Features, extract_features, save_npz
from .runtime import resolve_device
from .visrank import write_rank_lists


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, in eval mode on ``device``."""

    model: STAR
    checkpoint: Path
    epoch: int
    device: torch.device


def run_config_from_checkpoint(checkpoint: str | Path) -> dict[str, Any]:
    """The resolved config of the run that wrote ``checkpoint`` as a plain dict
    (``model.num_classes`` removed, so it loads as a ``RunConfig`` section)."""
    state = load_checkpoint(checkpoint)
    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{checkpoint} holds no run configuration; pass --config")
    config = dict(config)
    config["model"] = {k: v for k, v in dict(config.get("model", {})).items() if k != "num_classes"}
    return config


def load_trained_model(checkpoint: str | Path, device: str | torch.device = "auto") -> TrainedModel:
    """Rebuild the network of ``checkpoint`` from its own model config and load its weights."""
    state = load_checkpoint(checkpoint)
    config = state.get("config") or {}
    if "model" not in config or "num_classes" not in state:
        raise CheckpointError(f"{checkpoint} does not record its model configuration")
    model_cfg = ModelConfig.from_dict({**config["model"], "backbone": {**config["model"]["backbone"], "pretrained": None}})
    model = STAR(model_cfg, state["num_classes"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the recorded model configuration: {exc}") from None
    device = resolve_device(device) if isinstance(device, str) else device
    return TrainedModel(model.to(device).eval(), Path(checkpoint), int(state.get("epoch", 0)), device)


def load_eval_data(cfg: RunConfig, *, verbose: bool = True) -> tuple[VideoReidData, KeypointStore]:
    """The dataset and keypoint store named by ``cfg.data`` (checked before any model work)."""
    data = load_dataset(cfg.data.dataset, cfg.data.root, verbose=verbose)
    for split in ("query", "gallery"):
        if not data.split(split):
            raise ValueError(f"{cfg.data.dataset} at {cfg.data.root}: the {split} split is empty")
    return data, open_keypoint_store(data, cfg.data.keypoints)


def _check_seq_len(trained: TrainedModel, cfg: RunConfig) -> None:
    want, have = cfg.model.seq_len, trained.model.cfg.seq_len
    if want != have:
        raise ValueError(f"model.seq_len is {want} in the config but the checkpoint's model uses {have}")


def evaluate_checkpoint(
    cfg: RunConfig,
    checkpoint: str | Path,
    *,
    output_dir: Optional[str | Path] = None,
    visrank: bool = True,
) -> EvalResult:
    """Evaluate ``checkpoint`` on ``cfg``'s test split (both modes); writes ``metrics.json``
    (and rank lists when ``visrank``) into ``output_dir`` when given. Progress bars follow
    ``cfg.train.progress``."""
    data, keypoints = load_eval_data(cfg)
    trained = load_trained_model(checkpoint, cfg.train.device)
    _check_seq_len(trained, cfg)
    return evaluate(
        trained.model, data, keypoints, cfg,
        device=trained.device, output_dir=output_dir, progress=cfg.train.progress, visrank=visrank,
    )


def extract_checkpoint_features(
    cfg: RunConfig, checkpoint: str | Path, out: str | Path, *, splits: tuple[str, ...] = ("query", "gallery")
) -> dict[str, Features]:
    """Embeddings of ``splits`` with pids, cameras, modalities and paths, saved to ``out`` (.npz)."""
    data, keypoints = load_eval_data(cfg)
    trained = load_trained_model(checkpoint, cfg.train.device)
    _check_seq_len(trained, cfg)
    features = {
        split: extract_features(
            trained.model, data.split(split), keypoints,
            num_frames=trained.model.cfg.seq_len, height=cfg.data.height, width=cfg.data.width,
            batch_size=cfg.data.eval_batch_size, num_workers=cfg.data.num_workers, device=trained.device,
            amp=cfg.train.amp and trained.device.type == "cuda", progress=cfg.train.progress,
        )
        for split in splits
    }
    save_npz(features, out, meta={"checkpoint": str(checkpoint), "epoch": trained.epoch, "dataset": data.name})
    return features


def rank_lists_from_features(
    cfg: RunConfig, features: dict[str, Features], out_dir: str | Path, *, topk: int = 10, num_queries: int = 8
) -> list[Path]:
    """Rank-list pictures for ``cfg``'s dataset from saved query/gallery features."""
    missing = [s for s in ("query", "gallery") if s not in features]
    if missing:
        raise ValueError(f"the features hold no {' / '.join(missing)} split (found: {', '.join(features)})")
    data, keypoints = load_eval_data(cfg, verbose=False)
    return write_rank_lists(
        data, keypoints, features["query"], features["gallery"], out_dir,
        topk=topk, num_queries=num_queries, protocol=cfg.eval.protocol,
    )
