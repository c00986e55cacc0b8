"""The synthetic VVI dataset (docs/protocols.md), written in the HITSZ-VCM merged layout.

``generate_synthetic(out, SynthConfig(...))`` writes (``prepare_synthetic`` only when
``out`` holds no dataset yet, as training does)::

    <out>/info/train_name.txt  track_train_info.txt  test_name.txt  track_test_info.txt  query_IDX.txt
    <out>/<pid4>/<ir|rgb>/D<cam>/<frame>.jpg
    <out>/keypoints/{train,test}.npy (+ .index.txt, meta.json)   aligned with the name files
    <out>/synthetic.json                                          the generator settings

Every byte except ``keypoints/meta.json`` (which records its creation time) is a
function of the settings, the seed included. Train identities are 1..ids-test_ids,
test identities the rest; every identity has ``tracklets`` tracklets per modality
spread over the cameras so that each infrared query has visible positives from other
cameras. ``query_IDX.txt`` lists the infrared test tracklets, the gallery the visible
ones. A fraction of tracklets is shorter than 12 frames, as in the real data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..config_tree.ranges import AT_LEAST_1, MAX_SEED, Range, check_section_ranges
from ..fileio import DATASET_LOCK_FILE, atomic_write, dataset_lock, write_bytes
from .errors import SynthConfigError, SynthOutputError
from .hitsz_vcm import MIN_FRAMES
from .keypoint_store import write_keypoints
from .synthetic_render import Identity, camera_background, render_tracklet

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MARKER = "synthetic.json"


# The valid range of each numeric SynthConfig setting (star.config checks the run config's copy
# with the same table); the rules across settings are in SynthConfig.validate.
SYNTH_RANGES: dict[str, Range] = {
    "ids": Range(2, 9999),  # the 4-digit HITSZ-VCM pid
    "test_ids": AT_LEAST_1,
    "tracklets": AT_LEAST_1,
    "cameras": Range(2),
    "min_frames": AT_LEAST_1,
    "max_frames": AT_LEAST_1,
    "short_fraction": Range(0, 1),
    "height": Range(16),
    "width": Range(8),
    "group_size": AT_LEAST_1,
    "jpeg_quality": Range(0, 100),
    "seed": Range(0, MAX_SEED),
}


@dataclass(frozen=True)
class SynthConfig:
    """Size and look of the synthetic dataset (the defaults take seconds on 2 cores)."""

    ids: int = 80
    test_ids: int | None = None  # default: half of the identities
    tracklets: int = 3  # per identity and modality
    cameras: int = 3
    min_frames: int = 12
    max_frames: int = 24
    short_fraction: float = 0.05  # tracklets of 6..11 frames, dropped by the HITSZ-VCM reader
    height: int = 96
    width: int = 48
    group_size: int = 4  # identities sharing a clothing palette
    jpeg_quality: int = 90
    seed: int = 0

    def validate(self, *, memory: int | None = None) -> None:
        """Raise SynthConfigError for settings that cannot give a dataset; ``memory``: the bytes of
        memory to plan the frame rendering for (default: what the machine has available now)."""
        check_section_ranges(self, SYNTH_RANGES, error=SynthConfigError)
        if self.num_test_ids >= self.ids:
            raise SynthConfigError(f"need test_ids < ids, got ids={self.ids}, test_ids={self.num_test_ids}")
        if self.min_frames > self.max_frames:
            raise SynthConfigError(f"need min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if self.max_frames < MIN_FRAMES:
            raise SynthConfigError(
                f"max_frames={self.max_frames}: every tracklet would be shorter than the {MIN_FRAMES}-frame "
                "minimum of the HITSZ-VCM reader and dropped; use max_frames >= 12"
            )
        if max(self.height, self.width) > MAX_JPEG_SIDE:
            raise SynthConfigError(
                f"frames of {self.height} x {self.width} pixels do not fit a JPEG "
                f"(at most {MAX_JPEG_SIDE} pixels a side)"
            )
        # a tracklet's frames are rendered in memory (uint8 RGB) before they are written
        needed = self.height * self.width * 3 * self.max_frames
        available = memory if memory is not None else _available_memory()
        if available is not None and needed > available // 2:
            raise SynthConfigError(
                f"frames of {self.height} x {self.width} pixels need {needed / 2**30:.1f} GiB per tracklet of "
                f"{self.max_frames} frames; only {available / 2**30:.1f} GiB of memory is available"
            )
        empty = _empty_splits(self)
        if empty:
            raise SynthConfigError(
                f"these settings give an empty split ({', '.join(empty)}): every tracklet there is shorter "
                f"than the {MIN_FRAMES}-frame minimum of the HITSZ-VCM reader; "
                "use more ids or tracklets, a larger min_frames or a smaller short_fraction"
            )

    @property
    def num_test_ids(self) -> int:
        return self.test_ids if self.test_ids is not None else self.ids // 2


MAX_JPEG_SIDE = 65500  # libjpeg's JPEG_MAX_DIMENSION


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux/macOS sysconf), None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _rng(cfg: SynthConfig, *key: int) -> np.random.Generator:
    # Independent streams per purpose/identity/tracklet: changing one part never reshuffles the rest.
    return np.random.default_rng([cfg.seed, GENERATOR_VERSION, *key])


def _tracklet_length(cfg: SynthConfig, rng: np.random.Generator) -> int:
    if rng.random() < cfg.short_fraction:
        return int(rng.integers(max(1, cfg.min_frames // 2), cfg.min_frames)) if cfg.min_frames > 1 else 1
    return int(rng.integers(cfg.min_frames, cfg.max_frames + 1))


def _split_pids(cfg: SynthConfig) -> dict[str, range]:
    n_train = cfg.ids - cfg.num_test_ids
    return {"train": range(1, n_train + 1), "test": range(n_train + 1, cfg.ids + 1)}


def _tracklet_rng(cfg: SynthConfig, pid: int, code: int, k: int) -> np.random.Generator:
    """The stream of one tracklet; its first draw is the length (``_tracklet_length``)."""
    return _rng(cfg, 5, pid, code, k)


def _empty_splits(cfg: SynthConfig) -> list[str]:
    """The reader's splits (train, query = infrared test, gallery = visible test) that would hold
    no tracklet of at least ``MIN_FRAMES`` frames; the lengths are drawn as ``_write_dataset`` draws them."""
    kept = {"train": 0, "query": 0, "gallery": 0}
    for split, pids in _split_pids(cfg).items():
        for pid in pids:
            for code in (1, 2):
                for k in range(cfg.tracklets):
                    if _tracklet_length(cfg, _tracklet_rng(cfg, pid, code, k)) >= MIN_FRAMES:
                        kept[split if split == "train" else ("query" if code == 1 else "gallery")] += 1
    return [split for split, n in kept.items() if n == 0]


class _SplitWriter:
    """Collects one split's name-file lines, track rows and keypoints while frames are written."""

    def __init__(self, root: Path, cfg: SynthConfig):
        self.root, self.cfg = root, cfg
        self.names: list[str] = []
        self.tracks: list[tuple[int, int, int, int, int]] = []
        self.keypoints: list[np.ndarray] = []
        self.next_frame: dict[tuple[int, int, int], int] = {}
        self.next_tid: dict[tuple[int, int, int], int] = {}

    def add(self, pid: int, code: int, cam: int, frames: list[np.ndarray], keypoints: np.ndarray, rng) -> None:
        """Write a tracklet's frames (modality ``code``: 1 infrared, 2 visible) and record it."""
        folder_key = (pid, code, cam)
        folder = self.root / f"{pid:04d}" / ("ir" if code == 1 else "rgb") / f"D{cam}"
        folder.mkdir(parents=True, exist_ok=True)
        tid = self.next_tid.get(folder_key, 0) + 1
        frame_no = self.next_frame.get(folder_key, int(rng.integers(1, 6)))
        start = len(self.names) + 1
        for img in frames:
            # encode, then write with Python: cv2.imwrite only returns False on a full disk
            ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
            if not ok:
                raise RuntimeError(f"OpenCV could not encode a {img.shape} frame as JPEG")
            write_bytes(folder / f"{frame_no}.jpg", jpeg.tobytes())
            self.names.append(f"{pid:04d}M{code}D{cam}T{tid}F{frame_no}.jpg")
            frame_no += int(rng.integers(1, 3))  # frame numbers are not contiguous in HITSZ-VCM either
        self.next_tid[folder_key], self.next_frame[folder_key] = tid, frame_no
        self.tracks.append((code, start, len(self.names), pid, cam))
        self.keypoints.append(keypoints)

    def finish(self, split: str) -> None:
        info = self.root / "info"
        _write_text(info / f"{split}_name.txt", self.names)
        _write_text(info / f"track_{split}_info.txt", [f"{m} {s} {e} {p:04d} {c}" for m, s, e, p, c in self.tracks])
        write_keypoints(
            self.root / "keypoints",
            split,
            np.concatenate(self.keypoints),
            self.names,
            pose_model="synthetic ground truth with simulated detector noise",
            input_size=(self.cfg.height, self.cfg.width),
        )


