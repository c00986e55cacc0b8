"""Using a trained checkpoint: rebuild the model, evaluate, extract features, draw rank lists.

These are the library halves of ``star eval``, ``star extract`` and ``star visrank``.
A checkpoint (``last.pt`` or ``best.pt``) carries the resolved configuration of
its run, so ``run_config_from_checkpoint`` gives back a ``RunConfig`` that the
caller may override (e.g. another ``data.root`` or ``eval.rerank=true``).

The network is always the checkpoint's: the config's model section may change only the
evaluation-time switches (``EVAL_TIME_MODEL_KEYS``: which embedding is returned, fused
or reference ops); a training-only setting (``TRAINING_ONLY_MODEL_KEYS``) is ignored;
any other model key that differs from the checkpoint's (another backbone, ``seq_len``,
a ``--config`` of another architecture) is a ``ConfigError`` listing the differences.
Output paths are checked before the model is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, RunConfig
from ..config_tree import Kind, keys_where
from ..data import KeypointStore, VideoReidData, load_dataset, open_keypoint_store
from ..data.synthetic import dataset_read_lock
from ..models import STAR, CompiledNetwork, ModelConfig, build_network
from ..output_paths import check_folder_free, check_output_dir, check_output_file
from ..reports.feature_files import Features, require_sets, save_npz
from ..reports.metrics_file import check_metrics_outputs
from ..reports.rank_lists import write_rank_lists
from .checkpoint import CheckpointError, config_differences, load_checkpoint
from .evaluator import EvalResult, evaluate, extraction_settings
from .feature_extraction import extract_features
from .runtime import resolve_device

# Model keys a config may change at evaluation: the same weights, another embedding / kernel
# (the evaluation and numerics kinds of star.config_tree.Kind).
EVAL_TIME_MODEL_KEYS = keys_where(ModelConfig, lambda kind: kind in (Kind.EVALUATION, Kind.NUMERICS), "model.")
# Model keys that only act while training (or before it: the initial weights; the training
# kind); at evaluation the checkpoint's values hold and the config's are not compared.
TRAINING_ONLY_MODEL_KEYS = keys_where(ModelConfig, lambda kind: kind is Kind.TRAINING, "model.")


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, in eval mode on ``device``."""

    model: STAR
    checkpoint: Path
    epoch: int
    device: torch.device


def run_config_from_checkpoint(checkpoint: str | Path) -> dict[str, Any]:
    """The resolved config of the run that wrote ``checkpoint`` as a plain dict (older
    checkpoints are upgraded by ``load_checkpoint``, so it loads as a ``RunConfig``)."""
    state = load_checkpoint(checkpoint)
    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{checkpoint} holds no run configuration; pass --config")
    model = config.get("model", {})
    if not isinstance(model, Mapping):
        raise CheckpointError(f"{checkpoint}: the recorded model configuration is not a mapping: {model!r}")
    return dict(config)


