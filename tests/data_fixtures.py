"""Tiny on-disk datasets for the star.data tests (written into pytest's tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

# (split, pid, modality code 1=IR/2=RGB, camera, number of frames) in file order.
HITSZ_TRACKS = [
    ("train", 1, 1, 1, 12),
    ("train", 1, 2, 2, 13),
    ("train", 1, 1, 2, 5),  # < 12 frames: dropped
    ("train", 7, 1, 1, 12),
    ("train", 7, 2, 3, 14),
    ("test", 501, 1, 1, 12),  # query
    ("test", 501, 2, 2, 12),  # gallery
    ("test", 501, 2, 3, 3),  # gallery, dropped
    ("test", 502, 1, 2, 12),  # query
    ("test", 502, 1, 3, 4),  # query, dropped
    ("test", 502, 2, 1, 15),  # gallery
]


def write_jpeg(path: Path, value: int = 128, size: tuple[int, int] = (16, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


def make_hitsz(root: Path, layout: str = "merged", frames: bool = True) -> dict:
    """Write a HITSZ-VCM fixture; returns {split: [names]}, {split: [track rows]}.

    Frame numbers inside a folder go up in steps of 2 (not contiguous, as in the release);
    the query rows are written over two lines.
    """
    names = {"train": [], "test": []}
    rows = {"train": [], "test": []}
    next_frame: dict[tuple, int] = {}
    next_tid: dict[tuple, int] = {}
    for split, pid, mod, cam, n in HITSZ_TRACKS:
        start = len(names[split]) + 1
        folder = (pid, mod, cam)
        tid = next_tid[folder] = next_tid.get(folder, 0) + 1
        for _ in range(n):
            f = next_frame.get(folder, 1)
            next_frame[folder] = f + 2
            name = f"{pid:04d}M{mod}D{cam}T{tid}F{f}.jpg"
            names[split].append(name)
            if frames:
                base = root / ("Train" if split == "train" else "Test") if layout == "split" else root
                write_jpeg(base / f"{pid:04d}" / ("ir" if mod == 1 else "rgb") / f"D{cam}" / f"{f}.jpg")
        rows[split].append((mod, start, len(names[split]), pid, cam))
    info = root / "info"
    info.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (info / f"{split}_name.txt").write_text("".join(f"{n}\n" for n in names[split]))
        (info / f"track_{split}_info.txt").write_text(
            "".join(f"{m} {s} {e} {p:04d} {c}\n" for m, s, e, p, c in rows[split])
        )
    query = [i + 1 for i, r in enumerate(rows["test"]) if r[0] == 1]
    (info / "query_IDX.txt").write_text(f"{query[0]} {query[1]}\n{' '.join(map(str, query[2:]))}\n")
    return {"names": names, "rows": rows, "query": query}


# BUPTCampus fixture: pid -> modality -> camera -> tid -> number of frames
BUPT_TREE = {
    "1": {"RGB": {"LS3": {"1": 3}}, "IR": {"LS3": {"1": 3}}, "FakeIR": {"LS3": {"1": 3}}},
    "2": {"RGB": {"G25": {"1": 4}, "W4": {"2": 2}}, "IR": {"G25": {"1": 4}, "W4": {"2": 2}}},
    "5": {"RGB": {"CQ1": {"1": 2}, "TSG1": {"3": 3}}, "IR": {"CQ1": {"1": 2}, "TSG2": {"4": 2}}},
}
BUPT_SPLITS = {
    "train.txt": ["1 RGB/IR LS3 1", "2 RGB/IR G25 1"],
    "train_auxiliary.txt": ["2 RGB/IR W4 2"],
    "query.txt": ["5 IR CQ1 1", "5 RGB CQ1 1"],
    "gallery.txt": ["5 RGB TSG1 3", "5 IR TSG2 4"],
}


def make_bupt(root: Path) -> None:
    paths: dict = {}
    for pid, by_mod in BUPT_TREE.items():
        for mod, by_cam in by_mod.items():
            for cam, by_tid in by_cam.items():
                for tid, n in by_tid.items():
                    fmod = "RGB" if mod == "FakeIR" else mod
                    frames = [f"{pid}/{mod}/{cam}/{pid}_{fmod}_{cam}_{tid}_{100 + i}.jpg" for i in range(n)]
                    paths.setdefault(pid, {}).setdefault(mod, {}).setdefault(cam, {})[tid] = frames
                    for f in frames:
                        write_jpeg(root / "DATA" / f)
    (root / "data_paths.json").write_text(json.dumps(paths, indent=1))
    for name, lines in BUPT_SPLITS.items():
        (root / name).write_text("".join(f"{ln}\n" for ln in lines))


def make_list_dataset(root: Path) -> None:
    """train: pid 10 (ir 3 frames, rgb 2 frames), pid 4 (ir 2, rgb 2); query/gallery: pid 33."""
    lines = {
        "train": [
            "# path pid camid modality tracklet",
            "a/f 1.jpg 10 1 ir t1",  # a path with a space
            "a/f2.jpg 10 1 ir t1",
            "b/f1.jpg 10 2 rgb t1",
            "",
            "a/f3.jpg 10 1 ir t1",
            "b/f2.jpg 10 2 visible t1",
            "c/f1.jpg 4 1 0 x",
            "c/f2.jpg 4 1 0 x",
            "d/f1.jpg 4 2 1 y",
            "d/f2.jpg 4 2 1 y",
        ],
        "query": ["q/1.jpg 33 1 ir q", "q/2.jpg 33 1 ir q"],
        "gallery": ["g/1.jpg 33 2 rgb g"],
    }
    for split, ls in lines.items():
        (root / f"{split}.txt").write_text("".join(f"{ln}\n" for ln in ls))
        for ln in ls:
            if ln and not ln.startswith("#"):
                write_jpeg(root / ln.rsplit(None, 4)[0])