def _write_text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write("".join(f"{ln}\n" for ln in lines)), mode="w")


def _palettes(cfg: SynthConfig) -> dict[int, np.ndarray]:
    """Per identity group: [2 (upper, lower), 3 options, 3 BGR] clothing colours."""
    groups = range((cfg.ids + cfg.group_size - 1) // cfg.group_size)
    return {g: _rng(cfg, 4, g).uniform(20, 235, size=(2, 3, 3)) for g in groups}


def _write_dataset(root: Path, cfg: SynthConfig) -> None:
    backgrounds = {
        (cam, code): camera_background(_rng(cfg, 3, cam, code), cfg.height, cfg.width, infrared=code == 1)
        for cam in range(1, cfg.cameras + 1)
        for code in (1, 2)
    }
    palettes = _palettes(cfg)
    for split, pids in _split_pids(cfg).items():
        writer = _SplitWriter(root, cfg)
        for pid in pids:
            ident = Identity.sample(_rng(cfg, 1, pid))
            cams = _rng(cfg, 2, pid).permutation(np.arange(1, cfg.cameras + 1)).tolist()
            for code in (1, 2):
                for k in range(cfg.tracklets):
                    # Visible tracklet k uses the camera after infrared tracklet k's: positives across cameras.
                    cam = cams[(k + (code == 2)) % cfg.cameras]
                    rng = _tracklet_rng(cfg, pid, code, k)
                    n = _tracklet_length(cfg, rng)
                    frames, kps = render_tracklet(
                        ident,
                        code == 1,
                        cam - 1,
                        backgrounds[(cam, code)],
                        palettes[(pid - 1) // cfg.group_size],
                        n,
                        cfg.height,
                        cfg.width,
                        rng,
                    )
                    writer.add(pid, code, cam, frames, kps, rng)
        writer.finish(split)
        if split == "test":
            query = [str(i + 1) for i, track in enumerate(writer.tracks) if track[0] == 1]
            _write_text(root / "info" / "query_IDX.txt", [" ".join(query)])  # one line, as in the release
    _write_text(root / MARKER, [json.dumps({"generator_version": GENERATOR_VERSION, **asdict(cfg)}, indent=2)])


def generate_synthetic(out: str | Path, config: SynthConfig = SynthConfig(), *, force: bool = False) -> Path:
    """Write the synthetic dataset to ``out`` and return its path.

    The dataset is built in a temporary sibling directory and renamed into place, so
    ``out`` never holds a half-written dataset. An existing ``out`` must be empty, or a
    previous synthetic dataset and ``force=True`` (it is then replaced).
    """
    config.validate()
    out = Path(out)
    replace = False
    if out.exists():
        if not out.is_dir():
            raise SynthOutputError(f"{out} exists and is not a directory")
        if any(p.name != DATASET_LOCK_FILE for p in out.iterdir()):
            if not (force and (out / MARKER).is_file()):
                hint = " (pass force=True / --force to replace it)" if (out / MARKER).is_file() else ""
                raise SynthOutputError(f"{out} is not empty{hint}")
            replace = True
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Replacing: no training or evaluation may be reading the old dataset (nor start to).
    with dataset_lock(out, "star synth", exclusive=True) if replace else contextlib.nullcontext():
        try:
            _write_dataset(tmp, config)
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)  # never hides the error that stopped the write
    return out


def dataset_read_lock(root: str | Path, what: str):
    """The shared ``dataset_lock`` a run holds while it reads the dataset at ``root``. Only a
    synthetic dataset can be replaced (``generate_synthetic(force=True)``), so only there is
    the lock file created: a folder of something else is never written to."""
    return dataset_lock(root, what, create=(Path(root) / MARKER).is_file())


def prepare_synthetic(root: str | Path, config: SynthConfig) -> bool:
    """Generate the synthetic dataset into ``root`` unless one is there; True when generated.

    An existing synthetic dataset whose settings differ from ``config`` is used as it is,
    with one warning naming the differences. A ``root`` that exists and
    holds something else is left alone (reading it as a dataset reports what is wrong).
    """
    root = Path(root)
    marker = root / MARKER
    if marker.is_file():
        try:
            existing = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            existing = {}
        wanted = asdict(config)
        differ = sorted(k for k in wanted if k in existing and existing[k] != wanted[k] and k != "test_ids")
        if differ:
            warnings.warn(
                f"data.synthetic differs from the synthetic dataset already at {root} "
                f"({', '.join(f'{k}: {existing[k]} there, {wanted[k]} configured' for k in differ)}); "
                "using the existing dataset (remove it or choose another data.root to regenerate)",
                stacklevel=2,
            )
        return False
    if root.exists() and not (root.is_dir() and all(p.name == DATASET_LOCK_FILE for p in root.iterdir())):
        return False
    logger.info("generating the synthetic dataset in %s ...", root)
    generate_synthetic(root, config)
    return True
