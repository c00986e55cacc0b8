"""Pose quality per split and modality: in meta.json from star pose, printed by check-data --keypoints."""

from __future__ import annotations

import json

import numpy as np

from pose_fixtures import make_list_dataset
from star.cli import main as cli_main
from star.data import COCO17_KEYPOINTS, SynthConfig, generate_synthetic, load_dataset, open_keypoint_store
from star.data.keypoint_quality import pose_quality, row_modalities, store_pose_quality
from star.pose import PoseOptions, extract_keypoints
from star.pose.testing import make_tiny_rtmpose


def test_quality_numbers():
    arr = np.zeros((4, 17, 3), np.float16)
    arr[0, :, 2] = 1.0  # rgb: every joint at 1
    arr[1, :, 2] = 0.5  # rgb: every joint at 0.5 but the last two undetected
    arr[1, 15:, 2] = 0.0
    arr[2, 3, 2] = 0.25  # ir: one joint; frame 3 (ir) has none
    mod = np.array([1, 1, 0, 0], np.int8)
    q = pose_quality({"train": arr}, {"train": mod}, "stamp")["splits"]["train"]
    assert set(q) == {"all", "ir", "rgb"}
    rgb, ir = q["rgb"], q["ir"]
    assert rgb["frames"] == 2 and rgb["mean_conf"] == round((17 + 0.5 * 15) / 34, 4)
    assert rgb["undetected_joints"] == round(2 / 34, 4) and rgb["frames_without_joints"] == 0.0
    assert [w["joint"] for w in rgb["worst_joints"][:2]] == list(COCO17_KEYPOINTS[15:17])
    assert ir["undetected_joints"] == round(33 / 34, 4) and ir["frames_without_joints"] == 0.5
    assert ir["worst_joints"][0] == {"joint": COCO17_KEYPOINTS[0], "mean_conf": 0.0} and len(ir["worst_joints"]) == 5
    assert q["all"]["frames"] == 4 and q["all"]["frames_without_joints"] == 0.25
    # chunked reading gives the same numbers
    assert pose_quality({"train": arr}, {"train": mod}, "s", chunk_rows=3) == pose_quality(
        {"train": arr}, {"train": mod}, "s"
    )


def test_star_pose_stores_it_and_check_data_prints_it(tmp_path, capsys):
    root = make_list_dataset(tmp_path / "data")
    data = load_dataset("list", root, verbose=False)
    out = tmp_path / "kp"
    extract_keypoints(
        data, PoseOptions(out=out, model=make_tiny_rtmpose(tmp_path / "pose.onnx"), progress=False, threads=1)
    )
    meta = json.loads((out / "meta.json").read_text())
    stored = meta["pose_quality"]
    assert stored["store_created_at"] == meta["created_at"] and set(stored["splits"]) == {"train", "query", "gallery"}
    assert set(stored["splits"]["train"]) == {"all", "ir", "rgb"}  # the list files give both modalities
    store = open_keypoint_store(data, out)
    arrays = {s: store.array(s) for s in data.frame_index}
    recomputed = pose_quality(arrays, row_modalities(data, {s: len(a) for s, a in arrays.items()}), meta["created_at"])
    assert stored == recomputed
    argv = ["check-data", "--dataset", "list", "--root", str(root), "--keypoints", str(out)]
    assert cli_main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pose_quality"] == stored
    assert cli_main(argv) == 0
    text = capsys.readouterr().out
    ir = stored["splits"]["train"]["ir"]
    assert "pose quality" in text and f"train    ir   {ir['frames']:>8} frames  conf {ir['mean_conf']:.3f}" in text
    assert f"worst: {ir['worst_joints'][0]['joint']}" in text


def test_an_older_store_gets_it_computed(tmp_path, capsys):
    """The synthetic generator's store has no quality section: check-data computes it from the arrays."""
    root = generate_synthetic(
        tmp_path / "synth", SynthConfig(ids=3, tracklets=1, cameras=2, min_frames=12, max_frames=12, short_fraction=0.0)
    )
    data = load_dataset("synthetic", root, verbose=False)
    store = open_keypoint_store(data)
    assert "pose_quality" not in store.meta
    assert (
        cli_main(
            [
                "check-data",
                "--dataset",
                "synthetic",
                "--root",
                str(root),
                "--keypoints",
                str(root / "keypoints"),
                "--json",
            ]
        )
        == 0
    )
    q = json.loads(capsys.readouterr().out)["pose_quality"]
    assert q == store_pose_quality(store, data)
    for split, groups in q["splits"].items():
        assert groups["all"]["frames"] == len(data.frame_index[split])
        assert sum(g["frames"] for name, g in groups.items() if name != "all") == groups["all"]["frames"]
    # a section that does not belong to the store's arrays any more (rewritten since) is recomputed
    meta_path = root / "keypoints" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["pose_quality"] = dict(q, store_created_at="2000-01-01T00:00:00+00:00", splits={"train": {}})
    meta_path.write_text(json.dumps(meta))
    assert store_pose_quality(open_keypoint_store(data), data) == q
