"""star pose under bad input and faults: bad models, parent death, concurrent runs, devices."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from pose_fixtures import alive, descendants, make_list_dataset, start_slow_pose, store_files, wait_for
from star.cli import main as cli_main
from star.data import load_dataset
from star.errors import OutputLockedError
from star.pose import PoseError, PoseOptions, RTMPoseModel, YOLOXDetector, extract_keypoints, merge_shards
from star.pose.testing import make_tiny_rtmpose, make_tiny_yolox

FAST = dict(progress=False, threads=1, decode_threads=1)


def pose_argv(listdata, out, *extra) -> list[str]:
    """``star pose`` argv over the list dataset ``listdata`` into ``out``, ``extra`` appended (the
    first 7 items name the dataset and the output folder: ``--merge`` reuses them)."""
    return ["pose", "--dataset", "list", "--root", listdata.root, "--out", str(out), *extra]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    pose = make_tiny_rtmpose(d / "pose.onnx")
    data = Path(pose).read_bytes()
    (d / "empty.onnx").write_bytes(b"")
    (d / "garbage.onnx").write_bytes(b"this is not a protobuf \x00\xff" * 8)
    (d / "truncated.onnx").write_bytes(data[: len(data) // 2])
    return {
        "pose": pose,
        "det": make_tiny_yolox(d / "det.onnx"),
        "det_raw": make_tiny_yolox(d / "raw.onnx", nms=False),
        **{k: str(d / f"{k}.onnx") for k in ("empty", "garbage", "truncated")},
    }


@pytest.fixture(scope="module")
def listdata(tmp_path_factory):
    root = make_list_dataset(tmp_path_factory.mktemp("list") / "data")
    return load_dataset("list", root, verbose=False)


# ------------------------------------------------------------------------ models that are not what they should be


@pytest.mark.parametrize("bad", ["empty", "garbage", "truncated"])
def test_a_file_that_is_not_onnx_is_one_error_naming_it(tmp_path, models, listdata, capsys, bad):
    for kind, make in (("pose model", RTMPoseModel), ("detector model", YOLOXDetector)):
        with pytest.raises(PoseError, match=f"{kind} {models[bad]} is (empty|not a loadable ONNX model)"):
            make(models[bad])
    argv = pose_argv(listdata, tmp_path / "kp", "--quiet")
    assert cli_main([*argv, "--model", models[bad]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: pose model") and models[bad] in err and err.count("\n") == 1
    assert cli_main([*argv, "--model", models["pose"], "--detector", "yolox", "--det-model", models[bad]]) == 1
    assert f"detector model {models[bad]}" in capsys.readouterr().err


def test_a_model_of_the_wrong_kind_is_named_at_load(tmp_path, models, listdata):
    for det in ("det", "det_raw"):
        with pytest.raises(
            PoseError, match=r"pose model .* does not look like an RTMPose .*simcc_x \[N, 17, 1280\].*--det-model"
        ):
            extract_keypoints(listdata, PoseOptions(out=tmp_path / "kp", model=models[det], **FAST))
    with pytest.raises(PoseError, match=r"detector model .*pose.onnx does not look like a YOLOX detector.*simcc_x"):
        extract_keypoints(
            listdata,
            PoseOptions(out=tmp_path / "kp", model=models["pose"], detector="yolox", det_model=models["pose"], **FAST),
        )
    assert not (tmp_path / "kp").exists()  # nothing started


# ----------------------------------------------------------------------------- 18: workers die with their parent


@pytest.mark.slow
def test_workers_and_resource_tracker_die_with_a_killed_parent(tmp_path, models, listdata):
    out = tmp_path / "kp"
    proc = start_slow_pose(tmp_path, listdata, out, models["pose"], batch=1, shard_size=2, workers=2)
    try:
        # workers started and past their initializer (a shard written), the resource tracker with them
        wait_for(
            lambda: len(descendants(proc.pid)) >= 3 and any((out / ".pose-work" / "shards").glob("*.npy")),
            proc,
            "the workers",
        )
        children = descendants(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(children), f"still running after their parent was killed: {sorted(alive(children))}"


# ----------------------------------------------------------------------------- 19: one run per output folder


def test_a_second_run_into_the_same_folder_fails_at_once(tmp_path, models, listdata, capsys):
    ref = tmp_path / "ref"
    extract_keypoints(listdata, PoseOptions(out=ref, model=models["pose"], batch=2, shard_size=4, **FAST))
    out = tmp_path / "kp"
    shards = out / ".pose-work" / "shards"
    proc = start_slow_pose(tmp_path, listdata, out, models["pose"], batch=2, shard_size=4)
    try:
        wait_for(lambda: any(shards.glob("*.npy")), proc, "the first run")
        with pytest.raises(OutputLockedError, match=f"{out} is in use by another run \\(star pose, pid {proc.pid} "):
            extract_keypoints(listdata, PoseOptions(out=out, model=models["pose"], batch=2, shard_size=4, **FAST))
        argv = pose_argv(listdata, out, "--model", models["pose"], "--batch", "2", "--shard-size", "4", "--quiet")
        assert cli_main(argv) == 1 and f"pid {proc.pid}" in capsys.readouterr().err
        assert cli_main([*argv[:7], "--merge", "--quiet"]) == 1 and "in use" in capsys.readouterr().err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # a temporary the killed run left is removed before the rerun writes its first shard
    stale = shards / f".train-000002.npy.{proc.pid}.0123abcd.tmp"
    stale.write_bytes(b"half a shard")
    seen = []
    run = extract_keypoints(
        listdata,
        PoseOptions(out=out, model=models["pose"], batch=2, shard_size=4, **FAST),
        on_shard_done=lambda name: seen.append(sorted(p.name for p in shards.glob(".*.tmp"))),
    )
    assert run.complete and seen and seen[0] == []
    assert store_files(out) == store_files(ref)


def test_parts_run_side_by_side_but_not_twice(tmp_path, models, listdata):
    ref = tmp_path / "ref"
    extract_keypoints(listdata, PoseOptions(out=ref, model=models["pose"], shard_size=3, **FAST))
    out = tmp_path / "kp"
    kw = dict(shard_size=3, **FAST)
    proc = start_slow_pose(tmp_path, listdata, out, models["pose"], shard_size=3, shard="0/2")
    try:
        wait_for(lambda: any((out / ".pose-work" / "shards").glob("*.npy")), proc, "part 0/2")
        assert not extract_keypoints(
            listdata, PoseOptions(out=out, model=models["pose"], shard="1/2", **kw)
        ).complete  # alongside
        for other in (dict(shard="0/2"), {}, dict(shard="1/2", force=True)):
            with pytest.raises(OutputLockedError, match=f"star pose --shard 0/2, pid {proc.pid}"):
                extract_keypoints(listdata, PoseOptions(out=out, model=models["pose"], **other, **kw))
        with pytest.raises(OutputLockedError, match="--shard 0/2"):
            merge_shards(listdata, out)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    extract_keypoints(listdata, PoseOptions(out=out, model=models["pose"], shard="0/2", **kw))
    merge_shards(listdata, out)
    assert store_files(out) == store_files(ref)


# ----------------------------------------------------------------------------- 20: --device


def test_device_cuda_needs_the_cuda_provider(tmp_path, models, listdata, capsys):
    def argv(out, *extra):
        return pose_argv(listdata, out, "--model", models["pose"], "--quiet", "--threads", "1", *extra)

    if "CUDAExecutionProvider" in ort.get_available_providers():  # the pose-gpu extra: --device cuda is honoured
        assert RTMPoseModel(models["pose"], "cuda").session.get_providers()[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(PoseError, match=r"--device cuda: .* no CUDA execution provider .*star-reid\[pose-gpu\]"):
            extract_keypoints(listdata, PoseOptions(out=tmp_path / "kp", model=models["pose"], device="cuda", **FAST))
        assert cli_main(argv(tmp_path / "kp", "--device", "cuda:0")) == 1
        assert "pose-gpu" in capsys.readouterr().err
        assert not (tmp_path / "kp").exists()
    with pytest.raises(PoseError, match="--device must be one of cpu, cuda, cuda:N or auto, got 'gpu'"):
        RTMPoseModel(models["pose"], "gpu")
    # auto: the GPU when onnxruntime has one, else the CPU -- same store
    assert cli_main(argv(tmp_path / "auto", "--device", "auto")) == 0
    assert cli_main(argv(tmp_path / "cpu")) == 0
    a = np.load(tmp_path / "auto" / "train.npy")
    np.testing.assert_allclose(a, np.load(tmp_path / "cpu" / "train.npy"), atol=1e-3)


# ----------------------------------------------------------------------------- progress off a terminal


def test_progress_is_plain_lines_when_not_on_a_terminal(tmp_path, models, listdata, capsys):
    import io

    from star.progress import PlainProgress, counting_progress

    now = [100.0]
    stream = io.StringIO()
    plain = PlainProgress(1000, "pose", stream, period_s=30.0, clock=lambda: now[0])
    for _ in range(10):  # 100 frames every 10 s: a line every third update
        now[0] += 10.0
        plain.update(100)
    plain.close()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "pose: 300/1000 frames (30.0 %), 10.0 frames/s, ETA 0:01:10",
        "pose: 600/1000 frames (60.0 %), 10.0 frames/s, ETA 0:00:40",
        "pose: 900/1000 frames (90.0 %), 10.0 frames/s, ETA 0:00:10",
        "pose: 1000/1000 frames in 0:01:40, 10.0 frames/s",
    ]
    with counting_progress(5, "pose", stream=io.StringIO()) as advance:
        assert advance.__self__.__class__ is PlainProgress  # a StringIO is no terminal
    # the CLI, its stderr captured (no terminal): no bar redraws, one closing line
    argv = pose_argv(listdata, tmp_path / "kp", "--model", models["pose"], "--threads", "1")
    assert cli_main(argv) == 0
    err = capsys.readouterr().err
    n = sum(len(ix) for ix in listdata.frame_index.values())
    assert "\r" not in err and f"pose: {n}/{n} frames in 0:00:0" in err


def test_more_workers_than_shards_is_said(tmp_path, models, listdata):
    from star.pose import PoseWarning

    with pytest.warns(PoseWarning, match="2 workers but 1 shard"):
        extract_keypoints(
            listdata,
            PoseOptions(out=tmp_path / "kp", model=models["pose"], shard="0/3", shard_size=8, workers=2, **FAST),
        )


@pytest.mark.parametrize("flag", ["--threads", "--decode-threads"])
@pytest.mark.parametrize("value", ["-4", "0"])
def test_non_positive_thread_counts_are_refused(tmp_path, models, listdata, capsys, flag, value):
    argv = pose_argv(listdata, tmp_path / "kp", "--quiet", "--model", models["pose"], flag, value)
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    name = flag[2:].replace("-", "_")
    assert err == f"error: {name} must be >= 1 (or left out for the default), got {value}\n"
    assert not (tmp_path / "kp").exists()