def load_trained_model(
    checkpoint: str | Path, device: str | torch.device = "auto", model: Any | None = None
) -> TrainedModel:
    """Rebuild the network of ``checkpoint`` from its own model config and load its weights.

    ``model``: the model section the caller was configured with (a mapping of
    ``ModelConfig`` fields or a ``ModelConfig``); its evaluation-time switches are applied,
    and any architecture key that differs from the checkpoint's is a ``ConfigError``
    (see the module doc). ``None``: the checkpoint's model as it was trained.
    """
    state = load_checkpoint(checkpoint)
    config = state.get("config") or {}
    if "model" not in config or "num_classes" not in state:
        raise CheckpointError(f"{checkpoint} does not record its model configuration")
    try:
        num_classes = int(state["num_classes"])
        saved = _model_fields(config["model"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint}: the recorded model configuration is invalid: {exc}") from None
    chosen = saved if model is None else _evaluation_model(checkpoint, saved, _model_fields(model))
    built = _build_model({**chosen, "backbone": {**chosen["backbone"], "pretrained": None}}, num_classes)
    try:
        built.load_state_dict(state["model"])
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the recorded model configuration: {exc}") from None
    if isinstance(device, str):
        device = resolve_device(device)
    epoch = state.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise CheckpointError(f"{checkpoint}: 'epoch' must be an integer, got {epoch!r}")
    return TrainedModel(built.to(device).eval(), Path(checkpoint), epoch, device)


def _model_fields(model: Any) -> dict[str, Any]:
    """Every ``ModelConfig`` field of ``model`` (a mapping or a ``ModelConfig``) as a nested dict,
    defaults filled in (a mapping is checked as the config loader checks it)."""
    if not dataclasses.is_dataclass(model):
        model = ModelConfig.from_dict(dict(model))
    return dataclasses.asdict(model)


def _evaluation_model(checkpoint: str | Path, saved: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's model with the requested evaluation-time switches; other differences are errors."""
    diffs = config_differences(
        {"model": saved}, {"model": requested}, allowed=EVAL_TIME_MODEL_KEYS + TRAINING_ONLY_MODEL_KEYS
    )
    if diffs:
        raise ConfigError(
            f"the config asks for another model than {checkpoint} holds: {'; '.join(diffs)}; "
            f"only {', '.join(EVAL_TIME_MODEL_KEYS)} may change at evaluation "
            "(drop the other model overrides, or pass the run's own config.yaml)"
        )
    switches = {key.split(".", 1)[1] for key in EVAL_TIME_MODEL_KEYS}
    return {**saved, **{k: v for k, v in requested.items() if k in switches}}


def _build_model(tree: Mapping[str, Any], num_classes: int) -> STAR:
    """STAR from a model-fields tree and the number of training identities (its weights come
    from the checkpoint next: no pretrained file is looked for)."""
    return build_network(tree, num_classes, pretrained=False)[0]


def network_to_run(model: STAR, cfg: RunConfig) -> torch.nn.Module:
    """``model``, through torch.compile when ``cfg.train.compile``."""
    return CompiledNetwork(model, backend=cfg.train.compile_backend) if cfg.train.compile else model


def load_eval_data(cfg: RunConfig, *, verbose: bool = True) -> tuple[VideoReidData, KeypointStore]:
    """The dataset and keypoint store named by ``cfg.data`` (checked before any model work)."""
    data = load_dataset(cfg.data.dataset, cfg.data.root, verbose=verbose, required_splits=("query", "gallery"))
    return data, open_keypoint_store(data, cfg.data.keypoints)


def evaluate_checkpoint(
    cfg: RunConfig,
    checkpoint: str | Path,
    *,
    output_dir: str | Path | None = None,
    visrank: bool = True,
    force: bool = False,
) -> EvalResult:
    """Evaluate ``checkpoint`` on ``cfg``'s test split (both modes); writes ``metrics.json``
    (and rank lists when ``visrank``) into ``output_dir`` when given. Progress bars follow
    ``cfg.train.progress``."""
    if output_dir is not None:
        check_metrics_outputs(output_dir, inputs=[checkpoint], force=force)
        if visrank:
            check_output_dir(Path(output_dir) / "visrank", "rank-list folder")
    with dataset_read_lock(cfg.data.root, "star eval"):
        data, keypoints = load_eval_data(cfg)
        trained = load_trained_model(checkpoint, cfg.train.device, cfg.model)
        return evaluate(
            network_to_run(trained.model, cfg),
            data,
            keypoints,
            cfg,
            device=trained.device,
            output_dir=output_dir,
            progress=cfg.train.progress,
            visrank=visrank,
        )


def extract_checkpoint_features(
    cfg: RunConfig,
    checkpoint: str | Path,
    out: str | Path,
    *,
    splits: tuple[str, ...] = ("query", "gallery"),
    force: bool = False,
) -> dict[str, Features]:
    """Embeddings of ``splits`` with pids, cameras, modalities and paths, saved to ``out`` (.npz).
    ``out`` follows the output rules of ``star.output_paths.check_output_file`` (``force``: replace
    an existing file of another kind)."""
    check_output_file(out, "features file", kind="features file", inputs=[checkpoint], force=force)
    with dataset_read_lock(cfg.data.root, "star extract"):
        data, keypoints = load_eval_data(cfg)
        trained = load_trained_model(checkpoint, cfg.train.device, cfg.model)
        network = network_to_run(trained.model, cfg)
        features = {
            split: extract_features(
                network,
                data.split(split),
                keypoints,
                **extraction_settings(cfg, trained.device, progress=cfg.train.progress),
            )
            for split in splits
        }
    save_npz(features, out, meta={"checkpoint": str(checkpoint), "epoch": trained.epoch, "dataset": data.name})
    return features


def rank_lists_from_features(
    cfg: RunConfig, features: dict[str, Features], out_dir: str | Path, *, topk: int = 10, num_queries: int = 8
) -> list[Path]:
    """Rank-list pictures for ``cfg``'s dataset from saved query/gallery features."""
    require_sets(features, ("query", "gallery"), "the features")
    check_output_dir(out_dir, "rank-list folder")
    check_folder_free(out_dir, "rank lists")
    with dataset_read_lock(cfg.data.root, "star visrank"):
        data, keypoints = load_eval_data(cfg, verbose=False)
        return write_rank_lists(
            data,
            keypoints,
            features["query"],
            features["gallery"],
            out_dir,
            topk=topk,
            num_queries=num_queries,
            protocol=cfg.eval.protocol,
        )
