"""Keypoint store (docs/protocols.md): per-split COCO-17 keypoint arrays aligned with a frame index.

Layout of a store directory (by default ``<dataset root>/keypoints``)::

    meta.json             pose model, input size, keypoint order, created-at, package version,
                          and per split: num_frames, dtype, index file, index sha256
    <split>.npy           float16/float32 [num_frames, 17, 3]: x, y in [0, 1] of the frame, conf in [0, 1]
    <split>.index.txt     the frame keys, one per line (optional: without it, the split is
                          checked against the dataset's own index by length and sha256)

Row ``i`` of ``<split>.npy`` belongs to frame ``i`` of the dataset's frame index for that
split (for HITSZ-VCM: line ``i + 1`` of the name file). A frame without detection has
conf 0 (and x = y = 0). Arrays are memory-mapped, opened lazily in each process, so a
store can be shared with DataLoader workers (fork or spawn) without copying.
"""

from __future__ import annotations

import datetime as _dt
import json
import tokenize
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._version import __version__
from ..fileio import atomic_write, lines_digest
from .errors import DataFormatError, KeypointStoreError
from .keypoint_values import first_bad_value
from .skeleton import COCO17_KEYPOINTS, NUM_COCO_KEYPOINTS
from .source_files import read_lines, read_text
from .tracklet import FrameIndex, VideoReidData

META_FILE = "meta.json"
STORE_FORMAT = 1
_DTYPES = ("float16", "float32")
_NPY_MAGIC = b"\x93NUMPY"


index_digest = lines_digest  # sha256 of the frame keys joined by newlines


