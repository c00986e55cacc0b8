"""HITSZ-VCM reader (MITML release), merged and Train/Test layouts (docs/protocols.md).

``info/*_name.txt`` lists one frame per line (``0001M2D3T1F1.jpg`` = pid 0001,
modality 2 = visible, camera D3, tracklet T1, frame F1 -> ``0001/rgb/D3/1.jpg``);
``info/track_*_info.txt`` lists one tracklet per line (``modality start end pid camid``,
1-based inclusive line numbers into the name file); ``info/query_IDX.txt`` holds
1-based rows of ``track_test_info.txt`` (the infrared queries), whitespace separated
on one or several lines; the gallery is every other test row.

The keypoint-store splits are ``train`` and ``test``, indexed by the name files.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import DataFormatError, DatasetLayoutError
from .source_files import read_lines
from .tracklet import INFRARED, MODALITY_NAMES, VISIBLE, FrameIndex, Tracklet, VideoReidData

HITSZ_VCM_TREE = """\
<root>/
  info/train_name.txt  info/track_train_info.txt
  info/test_name.txt   info/track_test_info.txt   info/query_IDX.txt
  <pid4>/<ir|rgb>/D<cam>/<frame>.jpg                  (merged release)
  or Train/<pid4>/<ir|rgb>/D<cam>/<frame>.jpg
     Test/<pid4>/<ir|rgb>/D<cam>/<frame>.jpg          (Train/Test release)
