"""`star synth` and `star check-data` through star.cli.main."""

from __future__ import annotations

import json

import numpy as np

from data_fixtures import make_bupt, make_hitsz
from star.cli import main
from star.data import read_hitsz_vcm, write_keypoints

SYNTH_ARGS = [
    "--ids",
    "6",
    "--test-ids",
    "3",
    "--tracklets",
    "2",
    "--max-frames",
    "13",
    "--height",
    "32",
    "--width",
    "16",
]


def test_synth_then_check_data_json(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--seed", "4", *SYNTH_ARGS]) == 0
    printed = capsys.readouterr().out
    assert "wrote the synthetic dataset" in printed and "query" in printed
    assert (out / "keypoints" / "train.npy").is_file()

    assert main(["check-data", "--dataset", "synthetic", "--root", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.out)  # exactly one JSON object on stdout
    assert set(stats) == {"train", "query", "gallery"}
    for split in stats.values():
        assert set(split) == {"tracklets", "ids", "frames", "ir", "rgb"}
        assert split["tracklets"] == split["ir"] + split["rgb"]
    assert stats["train"]["ids"] == 3 and stats["query"]["rgb"] == 0 and stats["gallery"]["ir"] == 0

    # Existing output: refused without --force.
    assert main(["synth", "--out", str(out), *SYNTH_ARGS]) == 1
    assert "--force" in capsys.readouterr().err


def test_check_data_hitsz_counts_after_filter(tmp_path, capsys):
    make_hitsz(tmp_path)
    assert main(["check-data", "--dataset", "hitsz-vcm", "--root", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {
        "train": {"tracklets": 4, "ids": 2, "frames": 12 + 13 + 12 + 14, "ir": 2, "rgb": 2},
        "query": {"tracklets": 2, "ids": 2, "frames": 24, "ir": 2, "rgb": 0},
        "gallery": {"tracklets": 2, "ids": 2, "frames": 27, "ir": 0, "rgb": 2},
    }
    assert "differ from the published release" in captured.err  # a real dataset name: counts are checked

    assert main(["check-data", "--dataset", "hitsz-vcm", "--root", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "frames present" in text and "none found" in text


def test_check_data_bupt(tmp_path, capsys):
    make_bupt(tmp_path)
    assert main(["check-data", "--dataset", "bupt", "--root", str(tmp_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["train"] == {"tracklets": 4, "ids": 2, "frames": 14, "ir": 2, "rgb": 2}
    assert stats["query"]["ir"] == 1 and stats["query"]["rgb"] == 1


def test_check_data_wrong_root_prints_tree(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["check-data", "--dataset", "hitsz-vcm", "--root", str(missing), "--json"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(missing) in captured.err and "info/train_name.txt" in captured.err and "expected layout" in captured.err

    (tmp_path / "half").mkdir()
    assert main(["check-data", "--dataset", "hitsz-vcm", "--root", str(tmp_path / "half")]) != 0
    assert f"missing {tmp_path / 'half' / 'info' / 'train_name.txt'}" in capsys.readouterr().err


def test_check_data_malformed_line_names_file_and_line(tmp_path, capsys):
    make_hitsz(tmp_path)
    path = tmp_path / "info" / "track_test_info.txt"
    lines = path.read_text().splitlines()
    lines[1] = "2 13 24 0501"
    path.write_text("\n".join(lines) + "\n")
    assert main(["check-data", "--dataset", "hitsz-vcm", "--root", str(tmp_path)]) == 1
    assert f"{path}:2: expected 5 integers" in capsys.readouterr().err


def test_check_data_missing_frame_and_corrupt_frame(tmp_path, capsys):
    make_hitsz(tmp_path)
    victim = tmp_path / "0007" / "rgb" / "D3" / "5.jpg"
    victim.unlink()
    assert main(["check-data", "--dataset", "hitsz-vcm", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(victim) in err and "train_name.txt" in err and "1 missing" in err

    make_hitsz(tmp_path)
    victim.write_bytes(b"\xff\xd8broken")
    assert main(["check-data", "--dataset", "hitsz-vcm", "--root", str(tmp_path)]) == 0  # existence only
    capsys.readouterr()
    assert main(["check-data", "--dataset", "hitsz-vcm", "--root", str(tmp_path), "--decode"]) == 1
    assert f"{victim}, cannot be decoded" in capsys.readouterr().err


def test_check_data_keypoint_store(tmp_path, capsys):
    make_hitsz(tmp_path)
    data = read_hitsz_vcm(tmp_path)
    store = tmp_path / "kp"
    for split, index in data.frame_index.items():
        write_keypoints(store, split, np.zeros((len(index), 17, 3)), index.keys, pose_model="x")
    assert main(["check-data", "--dataset", "hitsz-vcm", "--root", str(tmp_path), "--keypoints", str(store)]) == 0
    assert f"{store} (aligned)" in capsys.readouterr().out

    keys = data.frame_index["test"].keys[:-2]
    write_keypoints(store, "test", np.zeros((len(keys), 17, 3)), keys, pose_model="x")
    assert main(["check-data", "--dataset", "hitsz-vcm", "--root", str(tmp_path), "--keypoints", str(store)]) == 1
    assert "test.npy: has" in capsys.readouterr().err

    assert (
        main(["check-data", "--dataset", "hitsz-vcm", "--root", str(tmp_path), "--keypoints", str(tmp_path / "no")])
        == 1
    )
    assert "meta.json" in capsys.readouterr().err


def test_cli_dataset_choices_match_the_registry():
    from star.cli import build_parser
    from star.data import DATASET_NAMES

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    check = sub.choices["check-data"]
    assert tuple(next(a for a in check._actions if a.dest == "dataset").choices) == DATASET_NAMES
