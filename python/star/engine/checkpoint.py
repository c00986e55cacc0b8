"""Training checkpoints: their layout, atomic writes, safe loading, RNG state capture,
config compatibility.

A checkpoint is a plain dict saved with ``torch.save``; everything in it (tensors,
numbers, strings, lists, tuples, dicts) loads with ``torch.load(weights_only=True)``,
so reading a checkpoint never executes pickled code. ``save_checkpoint`` writes a
temporary file in the target directory, fsyncs it and renames it over the target:
a crash at any moment leaves either the previous file or the new one, never a
half-written file.

Layout (``version`` 3, see :func:`training_state` and :func:`best_state`): ``config`` is
the run's ``RunConfig.to_dict()`` and ``num_classes`` (the training identities) sits
next to it. :func:`load_checkpoint` upgrades older files, so they still load and resume:
version 1 (before the typed model config) kept ``num_classes`` also inside
``config["model"]``; versions up to 2 predate the switches between the authors' release
and our variants (README, "Deviations from the authors' release"), and their models
were built with the variants that were the only behaviour then (:data:`PRE_V3_MODEL_SWITCHES`).
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..config import RunConfig
from ..config_tree import key_matches, keys_where
from ..dotted_keys import flatten
from ..errors import StarError
from ..fileio import atomic_write

CHECKPOINT_VERSION = 3

# The model switches that checkpoints of version <= 2 do not record, at the values their
# models were built with (the only behaviour at the time).
PRE_V3_MODEL_SWITCHES: dict[str, Any] = {
    "style": {
        "augment_space": "raw",
        "augment_per": "tracklet",
        "adain_std": "biased",
        "adain_detach_style": True,
        "partners_per": "tracklet",
        "cross_source": "clean",
        "branch_batches": "joint",
    },
    "skeleton": {"angle": "cos_sin", "undetected": "zero", "aspect_scale": True, "edge_code": "final_states"},
    "frame_correction": {"offset": 0.0},
    "sequence": {"spatial_edges": "all_frames", "readout": "linear", "pose_classifier_bias": False},
    "pooling": {"floor": 0.0, "unguided": "mean"},
    "neck_init": "ones",
}
# Before version 3 the bone encoding was feature-major (all lengths, all cos, all sin); it is
# bone-major now (length, cos, sin of bone 1, then bone 2, ...): the embedding's columns move.
PRE_V3_BONE_EMBEDDING = "skeleton_encoder.embed.weight"
PRE_V3_FEATURES_PER_BONE = 3
# Fixed pooling exponents were a state-dict buffer before version 3; they now come from the config.
PRE_V3_EXPONENT_BUFFER = "sequence_guidance.pooling.exponents"
LAST = "last.pt"
BEST = "best.pt"

# Settings that may change between an interrupted run and its resumption: those of a
# resumable kind (star.config_tree.Kind: paths, logging, runtime, numerics, evaluation,
# data generation, the number of epochs); every other key of the resolved config (model,
# loss, optimiser recipe, batch composition, seed, ...) must match the checkpoint.
# Entries ending in "." are sections.
RESUMABLE_CHANGES: tuple[str, ...] = keys_where(RunConfig, lambda kind: kind.resumable)


class CheckpointError(StarError, RuntimeError):
    """A checkpoint cannot be read or does not fit the current run."""


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """``torch.save(state)`` to ``path`` atomically and durably (temp file in the same dir, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: torch.save(dict(state), f), durable=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by the trainer; ``CheckpointError`` naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # torch's own message spans many lines and advises weights_only=False, which would run
        # pickled code from an unknown file: name the file and the kind of failure only.
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a star checkpoint or a damaged file ({type(exc).__name__})"
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a star training checkpoint (no 'model' entry)")
    version = state.get("version", 0)
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer star-reid (checkpoint version {version} > {CHECKPOINT_VERSION})"
        )
    return _upgrade(state, path, version)


def _upgrade(state: dict[str, Any], path: Path, version: int) -> dict[str, Any]:
    """An older checkpoint in the current layout (see the module docstring)."""
    config = state.get("config")
    if version >= CHECKPOINT_VERSION or not isinstance(config, dict):  # no run config: nothing to upgrade
        return state
    model = config.get("model")
    if version < 2 and isinstance(model, dict) and "num_classes" in model:
        model = dict(model)
        state.setdefault("num_classes", model.pop("num_classes"))
    if "num_classes" not in state:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} records no num_classes (neither at top level nor "
            f"in config.model); it cannot be rebuilt by this star-reid (format version {CHECKPOINT_VERSION})"
        )
    if isinstance(model, dict):
        model = _with_defaults(model, PRE_V3_MODEL_SWITCHES)
        weights, pooling = state["model"], model.get("pooling")
        learnable = isinstance(pooling, dict) and pooling.get("learnable", False)
        if isinstance(weights, dict):
            weights = {k: v for k, v in weights.items() if learnable or k != PRE_V3_EXPONENT_BUFFER}
            embedding = weights.get(PRE_V3_BONE_EMBEDDING)
            if isinstance(embedding, torch.Tensor) and embedding.dim() == 2:
                weights[PRE_V3_BONE_EMBEDDING] = _bone_major(embedding)
            state["model"] = weights
        state["config"] = {**config, "model": model}
    return state


def _bone_major(weight: torch.Tensor) -> torch.Tensor:
    """A bone embedding's weight [E, 3 * bones] with feature-major columns, bone-major."""
    rows, cols = weight.shape
    if cols % PRE_V3_FEATURES_PER_BONE:  # a damaged tensor: left for load_state_dict to name
        return weight
    return weight.reshape(rows, PRE_V3_FEATURES_PER_BONE, -1).transpose(1, 2).reshape(rows, cols).contiguous()