"""
INFO_FILES = ("train_name.txt", "track_train_info.txt", "test_name.txt", "track_test_info.txt", "query_IDX.txt")
MIN_FRAMES = 12  # every published HITSZ-VCM pipeline drops shorter tracklets

# Dataset modality code in names and info files -> package modality id.
_MODALITY_CODE = {1: INFRARED, 2: VISIBLE}
_NAME_RE = re.compile(r"(\d+)M([12])D(\d+)T(\d+)F(.+)")


def decode_frame_name(name: str) -> tuple[int, int, int, int, str]:
    """``'0001M2D3T1F1.jpg'`` -> ``(pid, modality, camera, tracklet, '0001/rgb/D3/1.jpg')``.

    Raises ``ValueError`` for a name that does not follow the HITSZ-VCM pattern.
    """
    m = _NAME_RE.fullmatch(name)
    if m is None:
        raise ValueError(f"not a HITSZ-VCM frame name (expected like 0001M2D3T1F1.jpg): {name!r}")
    pid, mod, cam, tid, frame = m.groups()
    modality = _MODALITY_CODE[int(mod)]
    return int(pid), modality, int(cam), int(tid), f"{pid}/{MODALITY_NAMES[modality]}/D{cam}/{frame}"


def _content_lines(path: Path) -> list[str]:
    """Lines of an info file, trailing blank lines removed (blank lines inside are kept and rejected)."""
    lines = [ln.strip() for ln in read_lines(path)]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _read_names(path: Path, frame_dir: Path) -> tuple[FrameIndex, np.ndarray]:
    """Frame index of a name file plus a [num_frames, 4] array of decoded (pid, modality, camera, tracklet)."""
    names = _content_lines(path)
    decoded = np.empty((len(names), 4), dtype=np.int64)
    paths = []
    base = str(frame_dir)
    for i, name in enumerate(names):
        try:
            pid, modality, cam, tid, rel = decode_frame_name(name)
        except ValueError as e:
            raise DataFormatError(path, i + 1, str(e)) from None
        decoded[i] = (pid, modality, cam, tid)
        paths.append(f"{base}/{rel}")
    # Blank lines inside a name file are rejected above, so frame i is on line i + 1.
    return FrameIndex(keys=names, paths=paths, source=str(path), lines=range(1, len(names) + 1)), decoded


def _read_tracks(path: Path, num_frames: int) -> np.ndarray:
    """Rows of a track info file as an int array [N, 5]: modality(package id), start, end, pid, camid."""
    rows = []
    first_line: dict[tuple[int, int], int] = {}  # (start, end) -> the line that listed it
    for i, line in enumerate(_content_lines(path), start=1):
        fields = line.split()
        try:
            if len(fields) != 5:
                raise ValueError
            mod, start, end, pid, cam = (int(x) for x in fields)
        except ValueError:
            raise DataFormatError(
                path, i, f"expected 5 integers 'modality start end pid camid', got {line!r}"
            ) from None
        if mod not in _MODALITY_CODE:
            raise DataFormatError(path, i, f"modality must be 1 (infrared) or 2 (visible), got {mod}")
        if not 1 <= start <= end <= num_frames:
            raise DataFormatError(
                path, i, f"frame range {start}..{end} is not within 1..{num_frames} (lines of the name file)"
            )
        if (start, end) in first_line:  # a duplicated row would count (and train on) a tracklet twice
            raise DataFormatError(
                path, i, f"frames {start}..{end} are already a tracklet (line {first_line[start, end]}): duplicated row"
            )
        first_line[start, end] = i
        rows.append((_MODALITY_CODE[mod], start, end, pid, cam))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 5)


def _read_query_rows(path: Path, num_rows: int) -> np.ndarray:
    """0-based test-track rows listed (1-based, whitespace separated) in query_IDX.txt."""
    rows: dict[int, int] = {}  # 0-based row -> the line listing it
    for i, line in enumerate(read_lines(path), start=1):
        for tok in line.split():
            try:
                idx = int(tok)
            except ValueError:
                raise DataFormatError(path, i, f"not an integer row index: {tok!r}") from None
            if not 1 <= idx <= num_rows:
                raise DataFormatError(path, i, f"row {idx} is not within 1..{num_rows} (rows of track_test_info.txt)")
            if idx - 1 in rows:
                raise DataFormatError(path, i, f"row {idx} is listed more than once (first on line {rows[idx - 1]})")
            rows[idx - 1] = i
    return np.asarray(list(rows), dtype=np.int64)


def _inconsistent_rows(tracks: np.ndarray, decoded: np.ndarray, info_path: Path) -> list[str]:
    """Describe track rows whose frame names disagree with the row's pid/modality/camera.

    The real release has a few such ranges; published code uses them as they are, so
    this is reported, not fatal.
    """
    bad = []
    for i, (mod, start, end, pid, cam) in enumerate(tracks):
        seg = decoded[start - 1 : end]
        if not (np.all(seg[:, 0] == pid) and np.all(seg[:, 1] == mod) and np.all(seg[:, 2] == cam)):
            bad.append(i + 1)
    if not bad:
        return []
    return [f"{info_path}:{bad[0]}: {len(bad)} track row(s) contain frames of another pid/modality/camera"]


def _tracklets(
    tracks: np.ndarray, index: FrameIndex, decoded: np.ndarray, split: str, min_frames: int
) -> list[Tracklet]:
    out = []
    for mod, start, end, pid, cam in tracks.tolist():
        if end - start + 1 < min_frames:
            continue
        tid = str(decoded[start - 1, 3])  # the T<n> of the first frame's name
        out.append(
            Tracklet(tuple(index.paths[start - 1 : end]), pid, cam, mod, tid, split, tuple(range(start - 1, end)))
        )
    return out


def read_hitsz_vcm(root: str | Path, min_frames: int = MIN_FRAMES, name: str = "hitsz-vcm") -> VideoReidData:
    """Read a HITSZ-VCM dataset (merged or Train/Test layout) into train/query/gallery tracklets.

    Train pids are relabelled to 0..N-1, test pids kept; tracklets shorter than
    ``min_frames`` are dropped (after splitting query/gallery by row, as MITML does).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(root, HITSZ_VCM_TREE, "HITSZ-VCM")
    info = root / "info"
    for f in INFO_FILES:
        if not (info / f).is_file():
            raise DatasetLayoutError(info / f, HITSZ_VCM_TREE, "HITSZ-VCM")
    split_layout = (root / "Train").is_dir() and (root / "Test").is_dir()
    train_dir, test_dir = (root / "Train", root / "Test") if split_layout else (root, root)

    train_index, train_decoded = _read_names(info / "train_name.txt", train_dir)
    test_index, test_decoded = _read_names(info / "test_name.txt", test_dir)
    train_tracks = _read_tracks(info / "track_train_info.txt", len(train_index))
    test_tracks = _read_tracks(info / "track_test_info.txt", len(test_index))
    query_rows = _read_query_rows(info / "query_IDX.txt", len(test_tracks))
    gallery_mask = np.ones(len(test_tracks), dtype=bool)
    gallery_mask[query_rows] = False

    warnings = _inconsistent_rows(train_tracks, train_decoded, info / "track_train_info.txt")
    warnings += _inconsistent_rows(test_tracks, test_decoded, info / "track_test_info.txt")

    train = _tracklets(train_tracks, train_index, train_decoded, "train", min_frames)
    query = _tracklets(test_tracks[query_rows], test_index, test_decoded, "test", min_frames)
    gallery = _tracklets(test_tracks[gallery_mask], test_index, test_decoded, "test", min_frames)
    dropped = {
        "train": len(train_tracks) - len(train),
        "query": len(query_rows) - len(query),
        "gallery": int(gallery_mask.sum()) - len(gallery),
    }
    return VideoReidData.from_splits(
        name,
        root,
        train,
        query,
        gallery,
        frame_index={"train": train_index, "test": test_index},
        warnings=warnings,
        sources={
            "train": str(info / "track_train_info.txt"),
            "query": str(info / "query_IDX.txt"),
            "gallery": f"{info / 'track_test_info.txt'} (the rows not in query_IDX.txt)",
        },
        min_frames=min_frames,
        dropped=dropped,
    )
