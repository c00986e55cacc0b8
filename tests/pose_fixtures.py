"""Frames, tiny datasets and an rtmlib oracle for the star.pose tests (all written into tmp_path)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np


def random_frame(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random BGR frame (JPEG-friendly; different frames give different tiny-model keypoints)."""
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 1.5)


def person_frame(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Black frame with a bright textured "person" rectangle (found by the tiny YOLOX)."""
    img = np.zeros((h, w, 3), np.uint8)
    y0, x0 = int(rng.integers(0, h // 4)), int(rng.integers(0, w // 4))
    y1, x1 = int(rng.integers(h // 2, h)), int(rng.integers(w // 2, w))
    patch = random_frame(rng, y1 - y0, x1 - x0)
    patch[..., 2] = 255  # red channel saturated: above the detector's brightness threshold
    img[y0:y1, x0:x1] = patch
    return img


def write_frame(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # PNG keeps the pixels exact; the readers do not care about the extension.
    assert cv2.imwrite(str(path), img)


def make_list_dataset(
    root: Path,
    counts=(("train", 13), ("query", 5), ("gallery", 6)),
    seed: int = 0,
    kind: str = "random",
    empty_every: int = 0,
) -> Path:
    """A list-format dataset of frames of varied sizes; ``kind="person"`` for the detector tests
    (with ``empty_every=k``, every k-th frame has no person: all black)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    j = 0
    for split, n in counts:
        lines = []
        for i in range(n):
            h, w = int(rng.integers(40, 130)), int(rng.integers(20, 70))
            if kind == "person":
                img = np.zeros((h, w, 3), np.uint8) if empty_every and j % empty_every == 0 else person_frame(rng, h, w)
            else:
                img = random_frame(rng, h, w)
            rel = f"{split}/p{i // 4}/f{i}.png"
            write_frame(root / rel, img)
            lines.append(f"{rel} {i // 4} {1 + i % 2} {'ir' if i % 2 else 'rgb'} t{i // 4}")
            j += 1
        (root / f"{split}.txt").write_text("".join(f"{ln}\n" for ln in lines))
    return root


def repaint(paths, seed: int = 0) -> None:
    """Overwrite existing frame files with random content (keeps each file's format)."""
    rng = np.random.default_rng(seed)
    for p in paths:
        h, w = int(rng.integers(40, 100)), int(rng.integers(20, 60))
        assert cv2.imwrite(str(p), random_frame(rng, h, w))


def rtmlib_rows(pose_path: str, paths, det_path: str | None = None, best_index: int = 1) -> np.ndarray:
    """Expected store rows from the real rtmlib: RTMPose on the whole frame, or on the detector's
    box number ``best_index`` (the tiny NMS YOLOX lists its best box second); no box: zeros."""
    import rtmlib

    pose = rtmlib.RTMPose(pose_path, backend="onnxruntime", device="cpu")
    det = rtmlib.YOLOX(det_path, backend="onnxruntime", device="cpu") if det_path else None
    rows = np.zeros((len(paths), 17, 3), np.float64)
    for i, p in enumerate(paths):
        img = cv2.imread(str(p))
        if det is not None:
            boxes = det(img)
            if len(boxes) == 0:
                continue
            kpts, scores = pose(img, bboxes=[boxes[min(best_index, len(boxes) - 1)]])
        else:
            kpts, scores = pose(img)
        h, w = img.shape[:2]
        xy = kpts[0] / np.array([w, h], np.float64)
        conf = np.clip(scores[0].astype(np.float64), 0.0, 1.0)
        lost = (conf <= 0) | np.any((xy < 0) | (xy > 1), axis=-1)
        rows[i, :, :2] = xy
        rows[i, :, 2] = conf
        rows[i, lost] = 0.0
    return rows


def store_files(out: Path) -> dict[str, object]:
    """Every file of a keypoint store: bytes of the arrays and indices, meta.json without its time stamps."""
    files: dict[str, object] = {}
    for f in sorted(Path(out).iterdir()):
        if f.is_file() and not f.name.startswith("."):
            if f.name == "meta.json":
                meta = json.loads(f.read_text())
                meta.pop("created_at")
                meta.get("pose_quality", {}).pop("store_created_at", None)
                files[f.name] = meta
            else:
                files[f.name] = f.read_bytes()
    return files


# A `star pose` run whose frame reads are slow, in its own process (a file, not -c: the spawned
# workers import it as __mp_main__, so they are slowed too); killed or raced by the tests.
_SLOW_POSE = r"""
import json, sys, time
import star.pose.frames as frames
_read = frames.read_frame_bgr
def slow_read(path):
    time.sleep(0.05)
    return _read(path)
frames.read_frame_bgr = slow_read
if __name__ == "__main__":
    from star.pose import PoseOptions, extract_keypoints
    class Ix:
        def __init__(self, keys, paths):
            self.keys, self.paths = keys, paths
    spec = json.load(open(sys.argv[1]))
    index = {s: Ix(v["keys"], v["paths"]) for s, v in spec.pop("index").items()}
    extract_keypoints(index, PoseOptions(out=spec.pop("out"), model=spec.pop("model"), progress=False, threads=1,
                                         decode_threads=1, **spec))
"""


def start_slow_pose(tmp_path: Path, data, out: Path, model: str, **options) -> subprocess.Popen:
    """Start ``extract_keypoints(data, PoseOptions(out=out, model=model, **options))`` in a subprocess,
    50 ms per frame read."""
    script = tmp_path / "slow_pose.py"
    script.write_text(_SLOW_POSE)
    spec = tmp_path / f"spec-{time.monotonic_ns()}.json"
    index = {s: {"keys": ix.keys, "paths": ix.paths} for s, ix in data.frame_index.items()}
    spec.write_text(json.dumps(dict(index=index, out=str(out), model=model, **options)))
    return subprocess.Popen([sys.executable, str(script), str(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    """Poll ``condition()`` until true; fail if ``proc`` ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendants of ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def alive(pids) -> set[int]:
    """The pids of ``pids`` still running (zombies count as gone)."""
    live = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.add(pid)
    return live