def _with_defaults(section: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``section`` with the keys of ``defaults`` it lacks (nested sections merged)."""
    out = dict(section)
    for key, value in defaults.items():
        if isinstance(value, Mapping):
            current = out.get(key) or {}
            if isinstance(current, Mapping):  # a damaged section is left for the config check to name
                out[key] = _with_defaults(current, value)
        else:
            out.setdefault(key, value)
    return out


# ----------------------------------------------------------------------------- layout


def training_state(
    *,
    epoch: int,
    step: int,
    model: Mapping[str, Any],
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    scaler: Mapping[str, Any],
    sampler: Mapping[str, Any],
    rng: list[Any],
    loader_generator: list[Any],
    num_classes: int,
    config: Mapping[str, Any],
    dataset: Mapping[str, str],
    best: Mapping[str, Any],
    last_metrics: Any,
    eval_pending: bool,
) -> dict[str, Any]:
    """``last.pt``: everything a resumed run needs. ``rng`` / ``loader_generator`` hold one
    entry per rank; ``epoch`` is the number of epochs done, ``step`` the optimiser steps;
    ``eval_pending``: the evaluation after this epoch has not finished yet; ``dataset``: the
    training data's ``name``, ``root`` and ``fingerprint`` (``VideoReidData.fingerprint``)."""
    return {
        **_identity(epoch, step, model),
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": scaler,
        "sampler": sampler,
        "rng": rng,
        "loader_generator": loader_generator,
        "world_size": len(rng),
        "num_classes": num_classes,
        "config": config,
        "dataset": dict(dataset),
        "best": dict(best),
        "last_metrics": last_metrics,
        "eval_pending": eval_pending,
        "time": time.time(),
    }


def best_state(
    *,
    epoch: int,
    step: int,
    model: Mapping[str, Any],
    num_classes: int,
    config: Mapping[str, Any],
    dataset: Mapping[str, str],
    metrics: Mapping[str, Any],
) -> dict[str, Any]:
    """``best.pt``: the weights of the best evaluation so far and its metrics summary."""
    return {
        **_identity(epoch, step, model),
        "num_classes": num_classes,
        "config": config,
        "dataset": dict(dataset),
        "metrics": metrics,
    }


def _identity(epoch: int, step: int, model: Mapping[str, Any]) -> dict[str, Any]:
    """What every checkpoint starts with: format and package version, where in the run, the weights."""
    return {"version": CHECKPOINT_VERSION, "package_version": __version__, "epoch": epoch, "step": step, "model": model}


# ----------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy (legacy global), torch CPU and every CUDA device's RNG state, as plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": (py_version, tuple(py_state), py_gauss),
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`; CUDA states are restored when the device count matches."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(
                f"checkpoint holds the RNG state of {len(cuda)} CUDA devices, this machine has "
                f"{torch.cuda.device_count()}; CUDA RNG not restored (a resumed run will not reproduce exactly)",
                stacklevel=2,
            )


class preserved_rng:
    """Context manager: whatever runs inside (e.g. an evaluation) leaves every RNG as it found it."""

    def __enter__(self) -> preserved_rng:
        self._state = capture_rng_state()
        return self

    def __exit__(self, *exc: object) -> None:
        restore_rng_state(self._state)


# ----------------------------------------------------------------------------- config


def _shown(value: Any, missing: object) -> str:
    return "(absent)" if value is missing else repr(value)


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], allowed: Iterable[str] = RESUMABLE_CHANGES
) -> list[str]:
    """``"key: checkpoint X, now Y"`` for every flattened key that differs and may not change."""
    a, b = flatten(saved), flatten(current)
    allowed = tuple(allowed)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key_matches(key, allowed):
            continue
        missing = object()
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            diffs.append(f"{key}: checkpoint {_shown(va, missing)}, now {_shown(vb, missing)}")
    return diffs


def check_resumable(
    ckpt: Mapping[str, Any],
    path: Path,
    config: Mapping[str, Any],
    num_classes: int,
    epochs: int,
    dataset: Mapping[str, str],
) -> None:
    """``CheckpointError`` unless run ``config`` (``RunConfig.to_dict()``, ``num_classes``
    identities, ``epochs`` in all, training on ``dataset``: name, root, fingerprint) may continue
    from ``ckpt``, read from ``path``."""
    # num_classes is not part of the config, but a checkpoint for another identity count cannot resume either
    saved = {**ckpt.get("config", {}), "num_classes": ckpt.get("num_classes")}
    diffs = config_differences(saved, {**config, "num_classes": num_classes})
    if diffs:
        raise CheckpointError(
            f"{path} was written by a run with a different configuration:\n  "
            + "\n  ".join(diffs)
            + "\nUse another output_dir for the new configuration, restore the old settings to resume, "
            "or set train.resume=false to start over (overwriting the checkpoint)."
        )
    saved_data = ckpt.get("dataset") or {}  # absent in checkpoints written before the data check existed
    if saved_data.get("fingerprint") not in (None, dataset["fingerprint"]):
        raise CheckpointError(
            f"{path} was trained on other data: {saved_data.get('name')} at {saved_data.get('root')}, "
            f"this run reads {dataset['name']} at {dataset['root']} (the tracklet lists or frames differ). "
            "Use another output_dir for the new data, point data.root back to the old data to resume, "
            "or set train.resume=false to start over (overwriting the checkpoint)."
        )
    if ckpt["epoch"] > epochs:
        raise CheckpointError(
            f"{path} is at epoch {ckpt['epoch']}, beyond optim.epochs={epochs}; "
            "raise optim.epochs or use another output_dir"
        )