def write_keypoints(
    store_dir: str | Path,
    split: str,
    keypoints: np.ndarray,
    index: Sequence[str],
    *,
    pose_model: str,
    input_size: tuple[int, int] | None = None,
    dtype: str = "float16",
    write_index: bool = True,
) -> Path:
    """Write (or replace) one split of a keypoint store and record it in ``meta.json``.

    ``keypoints`` is [len(index), 17, 3] and follows ``keypoint_values``' rules (``ValueError``
    otherwise); ``index`` the frame keys in row order;
    ``input_size`` the pose model's input (height, width). Every file is written to a
    temporary name and renamed, so an interrupted write never leaves a torn store.
    Returns the path of the ``.npy`` file.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    keypoints = np.asarray(keypoints)
    if keypoints.shape != (len(index), NUM_COCO_KEYPOINTS, 3):
        raise ValueError(
            f"keypoints must be [{len(index)}, {NUM_COCO_KEYPOINTS}, 3] (one row per index key), got {keypoints.shape}"
        )
    with np.errstate(over="ignore"):  # float16 turns large values into inf: checked after the cast
        stored = keypoints.astype(dtype, copy=False)
    bad = first_bad_value(stored)
    if bad is not None:
        row, what = bad
        raise ValueError(f"keypoints row {row} (frame {index[row]!r}): {what}; nothing written")
    store = Path(store_dir)
    store.mkdir(parents=True, exist_ok=True)
    npy = store / f"{split}.npy"
    atomic_write(npy, lambda f: np.save(f, stored))
    index_file = None
    if write_index:
        index_file = f"{split}.index.txt"
        atomic_write(store / index_file, lambda f: f.write("".join(f"{k}\n" for k in index)), mode="w")
    else:
        (store / f"{split}.index.txt").unlink(missing_ok=True)  # a stale index would contradict the new array

    meta_path = store / META_FILE
    meta = _read_meta(meta_path) if meta_path.exists() else {"splits": {}}
    meta.update(
        format=STORE_FORMAT,
        pose_model=pose_model,
        input_size=list(input_size) if input_size is not None else None,
        keypoint_order=list(COCO17_KEYPOINTS),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        package_version=__version__,
    )
    meta["splits"][split] = {
        "num_frames": len(index),
        "dtype": dtype,
        "index": index_file,
        "index_sha256": index_digest(index),
    }
    atomic_write(meta_path, lambda f: json.dump(meta, f, indent=2), mode="w")
    return npy


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(read_text(path))
    except DataFormatError as e:  # not UTF-8
        raise KeypointStoreError(str(e)) from None
    except (OSError, json.JSONDecodeError) as e:
        raise KeypointStoreError(f"{path}: cannot read keypoint-store metadata ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
        raise KeypointStoreError(f"{path}: not a keypoint-store meta.json (no 'splits' object)")
    for split, info in meta["splits"].items():
        frames = info.get("num_frames") if isinstance(info, dict) else None
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 0:
            raise KeypointStoreError(
                f"{path}: splits.{split} must be an object with an integer num_frames >= 0, got {info!r}"
            )
    order = meta.get("keypoint_order")
    if order is not None and list(order) != list(COCO17_KEYPOINTS):
        raise KeypointStoreError(f"{path}: keypoint_order is not COCO-17 in the standard order")
    return meta


class KeypointStore:
    """Read side of a keypoint store: memory-mapped arrays checked against a frame index."""

    def __init__(self, store_dir: str | Path):
        self.root = Path(store_dir)
        meta_path = self.root / META_FILE
        if not meta_path.is_file():
            raise KeypointStoreError(
                f"keypoint store not found: missing {meta_path} "
                "(create it with `star pose`, or `star synth` for the synthetic dataset)"
            )
        self.meta = _read_meta(meta_path)
        self._arrays: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict:
        # Memory maps are reopened in each worker instead of being pickled (which would copy them).
        return {"root": self.root, "meta": self.meta, "_arrays": {}}

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def array(self, split: str) -> np.ndarray:
        """The memory-mapped [num_frames, 17, 3] array of ``split`` (shape and dtype checked)."""
        arr = self._arrays.get(split)
        if arr is None:
            arr = self._open(split)
            self._arrays[split] = arr
        return arr

    def _open(self, split: str) -> np.ndarray:
        info = self.meta["splits"].get(split)
        if info is None:
            raise KeypointStoreError(
                f"{self.root / META_FILE}: no split {split!r} (has {', '.join(self.splits) or 'none'}); "
                "was the store built for another dataset?"
            )
        npy = self.root / f"{split}.npy"
        if not npy.is_file():
            raise KeypointStoreError(f"keypoint store incomplete: missing {npy}")
        try:
            with open(npy, "rb") as f:
                magic = f.read(len(_NPY_MAGIC))
            if not magic:
                raise KeypointStoreError(f"{npy}: the file is empty (0 bytes); rewrite this split of the store")
            if magic != _NPY_MAGIC:
                raise KeypointStoreError(f"{npy}: not a .npy file (it does not start with the .npy magic bytes)")
            arr = np.load(npy, mmap_mode="r")
        except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError) as e:
            # numpy reports a torn or garbled header with any of these.
            raise KeypointStoreError(f"{npy}: not a readable .npy array ({type(e).__name__}: {e})") from None
        if arr.ndim != 3 or arr.shape[1:] != (NUM_COCO_KEYPOINTS, 3) or str(arr.dtype) not in _DTYPES:
            raise KeypointStoreError(
                f"{npy}: expected float16/float32 [num_frames, {NUM_COCO_KEYPOINTS}, 3], "
                f"got {arr.dtype} {list(arr.shape)}"
            )
        if arr.shape[0] != info["num_frames"]:
            raise KeypointStoreError(
                f"{npy}: has {arr.shape[0]} frames but {self.root / META_FILE} records {info['num_frames']}"
            )
        return arr

    def verify(self, frame_index: dict[str, FrameIndex]) -> None:
        """Check every split of ``frame_index`` is present, aligned row by row and holds valid
        values (``keypoint_values``); raise ``KeypointStoreError`` naming the file and row otherwise."""
        for split, index in frame_index.items():
            arr = self.array(split)
            npy = self.root / f"{split}.npy"
            if arr.shape[0] != len(index):
                raise KeypointStoreError(
                    f"{npy}: has {arr.shape[0]} frames but {index.source} lists {len(index)}; "
                    "the store is not aligned with this dataset"
                )
            index_file = self.root / f"{split}.index.txt"
            if index_file.is_file():
                self._compare_index(index_file, index)
            else:
                digest = self.meta["splits"][split].get("index_sha256")
                if digest is not None and digest != index_digest(index.keys):
                    raise KeypointStoreError(
                        f"{npy}: frame order differs from {index.source} (index_sha256 mismatch in {META_FILE})"
                    )
            bad = first_bad_value(arr)
            if bad is not None:
                row, what = bad
                raise KeypointStoreError(f"{npy}: row {row} (frame {index.keys[row]!r}): {what}")

    @staticmethod
    def _compare_index(index_file: Path, index: FrameIndex) -> None:
        stored = read_lines(index_file)
        for i, (a, b) in enumerate(zip(stored, index.keys, strict=False)):
            if a != b:
                raise KeypointStoreError(
                    f"{index_file}:{i + 1}: {a!r} but frame {i + 1} of {index.source} is {b!r}; "
                    "the store is not aligned with this dataset"
                )
        if len(stored) != len(index):
            raise KeypointStoreError(f"{index_file}: lists {len(stored)} frames but {index.source} lists {len(index)}")

    def gather(self, split: str, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), 17, 3] keypoints of the given rows (reads only those rows)."""
        return np.asarray(self.array(split)[rows], dtype=np.float32)


def open_keypoint_store(data: VideoReidData, store_dir: str | Path | None = None) -> KeypointStore:
    """Open the store of ``data`` (default ``<root>/keypoints``) and verify its alignment now."""
    store = KeypointStore(store_dir if store_dir is not None else Path(data.root) / "keypoints")
    store.verify(data.frame_index)
    return store
