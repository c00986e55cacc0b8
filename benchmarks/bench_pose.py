"""Pose extraction throughput: ``star pose`` vs rtmlib's loops and vs the pose model alone.

    cd benchmarks && python -m pytest bench_pose.py --benchmark-only --benchmark-columns=min,median,rounds

Two groups, each on its own JPEG person crops (list-format dataset) and its own ONNX models:

**pipeline** (600 crops of 256 x 128): the tiny stand-ins of ``star.pose.testing`` (RTMPose's and
YOLOX's signatures, almost no compute) measure the pipelines -- decoding, letterbox / affine
warp, normalisation, session calls, decoding of outputs -- not the networks. Set
STAR_BENCH_POSE_MODEL and STAR_BENCH_DET_MODEL to real ``.onnx`` files to measure with them.

- ``rtmlib_body``: rtmlib's ``Body`` pipeline written out (``rtmlib.YOLOX`` then
  ``rtmlib.RTMPose`` on its boxes), one image at a time, ``cv2.imread`` included;
- ``rtmlib_pose_only``: ``rtmlib.RTMPose`` on the whole frame, one image at a time;
- ``star_pose``: ``extract_keypoints`` (what ``star pose`` runs; whole frame, batch 32,
  decoding threads, store written), 1 worker and 2 workers;
- ``star_pose_yolox``: the same with ``detector="yolox"`` (the work of ``rtmlib_body``).

**compute** (HITSZ-VCM-like 288 x 144 crops): ``star.pose.standins``' random-weight models
with the real models' compute -- RTMPose-m (1.9 GMACs, dynamic batch) and a YOLOX-m-sized
detector (36 GMACs at 640 x 640) -- built here with torch.onnx:

- ``model_alone_rtmpose_m``: onnxruntime on ready-made [32, 3, 256, 192] batches: the limit;
- ``star_pose_rtmpose_m_w1`` / ``_w2``: ``extract_keypoints`` with it, 1 and 2 workers;
- ``rtmlib_pose_only_rtmpose_m``: ``rtmlib.RTMPose`` with it, one image at a time;
- ``model_alone_yolox_m``, ``star_pose_yolox_m``, ``rtmlib_body_m``: the same with the detector first.

``extra_info.frames_per_s`` holds the throughput (median round); the module prints the
ratios at the end when timing is on (pipeline: to ``rtmlib_body``; compute: to the model
alone). STAR_BENCH_SMALL=1 shrinks the frame counts to a smoke test.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import rtmlib

from star.data import load_dataset
from star.pose import PoseOptions, RTMPoseModel, YOLOXDetector, extract_keypoints
from star.pose.standins import make_rtmpose_m_standin, make_yolox_standin
from star.pose.testing import make_tiny_rtmpose, make_tiny_yolox

SMALL = os.environ.get("STAR_BENCH_SMALL", "") == "1"
FRAMES = 12 if SMALL else 600
ROUNDS = 1 if SMALL else 3
H, W = 256, 128
COMPUTE_FRAMES = 4 if SMALL else 128  # RTMPose-m stand-in: ~10-20 frames/s on the 2-core box
DET_FRAMES = 2 if SMALL else 12  # YOLOX-m stand-in: ~1 frame/s
COMPUTE_ROUNDS = 1 if SMALL else 2
# Shards are what workers share: enough of them that 2 workers get equal work (a real run has hundreds).
SHARD = 4 if SMALL else 64
COMPUTE_SHARD = 2 if SMALL else 32
_FPS: dict[str, float] = {}


def _write_crops(root, frames: int, h: int, w: int):
    """``frames`` + 4 JPEG person crops (a bright textured "person" on a dark background) as a list dataset."""
    rng = np.random.default_rng(0)
    lines = {"train": [], "query": [], "gallery": []}
    for i in range(frames + 4):
        split = "train" if i < frames else ("query" if i < frames + 2 else "gallery")
        img = np.zeros((h, w, 3), np.uint8)
        y0, x0 = int(rng.integers(0, h // 6)), int(rng.integers(0, w // 6))
        patch = cv2.GaussianBlur(rng.integers(0, 256, (h - 2 * y0, w - 2 * x0, 3), dtype=np.uint8), (0, 0), 2)
        patch[..., 2] = 255
        img[y0 : h - y0, x0 : w - x0] = patch
        rel = f"{split}/{i // 12}/{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img)
        lines[split].append(f"{rel} {i // 12} 1 rgb t{i // 12}")
    for split, ls in lines.items():
        (root / f"{split}.txt").write_text("".join(f"{ln}\n" for ln in ls))
    data = load_dataset("list", root, verbose=False)
    return data, [p for ix in data.frame_index.values() for p in ix.paths]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose_bench")
    data, paths = _write_crops(root, FRAMES, H, W)
    pose = os.environ.get("STAR_BENCH_POSE_MODEL") or make_tiny_rtmpose(root / "pose.onnx")
    det = os.environ.get("STAR_BENCH_DET_MODEL") or make_tiny_yolox(root / "det.onnx")
    return data, paths, pose, det, root


@pytest.fixture(scope="module")
def compute(tmp_path_factory):
    """HITSZ-VCM-like 288 x 144 crops and the compute-realistic stand-ins."""
    root = tmp_path_factory.mktemp("pose_compute")
    data, paths = _write_crops(root, COMPUTE_FRAMES, 288, 144)
    det_root = root / "det"
    det_root.mkdir()
    det_data, det_paths = _write_crops(det_root, DET_FRAMES, 288, 144)
    return dict(
        data=data,
        paths=paths,
        det_data=det_data,
        det_paths=det_paths,
        root=root,
        pose=make_rtmpose_m_standin(root / "rtmpose_m_standin.onnx"),
        det=make_yolox_standin(root / "yolox_m_standin.onnx"),
    )


def _report(benchmark, name: str, frames: int, base: str = "rtmlib_body") -> None:
    if benchmark.stats is None:  # --benchmark-disable (the CI smoke run)
        return
    fps = frames / benchmark.stats.stats.median
    _FPS[name] = fps
    benchmark.extra_info.update(frames=frames, frames_per_s=round(fps, 1))
    if base in _FPS:
        benchmark.extra_info[f"ratio_to_{base}"] = round(fps / _FPS[base], 3)


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


def _bench_star_pose(benchmark, setup, name: str, **options) -> None:
    """``extract_keypoints`` on the setup's frames with ``options`` (PoseOptions fields), timed."""
    data, paths, pose_path, _, root = setup
    settings = PoseOptions(out=root / f"kp_{name}", model=pose_path, batch=32, force=True, progress=False, **options)
    benchmark.pedantic(lambda: extract_keypoints(data, settings), rounds=ROUNDS, iterations=1)
    _report(benchmark, name, len(paths))


