"""Pose extraction throughput: ``star pose`` vs rtmlib's default detect-then-estimate loop.

    cd benchmarks && python -m pytest bench_pose.py --benchmark-only --benchmark-columns=min,median,rounds

All benchmarks run over the same JPEG person crops (list-format dataset, 256 x 128
frames) with the same ONNX models. Real RTMPose / YOLOX weights are not shipped (and
never downloaded), so by default the models are the tiny stand-ins of
``star.pose.testing`` (RTMPose's and YOLOX's input/output signatures, almost no compute):
the numbers measure the pipelines -- decoding, letterbox / affine warp, normalisation,
session calls, decoding of outputs -- not the networks. Set STAR_BENCH_POSE_MODEL and
STAR_BENCH_DET_MODEL to real ``.onnx`` files to measure with them.

- ``rtmlib_body``: rtmlib's ``Body`` pipeline written out (``rtmlib.YOLOX`` then
  ``rtmlib.RTMPose`` on its boxes), one image at a time, ``cv2.imread`` included;
- ``rtmlib_pose_only``: ``rtmlib.RTMPose`` on the whole frame, one image at a time;
- ``star_pose``: ``extract_keypoints`` (what ``star pose`` runs; whole frame, batch 32,
  decoding threads, store written), 1 worker and 2 workers;
- ``star_pose_yolox``: the same with ``detector="yolox"`` (the work of ``rtmlib_body``).

``extra_info.frames_per_s`` holds the throughput (median round); the module prints the
ratios against ``rtmlib_body`` at the end when timing is on. STAR_BENCH_SMALL=1 shrinks
the frame count to a smoke test.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

import rtmlib

from star.data import load_dataset
from star.pose import extract_keypoints
from star.pose.testing import make_tiny_rtmpose, make_tiny_yolox

SMALL = os.environ.get("STAR_BENCH_SMALL", "") == "1"
FRAMES = 12 if SMALL else 600
ROUNDS = 1 if SMALL else 3
H, W = 256, 128
_FPS: dict[str, float] = {}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose_bench")
    rng = np.random.default_rng(0)
    lines = {"train": [], "query": [], "gallery": []}
    for i in range(FRAMES + 4):
        split = "train" if i < FRAMES else ("query" if i < FRAMES + 2 else "gallery")
        img = np.zeros((H, W, 3), np.uint8)  # a bright textured "person" on a dark background
        y0, x0 = int(rng.integers(0, H // 6)), int(rng.integers(0, W // 6))
        patch = cv2.GaussianBlur(rng.integers(0, 256, (H - 2 * y0, W - 2 * x0, 3), dtype=np.uint8), (0, 0), 2)
        patch[..., 2] = 255
        img[y0:H - y0, x0:W - x0] = patch
        rel = f"{split}/{i // 12}/{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img)
        lines[split].append(f"{rel} {i // 12} 1 rgb t{i // 12}")
    for split, ls in lines.items():
        (root / f"{split}.txt").write_text("".join(f"{ln}\n" for ln in ls))
    pose = os.environ.get("STAR_BENCH_POSE_MODEL") or make_tiny_rtmpose(root / "pose.onnx")
    det = os.environ.get("STAR_BENCH_DET_MODEL") or make_tiny_yolox(root / "det.onnx")
    data = load_dataset("list", root, verbose=False)
    paths = [p for ix in data.frame_index.values() for p in ix.paths]
    return data, paths, pose, det, root


def _report(benchmark, name: str, frames: int) -> None:
    if benchmark.stats is None:  # --benchmark-disable (the CI smoke run)
        return
    fps = frames / benchmark.stats.stats.median
    _FPS[name] = fps
    benchmark.extra_info.update(frames=frames, frames_per_s=round(fps, 1))
    if "rtmlib_body" in _FPS:
        benchmark.extra_info["ratio_to_rtmlib_body"] = round(fps / _FPS["rtmlib_body"], 2)


def test_rtmlib_body(benchmark, setup):
    data, paths, pose_path, det_path, _ = setup
    det = rtmlib.YOLOX(det_path, backend="onnxruntime", device="cpu")
    pose = rtmlib.RTMPose(pose_path, backend="onnxruntime", device="cpu")

    def run():
        for p in paths:
            img = cv2.imread(p)
            pose(img, bboxes=det(img))

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    _report(benchmark, "rtmlib_body", len(paths))


def test_rtmlib_pose_only(benchmark, setup):
    data, paths, pose_path, _, _ = setup
    pose = rtmlib.RTMPose(pose_path, backend="onnxruntime", device="cpu")

    def run():
        for p in paths:
            pose(cv2.imread(p))

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    _report(benchmark, "rtmlib_pose_only", len(paths))


@pytest.mark.parametrize("workers", [1, 2])
def test_star_pose(benchmark, setup, workers):
    data, paths, pose_path, _, root = setup
    out = root / f"kp_w{workers}"
    run = lambda: extract_keypoints(data, out, pose_path, batch=32, workers=workers, force=True, progress=False)  # noqa: E731
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    _report(benchmark, f"star_pose_w{workers}", len(paths))


def test_star_pose_yolox(benchmark, setup):
    data, paths, pose_path, det_path, root = setup
    out = root / "kp_det"
    run = lambda: extract_keypoints(data, out, pose_path, detector="yolox", det_model=det_path, batch=32,  # noqa: E731
                                    force=True, progress=False)
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    _report(benchmark, "star_pose_yolox", len(paths))


@pytest.fixture(scope="module", autouse=True)
def print_ratios(request):
    """After the module: frames/s and the ratio to rtmlib's Body loop (when timing is on)."""
    yield
    if "rtmlib_body" not in _FPS:
        return
    base = _FPS["rtmlib_body"]
    lines = ["", "pose extraction, frames/s (ratio to the rtmlib Body loop):"]
    lines += [f"  {name:<18} {fps:9.1f}  {fps / base:6.2f}x" for name, fps in _FPS.items()]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))
