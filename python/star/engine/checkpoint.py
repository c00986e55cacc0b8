"""Training checkpoints: atomic writes, safe loading, RNG state capture, config compatibility.

A checkpoint is a plain dict saved with ``torch.save``; everything in it (tensors,
numbers, strings, lists, tuples, dicts) loads with ``torch.load(weights_only=True)``,
so reading a checkpoint never executes pickled code. ``save_checkpoint`` writes a
temporary file in the target directory, fsyncs it and renames it over the target:
a crash at any moment leaves either the previous file or the new one, never a
half-written file.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import StarError
from ..fileio import atomic_write

CHECKPOINT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"

# Settings that may change between an interrupted run and its resumption; every other
# key of the resolved config (model, loss, optimiser recipe, batch composition, seed, ...)
# must match the checkpoint. Entries ending in "." are prefixes.
RESUMABLE_CHANGES: tuple[str, ...] = (
    "output_dir",
    "deterministic",
    "train.",
    "eval.",
    "data.root",
    "data.keypoints",
    "data.num_workers",
    "data.eval_batch_size",
    "data.synthetic.",
    "optim.epochs",
)


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
    return state


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

    def __enter__(self) -> "preserved_rng":
        self._state = capture_rng_state()
        return self

    def __exit__(self, *exc: object) -> None:
        restore_rng_state(self._state)


# ----------------------------------------------------------------------------- config


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists/tuples become lists."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def _may_change(key: str, allowed: Iterable[str]) -> bool:
    return any(key.startswith(a) if a.endswith(".") else key == a for a in allowed)


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], allowed: Iterable[str] = RESUMABLE_CHANGES
) -> list[str]:
    """``"key: checkpoint X, now Y"`` for every flattened key that differs and may not change."""
    a, b = flatten(saved), flatten(current)
    allowed = tuple(allowed)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if _may_change(key, allowed):
            continue
        missing = object()
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            fmt = lambda v: "(absent)" if v is missing else repr(v)  # noqa: E731
            diffs.append(f"{key}: checkpoint {fmt(va)}, now {fmt(vb)}")
    return diffs