@pytest.mark.parametrize("workers", [1, 2])
def test_star_pose(benchmark, setup, workers):
    _bench_star_pose(benchmark, setup, f"star_pose_w{workers}", workers=workers, shard_size=SHARD)


def test_star_pose_yolox(benchmark, setup):
    _bench_star_pose(benchmark, setup, "star_pose_yolox", detector="yolox", det_model=setup[3])


# ----------------------------------------------------------------------------- compute-realistic models


def _model_alone(benchmark, model, x: np.ndarray, frames: int, name: str) -> None:
    model.run(x[:2])  # warm-up (allocations, kernel selection)
    run = lambda: [model.run(x, 32) for _ in range(frames // len(x))]  # noqa: E731
    benchmark.pedantic(run, rounds=COMPUTE_ROUNDS, iterations=1)
    _report(benchmark, name, frames // len(x) * len(x), base=name)


def test_model_alone_rtmpose_m(benchmark, compute):
    pose = RTMPoseModel(compute["pose"])
    x = np.random.default_rng(0).standard_normal((32 if not SMALL else 4, 3, 256, 192), dtype=np.float32)
    _model_alone(benchmark, pose, x, COMPUTE_FRAMES, "model_alone_rtmpose_m")


@pytest.mark.parametrize("workers", [1, 2])
def test_star_pose_rtmpose_m(benchmark, compute, workers):
    out = compute["root"] / f"kp_w{workers}"
    options = PoseOptions(
        out=out, model=compute["pose"], batch=32, workers=workers, shard_size=COMPUTE_SHARD, force=True, progress=False
    )
    run = lambda: extract_keypoints(compute["data"], options)  # noqa: E731
    benchmark.pedantic(run, rounds=COMPUTE_ROUNDS, iterations=1)
    _report(benchmark, f"star_pose_rtmpose_m_w{workers}", len(compute["paths"]), base="model_alone_rtmpose_m")


def test_rtmlib_pose_only_rtmpose_m(benchmark, compute):
    pose = rtmlib.RTMPose(compute["pose"], backend="onnxruntime", device="cpu")

    def run():
        for p in compute["paths"]:
            pose(cv2.imread(p))

    benchmark.pedantic(run, rounds=COMPUTE_ROUNDS, iterations=1)
    _report(benchmark, "rtmlib_pose_only_rtmpose_m", len(compute["paths"]), base="model_alone_rtmpose_m")


def test_model_alone_yolox_m(benchmark, compute):
    det = YOLOXDetector(compute["det"])
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 640, 640)).astype(np.float32)
    _model_alone(benchmark, det, x, DET_FRAMES, "model_alone_yolox_m")


def test_star_pose_yolox_m(benchmark, compute):
    out = compute["root"] / "kp_det"
    options = PoseOptions(
        out=out, model=compute["pose"], detector="yolox", det_model=compute["det"], batch=32, force=True, progress=False
    )
    run = lambda: extract_keypoints(compute["det_data"], options)  # noqa: E731
    benchmark.pedantic(run, rounds=COMPUTE_ROUNDS, iterations=1)
    _report(benchmark, "star_pose_yolox_m", len(compute["det_paths"]), base="model_alone_yolox_m")


def test_rtmlib_body_m(benchmark, compute):
    det = rtmlib.YOLOX(compute["det"], backend="onnxruntime", device="cpu")
    pose = rtmlib.RTMPose(compute["pose"], backend="onnxruntime", device="cpu")

    def run():
        for p in compute["det_paths"]:
            img = cv2.imread(p)
            pose(img, bboxes=det(img))

    benchmark.pedantic(run, rounds=COMPUTE_ROUNDS, iterations=1)
    _report(benchmark, "rtmlib_body_m", len(compute["det_paths"]), base="model_alone_yolox_m")


@pytest.fixture(scope="module", autouse=True)
def print_ratios(request):
    """After the module: frames/s and the ratios (pipeline: to rtmlib's Body loop; compute: to the model alone)."""
    yield
    groups = [
        (
            "pipeline (tiny models), ratio to the rtmlib Body loop",
            "rtmlib_body",
            lambda n: not n.endswith("_m") and "_m_" not in n,
        ),
        (
            "compute (RTMPose-m-sized stand-in), ratio to the model alone",
            "model_alone_rtmpose_m",
            lambda n: "rtmpose_m" in n,
        ),
        (
            "compute (YOLOX-m-sized detector first), ratio to the detector alone",
            "model_alone_yolox_m",
            lambda n: n in ("model_alone_yolox_m", "star_pose_yolox_m", "rtmlib_body_m"),
        ),
    ]
    lines = []
    for title, base, member in groups:
        if base not in _FPS:
            continue
        lines += ["", f"pose extraction, frames/s -- {title}:"]
        lines += [f"  {name:<28} {fps:9.1f}  {fps / _FPS[base]:6.2f}x" for name, fps in _FPS.items() if member(name)]
    if not lines:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))
