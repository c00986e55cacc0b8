"""Tracklet embeddings and their ``.npz`` feature files (``star extract``).

:class:`Features` holds one embedding per tracklet plus its labels (``star.engine``'s
``extract_features`` makes them with a model); this module only holds, writes and
reads them, so evaluating or drawing saved features never imports the training engine.

A feature file holds one or more named sets (e.g. ``query`` and ``gallery``) as
``<name>_feats`` float32 [N, C], ``<name>_pids``, ``<name>_camids``,
``<name>_modalities`` int64 [N], ``<name>_paths`` str [N]; ``splits`` lists the
names and ``meta`` is a JSON string (package version plus whatever the caller adds).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..data.tracklet import Tracklet
from ..errors import StarError
from ..fileio import atomic_write
from ..output_paths import prepare_output_file

__all__ = ["Features", "FeatureFileError", "save_npz", "load_npz", "load_dataset_features", "require_sets"]

SINGLE_NAME = "features"  # the set name used when save_npz gets one Features
LABEL_FIELDS = ("pids", "camids", "modalities")


class FeatureFileError(StarError, ValueError):
    """A features ``.npz`` that is unreadable, incomplete or inconsistent; the message names the file."""


@dataclass
class Features:
    """Embeddings of N tracklets and their labels, row ``i`` = tracklet ``i``.

    ``feats``: float32 [N, C] CPU tensor; ``pids``, ``camids``, ``modalities``
    (0 infrared, 1 visible): int64 [N] arrays; ``paths``: the first frame path of
    each tracklet (its identifier).
    """

    feats: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray
    modalities: np.ndarray
    paths: list[str]

    def __post_init__(self) -> None:
        n = len(self.feats)
        for name in ("pids", "camids", "modalities", "paths"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Features.{name} has {len(getattr(self, name))} entries but feats has {n} rows")

    def __len__(self) -> int:
        return len(self.feats)

    def subset(self, index) -> Features:
        """The rows ``index`` (a boolean mask or integer indices) as a new ``Features``."""
        idx = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index, dtype=np.int64)
        return Features(
            feats=self.feats[torch.from_numpy(idx)],
            pids=self.pids[idx],
            camids=self.camids[idx],
            modalities=self.modalities[idx],
            paths=[self.paths[i] for i in idx.tolist()],
        )

    @classmethod
    def from_tracklets(cls, feats: torch.Tensor, tracklets: Sequence[Tracklet]) -> Features:
        """Features of ``tracklets`` (in order) with the given embeddings."""
        return cls(
            feats=feats,
            pids=np.array([t.pid for t in tracklets], dtype=np.int64),
            camids=np.array([t.camid for t in tracklets], dtype=np.int64),
            modalities=np.array([t.modality for t in tracklets], dtype=np.int64),
            paths=[t.paths[0] if len(t.paths) else t.tid for t in tracklets],
        )


def save_npz(
    features: Mapping[str, Features] | Features, path: str | Path, *, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write one ``Features`` (stored as set ``"features"``) or named sets to ``path`` (``.npz``).

    The file is written under a temporary name and renamed, never left half-written.
    ``meta`` (JSON-serialisable) is stored with the package version.
    """
    sets = {SINGLE_NAME: features} if isinstance(features, Features) else dict(features)
    arrays: dict[str, Any] = {}  # np.savez's keywords: Any, as none of these names is allow_pickle
    for name, f in sets.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"feature set names must be non-empty strings, got {name!r}")
        arrays[f"{name}_feats"] = f.feats.detach().float().cpu().numpy()
        arrays[f"{name}_pids"] = np.asarray(f.pids, dtype=np.int64)
        arrays[f"{name}_camids"] = np.asarray(f.camids, dtype=np.int64)
        arrays[f"{name}_modalities"] = np.asarray(f.modalities, dtype=np.int64)
        arrays[f"{name}_paths"] = np.array([str(p) for p in f.paths], dtype=np.str_).reshape(len(f.paths))
    arrays["splits"] = np.array(list(sets), dtype=np.str_)
    arrays["meta"] = np.array(json.dumps({"package_version": __version__, **dict(meta or {})}))
    path = prepare_output_file(path, "features file")
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def load_npz(path: str | Path, *, with_meta: bool = False):
    """Read a file of ``save_npz``: ``{name: Features}`` (``"features"`` for a single set);
    with ``with_meta``, ``(sets, meta dict)``. A file that is not such a features file
    (unreadable, truncated, a key missing, shapes that do not agree) is a ``FeatureFileError``
    naming it and what is wrong."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FeatureFileError(f"features file not found: {path}") from None
    except IsADirectoryError:
        raise FeatureFileError(f"features file {path} is a folder, not a .npz file") from None
    except (zipfile.BadZipFile, EOFError) as exc:
        raise FeatureFileError(f"{path} is not a complete features .npz (truncated or damaged: {exc})") from None
    except ValueError:  # numpy found neither a zip archive nor a .npy header
        raise FeatureFileError(
            f"{path} is not a features .npz written by `star extract` (neither a zip archive of arrays nor a .npy file)"
        ) from None
    except OSError as exc:
        raise FeatureFileError(f"{path} cannot be read: {exc}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise FeatureFileError(f"{path} is a single .npy array, not a features .npz written by `star extract`")
    with z:
        return _read_sets(path, z, with_meta)


def load_dataset_features(path: str | Path, dataset: str) -> dict[str, Features]:
    """``load_npz(path)`` for evaluating under ``dataset``'s protocol: a file that ``star extract``
    wrote from another dataset is a ``FeatureFileError`` naming both (its labels would be scored
    under the wrong protocol)."""
    sets, meta = load_npz(path, with_meta=True)
    written_from = meta.get("dataset") if isinstance(meta, dict) else None
    if written_from is not None and written_from != dataset:
        raise FeatureFileError(
            f"{path} holds features of dataset {written_from!r} but the config evaluates {dataset!r}; "
            f"pass the config of the run that extracted them (data.dataset: {written_from})"
        )
    return sets


def require_sets(sets: Mapping[str, Features], names: Sequence[str], source: str | Path) -> None:
    """Every set of ``names`` (e.g. ``query`` and ``gallery``) is in ``sets`` read from ``source``."""
    missing = [n for n in names if n not in sets]
    if missing:
        raise FeatureFileError(f"{source}: needs {' and '.join(names)} features, found {', '.join(sets) or 'none'}")


def _read_sets(path: Path, z: np.lib.npyio.NpzFile, with_meta: bool):
    def array(key: str) -> np.ndarray:
        if key not in z.files:
            raise FeatureFileError(f"{path}: key {key!r} is missing (the file has {', '.join(z.files) or 'no keys'})")
        try:
            return z[key]
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise FeatureFileError(f"{path}: key {key!r} cannot be read ({exc})") from None

    names = [str(s) for s in np.atleast_1d(array("splits"))]
    sets = {}
    for name in names:
        feats = array(f"{name}_feats")
        if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.floating):
            raise FeatureFileError(
                f"{path}: {name}_feats must be a 2-D float array [N, C], got shape {feats.shape} dtype {feats.dtype}"
            )
        columns = {}
        for field in (*LABEL_FIELDS, "paths"):
            values = array(f"{name}_{field}")
            if values.shape != (len(feats),):
                raise FeatureFileError(
                    f"{path}: {name}_{field} has shape {values.shape} but {name}_feats has {len(feats)} rows"
                )
            if field != "paths" and not np.issubdtype(values.dtype, np.integer):
                raise FeatureFileError(f"{path}: {name}_{field} must hold integers, got dtype {values.dtype}")
            columns[field] = values
        sets[name] = Features(
            feats=torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)),
            **{field: columns[field].astype(np.int64) for field in LABEL_FIELDS},
            paths=[str(p) for p in columns["paths"]],
        )
    if not with_meta:
        return sets
    try:
        meta = json.loads(str(array("meta"))) if "meta" in z.files else {}
    except json.JSONDecodeError as exc:
        raise FeatureFileError(f"{path}: key 'meta' is not JSON ({exc})") from None
    return sets, meta
