"""star.pose: rtmlib-equal RTMPose/YOLOX processing, the keypoint store it writes, resume, shards, weights.

The models are tiny ONNX graphs with RTMPose's / YOLOX's signatures built here
(star.pose.testing); rtmlib itself (onnxruntime backend) is the oracle.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import rtmlib  # the oracle; installed with the test extra (the pose tests must run, not skip)

from data_fixtures import make_hitsz
from pose_fixtures import (
    make_list_dataset,
    person_frame,
    random_frame,
    repaint,
    rtmlib_rows,
    start_slow_pose,
    store_files,
    wait_for,
)
from star.cli import main as cli_main
from star.data import SynthConfig, generate_synthetic, load_dataset, open_keypoint_store
from star.data.keypoint_store import index_digest
from star.data.skeleton import NUM_COCO_KEYPOINTS
from star.pose import (
    KNOWN_MODELS,
    ModelNotFoundError,
    PoseError,
    PoseOptions,
    PoseWarning,
    RTMPoseModel,
    UnreadableFrameError,
    YOLOXDetector,
    extract_keypoints,
    merge_shards,
    parse_shard_spec,
    plan_shards,
    resolve_model,
    select_part,
    to_store,
)
from star.pose import extract as pose_extract
from star.pose import runtime as pose_runtime
from star.pose.testing import make_tiny_rtmpose, make_tiny_yolox

FAST = dict(progress=False, threads=1, decode_threads=2)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "pose": make_tiny_rtmpose(d / "pose.onnx"),  # dynamic batch axis
        "pose_b1": make_tiny_rtmpose(d / "pose_b1.onnx", batch=1),
        "pose_b3": make_tiny_rtmpose(d / "pose_b3.onnx", batch=3),
        "det": make_tiny_yolox(d / "det.onnx"),  # NMS inside, batch 1 (as rtmlib's onnx_sdk models)
        "det_dyn": make_tiny_yolox(d / "det_dyn.onnx", batch=None),
        "det_raw": make_tiny_yolox(d / "det_raw.onnx", nms=False),
    }


@pytest.fixture(scope="module")
def listdata(tmp_path_factory):
    root = make_list_dataset(tmp_path_factory.mktemp("list") / "data")
    return load_dataset("list", root, verbose=False)


def _all_paths(data):
    return [p for ix in data.frame_index.values() for p in ix.paths]


def _store_rows(out, data):
    store = open_keypoint_store(data, out)
    return np.concatenate([np.asarray(store.array(s), np.float32) for s in data.frame_index])


# ----------------------------------------------------------------------------- runtime == rtmlib


@pytest.mark.parametrize("which", ["pose", "pose_b1", "pose_b3"])
def test_rtmpose_equals_rtmlib(models, which):
    ref = rtmlib.RTMPose(models["pose"], backend="onnxruntime", device="cpu")
    mine = RTMPoseModel(models[which], threads=1)
    assert mine.input_hw == (256, 192) and mine.batch_size == {"pose": None, "pose_b1": 1, "pose_b3": 3}[which]
    rng = np.random.default_rng(1)
    for h, w in [(64, 32), (128, 64), (37, 91), (256, 192), (300, 97)]:
        img = random_frame(rng, h, w)
        k_ref, s_ref = ref(img)
        k, s = mine(img)
        assert k.dtype == k_ref.dtype and s.dtype == s_ref.dtype
        np.testing.assert_array_equal(k, k_ref)
        np.testing.assert_array_equal(s, s_ref)
        # several float32 / float64 boxes in one batched call == rtmlib box by box
        boxes = [np.array([2.5, 3.25, w * 0.8, h * 0.9], np.float32), np.array([-4.0, 1.0, w + 3.0, h / 2.0])]
        boxes += [np.array([1, 1, w - 1, h - 1], np.float32)] * 2
        k, s = mine(img, boxes)
        for i, b in enumerate(boxes):
            k_ref, s_ref = ref(img, bboxes=[b])
            np.testing.assert_array_equal(k[i : i + 1], k_ref)
            np.testing.assert_array_equal(s[i : i + 1], s_ref)


def test_tiny_rtmpose_finds_a_white_cross(models):
    """The tiny model is meaningful: a white cross at (x0, y0) puts every keypoint there."""
    pose = RTMPoseModel(models["pose"], threads=1)
    for h, w, x0, y0 in [(128, 64, 20, 90), (96, 48, 40, 10), (200, 150, 75, 140)]:
        img = np.zeros((h, w, 3), np.uint8)
        img[:, x0] = 255
        img[y0, :] = 255
        k, s = pose(img)
        np.testing.assert_allclose(k[0, :, 0], x0 + 0.5, atol=1.0)
        np.testing.assert_allclose(k[0, :, 1], y0 + 0.5, atol=1.0)
        assert np.all(s > 0.5)


@pytest.mark.parametrize("which", ["det", "det_dyn", "det_raw"])
def test_yolox_equals_rtmlib(models, which):
    ref = rtmlib.YOLOX(models[which], backend="onnxruntime", device="cpu")
    pose_ref = rtmlib.RTMPose(models["pose"], backend="onnxruntime", device="cpu")
    det = YOLOXDetector(models[which], threads=1)
    pose = RTMPoseModel(models["pose"], threads=1)
    rng = np.random.default_rng(2)
    found = 0
    for i, (h, w) in enumerate([(120, 60), (90, 45), (200, 100), (64, 64), (640, 640)]):
        if which == "det_raw":  # objectness follows the mean brightness: bright frames, one dark
            img = np.full((h, w, 3), 0 if i == 1 else 250, np.uint8)
        else:
            img = np.zeros((h, w, 3), np.uint8) if i == 1 else person_frame(rng, h, w)
        ref_boxes = ref(img)
        box = det(img)
        if len(ref_boxes) == 0:
            assert box is None
            continue
        found += 1
        # the tiny NMS model lists a lower-scoring box first; raw: rtmlib's NMS puts the best first
        best = ref_boxes[min(1, len(ref_boxes) - 1)] if which != "det_raw" else ref_boxes[0]
        assert box.dtype == best.dtype
        np.testing.assert_array_equal(box, best)
        k_ref, s_ref = pose_ref(img, bboxes=[best])
        k, s = pose(img, [box])
        np.testing.assert_array_equal(k, k_ref)
        np.testing.assert_array_equal(s, s_ref)
    assert found >= 3


def test_to_store_rules():
    # frame 10 x 20 px: inside, x < 0, x > 1, on the bottom edge (kept), score <= 0
    kpts = np.array([[[5.0, 10.0], [-1.0, 3.0], [11.0, 4.0], [2.0, 20.0], [3.0, 3.0]]])
    scores = np.array([[1.7, 0.5, 0.5, 0.5, -0.2]], np.float32)
    rows = to_store(kpts, scores, np.array([10.0]), np.array([20.0]))
    assert rows.dtype == np.float32 and rows.shape == (1, 5, 3)
    np.testing.assert_array_equal(rows[0, 0], [0.5, 0.5, 1.0])  # score clipped to 1
    np.testing.assert_array_equal(rows[0, [1, 2, 4]], 0.0)  # outside the frame / not detected: (0, 0, 0)
    np.testing.assert_allclose(rows[0, 3], [0.2, 1.0, 0.5])


def test_index_digest_matches_the_store():
    keys = ["a/b 1.jpg", "c.jpg", "ü.png"]
    assert pose_extract.lines_digest(keys) == index_digest(keys)
    assert pose_runtime.NUM_COCO_KEYPOINTS == NUM_COCO_KEYPOINTS


# ----------------------------------------------------------------------------- end to end


def test_extract_store_equals_rtmlib(tmp_path, models, listdata):
    out = tmp_path / "kp"
    run = extract_keypoints(
        listdata, PoseOptions(out=out, model=models["pose"], batch=4, shard_size=5, dtype="float32", **FAST)
    )
    assert run.complete and run.shards_computed == run.shards == 3 + 1 + 2 and run.frames_computed == 24
    assert not (out / ".pose-work").exists()
    rows = _store_rows(out, listdata)
    expected = rtmlib_rows(models["pose"], _all_paths(listdata))
    np.testing.assert_array_equal(rows, expected.astype(np.float32))
    assert rows[..., 2].min() > 0 and len(np.unique(rows[:, 0, 0])) > 10  # frames differ
    meta = json.loads((out / "meta.json").read_text())
    assert meta["input_size"] == [256, 192] and meta["pose_extraction"]["box"] == "whole frame"
    assert meta["splits"]["train"]["dtype"] == "float32"
    # float16 store (the default) with a fixed-batch model: same values, rounded
    out16 = tmp_path / "kp16"
    extract_keypoints(listdata, PoseOptions(out=out16, model=models["pose_b3"], batch=8, **FAST))
    np.testing.assert_array_equal(_store_rows(out16, listdata), expected.astype(np.float32).astype(np.float16))
    # a rerun finds the store complete and does nothing
    again = extract_keypoints(listdata, PoseOptions(out=out16, model=models["pose_b3"], batch=8, **FAST))
    assert again.up_to_date and again.shards_computed == 0


def test_detector_path_and_frames_without_person(tmp_path, models):
    root = make_list_dataset(
        tmp_path / "data", counts=(("train", 7), ("query", 3), ("gallery", 3)), seed=5, kind="person", empty_every=4
    )
    data = load_dataset("list", root, verbose=False)
    out = tmp_path / "kp"
    run = extract_keypoints(
        data,
        PoseOptions(
            out=out,
            model=models["pose"],
            detector="yolox",
            det_model=models["det"],
            batch=3,
            shard_size=4,
            dtype="float32",
            **FAST,
        ),
    )
    assert run.complete
    rows = _store_rows(out, data)
    expected = rtmlib_rows(models["pose"], _all_paths(data), det_path=models["det"])
    np.testing.assert_array_equal(rows, expected.astype(np.float32))
    empty = np.arange(len(rows)) % 4 == 0
    assert np.all(rows[empty] == 0) and np.all(rows[~empty, :, 2].max(axis=1) > 0)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["pose_extraction"]["detector"]["name"] == "yolox"
    # the whole-frame default gives other keypoints for the same frames
    whole = extract_keypoints(
        data, PoseOptions(out=tmp_path / "kp_whole", model=models["pose"], dtype="float32", **FAST)
    )
    assert not np.array_equal(_store_rows(whole.out, data), rows)


@pytest.mark.filterwarnings("ignore:.*counts differ from the published release")
def test_cli_pose_on_hitsz_layout(tmp_path, models, capsys):
    root = tmp_path / "hitsz"
    make_hitsz(root)
    data = load_dataset("hitsz-vcm", root, verbose=False)
    repaint(_all_paths(data), seed=3)
    out = tmp_path / "kp"
    argv = [
        "pose",
        "--dataset",
        "hitsz-vcm",
        "--root",
        str(root),
        "--out",
        str(out),
        "--model",
        models["pose"],
        "--batch",
        "16",
        "--shard-size",
        "40",
        "--threads",
        "1",
        "--quiet",
    ]
    assert cli_main(argv) == 0
    assert "keypoint store written" in capsys.readouterr().out
    store = open_keypoint_store(data, out)
    assert store.array("train").shape == (len(data.frame_index["train"]), NUM_COCO_KEYPOINTS, 3)
    expected = rtmlib_rows(models["pose"], data.frame_index["test"].paths)
    np.testing.assert_array_equal(np.asarray(store.array("test")), expected.astype(np.float32).astype(np.float16))
    assert cli_main(argv) == 0
    assert "already complete" in capsys.readouterr().out


def test_synthetic_dataset(tmp_path, models):
    root = generate_synthetic(
        tmp_path / "synth", SynthConfig(ids=4, tracklets=1, cameras=2, min_frames=12, max_frames=12, short_fraction=0.0)
    )
    data = load_dataset("synthetic", root, verbose=False)
    out = tmp_path / "pose_kp"
    run = extract_keypoints(data, PoseOptions(out=out, model=models["pose"], batch=16, shard_size=32, **FAST))
    assert run.frames_computed == sum(len(ix) for ix in data.frame_index.values()) == 4 * 2 * 12
    store = open_keypoint_store(data, out)
    for split in data.frame_index:
        arr = np.asarray(store.array(split), np.float32)
        assert arr.dtype == np.float32 and np.all((arr >= 0) & (arr <= 1))
        assert np.all(arr[..., 2].max(axis=1) > 0)
    open_keypoint_store(data)  # the generator's own store is untouched


# ----------------------------------------------------------------------------- resume, shards


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, models, listdata):
    ref = tmp_path / "ref"
    extract_keypoints(listdata, PoseOptions(out=ref, model=models["pose"], batch=2, shard_size=4, **FAST))
    out = tmp_path / "kp"
    proc = start_slow_pose(tmp_path, listdata, out, models["pose"], batch=2, shard_size=4)
    shards = out / ".pose-work" / "shards"
    try:  # some shards done, the next one in progress
        wait_for(lambda: len(list(shards.glob("*.npy"))) >= 2, proc, "the extraction")
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = {p.name for p in shards.glob("*.npy")}
    total = len(plan_shards({s: len(ix) for s, ix in listdata.frame_index.items()}, 4))
    assert 2 <= len(done_before) < total and not (out / "meta.json").exists()  # no half-written store
    run = extract_keypoints(listdata, PoseOptions(out=out, model=models["pose"], batch=2, shard_size=4, **FAST))
    assert run.complete and run.shards_skipped == len(done_before) and run.shards_computed == total - len(done_before)
    assert store_files(out) == store_files(ref)


@pytest.mark.slow
def test_shards_and_merge(tmp_path, models, listdata, capsys):
    ref = tmp_path / "ref"
    extract_keypoints(listdata, PoseOptions(out=ref, model=models["pose"], shard_size=3, **FAST))
    out = tmp_path / "kp"
    kw = dict(shard_size=3, **FAST)
    p0 = extract_keypoints(listdata, PoseOptions(out=out, model=models["pose"], shard="0/3", **kw))
    p2 = extract_keypoints(listdata, PoseOptions(out=out, model=models["pose"], shard=(2, 3), **kw))
    assert not p0.complete and not (out / "meta.json").exists()
    assert p0.shards + p2.shards < 9 and p0.part == (0, 3)
    root = listdata.root
    merge = ["pose", "--dataset", "list", "--root", root, "--out", str(out), "--merge", "--quiet"]
    assert cli_main(merge) == 1
    err = capsys.readouterr().err
    missing = [
        s.name for s in select_part(plan_shards({s: len(ix) for s, ix in listdata.frame_index.items()}, 3), 1, 3)
    ]
    assert f"{len(missing)} of 9 shards missing" in err and all(m in err for m in missing)
    with pytest.raises(PoseError, match=missing[0]):
        merge_shards(listdata, out)
    extract_keypoints(listdata, PoseOptions(out=out, model=models["pose"], shard="1/3", **kw))
    assert cli_main(merge) == 0
    assert store_files(out) == store_files(ref)
    # several worker processes give the same store
    out_w = tmp_path / "kp_workers"
    run = extract_keypoints(
        listdata,
        PoseOptions(
            out=out_w, model=models["pose"], shard_size=3, workers=2, progress=False, threads=1, decode_threads=1
        ),
    )
    assert run.shards_computed == 9 and store_files(out_w) == store_files(ref)


def test_shard_spec_and_parts():
    assert parse_shard_spec("2/5") == (2, 5)
    for bad in ("5/5", "-1/3", "1-3", "a/b", "0/0"):
        with pytest.raises(ValueError, match="I/N"):
            parse_shard_spec(bad)
    shards = plan_shards({"train": 10, "test": 3}, 4)
    assert [(s.split, s.start, s.stop) for s in shards] == [
        ("train", 0, 4),
        ("train", 4, 8),
        ("train", 8, 10),
        ("test", 0, 3),
    ]
    parts = [select_part(shards, i, 3) for i in range(3)]
    assert sum(parts, []) == shards and all(len(p) >= 1 for p in parts)


def test_other_settings_do_not_mix(tmp_path, models, listdata):
    out = tmp_path / "kp"
    extract_keypoints(listdata, PoseOptions(out=out, model=models["pose"], shard="0/2", shard_size=4, **FAST))
    with pytest.raises(PoseError, match="shard_size"):
        extract_keypoints(listdata, PoseOptions(out=out, model=models["pose"], shard="1/2", shard_size=5, **FAST))
    with pytest.raises(PoseError, match="pose_model_sha256"):
        extract_keypoints(listdata, PoseOptions(out=out, model=models["pose_b1"], shard="1/2", shard_size=4, **FAST))
    run = extract_keypoints(listdata, PoseOptions(out=out, model=models["pose_b1"], shard_size=5, force=True, **FAST))
    assert run.complete and run.shards_skipped == 0


# ----------------------------------------------------------------------------- weights, bad frames


def test_missing_weights_message(tmp_path, monkeypatch, listdata, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = KNOWN_MODELS["rtmpose-m"][1]
    cached = tmp_path / "torch" / "hub" / "checkpoints" / (Path(url).name.split(".")[0] + ".onnx")
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model("rtmpose-m")
    assert url in str(e.value) and str(cached) in str(e.value) and "never downloads" in str(e.value)
    with pytest.raises(ModelNotFoundError, match="not found: /nowhere/pose.onnx"):
        resolve_model("/nowhere/pose.onnx")
    # the CLI says the same, before loading anything else
    argv = ["pose", "--dataset", "list", "--root", listdata.root, "--out", str(tmp_path / "kp"), "--quiet"]
    assert cli_main(argv) == 1
    assert url in capsys.readouterr().err
    # once the file is in rtmlib's cache it is used (also for the URL itself)
    cached.parent.mkdir(parents=True)
    make_tiny_rtmpose(cached)
    assert resolve_model("rtmpose-m") == cached.resolve() == resolve_model(url)
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "xdg" / "rtmlib" / "hub" / "checkpoints")):
        resolve_model("yolox-m", "detector model")


def test_unreadable_frames(tmp_path, models):
    root = make_list_dataset(tmp_path / "data", counts=(("train", 6), ("query", 2), ("gallery", 2)), seed=7)
    data = load_dataset("list", root, verbose=False)
    paths = data.frame_index["train"].paths
    Path(paths[4]).write_bytes(b"not an image")
    with pytest.raises(UnreadableFrameError, match="f4.png: cannot be decoded"):
        extract_keypoints(data, PoseOptions(out=tmp_path / "kp", model=models["pose"], batch=2, shard_size=2, **FAST))
    assert not (tmp_path / "kp" / "meta.json").exists()
    with pytest.warns(PoseWarning, match="f4.png is unreadable"):
        run = extract_keypoints(
            data,
            PoseOptions(out=tmp_path / "kp", model=models["pose"], batch=2, shard_size=2, skip_unreadable=True, **FAST),
        )
    assert run.unreadable == [paths[4]] and run.shards_skipped == 2  # shards before the bad frame were kept
    rows = np.asarray(open_keypoint_store(data, tmp_path / "kp").array("train"))
    assert np.all(rows[4] == 0) and np.all(rows[[0, 1, 2, 3, 5], :, 2] > 0)
    # a missing frame stops the run before any inference, naming the file and its list
    Path(paths[1]).unlink()
    with pytest.raises(UnreadableFrameError, match=r"f1.png \(frame 2 of .*train.txt\)"):
        extract_keypoints(data, PoseOptions(out=tmp_path / "kp2", model=models["pose"], **FAST))
    assert not (tmp_path / "kp2" / ".pose-work" / "shards").exists() or not any(
        (tmp_path / "kp2" / ".pose-work" / "shards").iterdir()
    )


# ----------------------------------------------------------------------------- compute-realistic stand-ins (benchmarks)


def test_standins_have_the_real_models_compute_and_signatures():
    import torch

    from star.pose.standins import RTMPoseStandin, YOLOXStandin, count_macs, person_bias

    with torch.device("meta"):  # shapes only: counting needs no arithmetic
        pose, det = RTMPoseStandin(), YOLOXStandin()
        assert 1.8e9 < count_macs(pose, torch.zeros(1, 3, 256, 192)) < 2.0e9  # RTMPose-m: ~1.9 GMACs at 256 x 192
        assert 33e9 < count_macs(det, torch.zeros(1, 3, 640, 640)) < 40e9  # YOLOX-m: ~37 GMACs at 640 x 640
        sx, sy = pose(torch.zeros(3, 3, 256, 192))
        raw = det(torch.zeros(2, 3, 640, 640))
    assert sx.shape == (3, 17, 384) and sy.shape == (3, 17, 512) and raw.shape == (2, 8400, 6)
    # the detector's fixed bias: one anchor with a person score far above rtmlib's 0.7, all others far below
    logits = person_bias(640, 640)[0, :, 4:]
    assert int((logits > 0).all(dim=1).sum()) == 1 and int((logits < 0).all(dim=1).sum()) == 8399


def test_pose_workers_start_without_torch():
    """Spawned workers import star.pose: it must not pull in star.data (whose package loads torch)."""
    import subprocess
    import sys

    code = (
        "import sys, star.pose, star.pose.workers; print(sorted(m for m in ('torch', 'star.data') if m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
