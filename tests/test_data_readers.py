"""Dataset readers: HITSZ-VCM (both layouts), BUPTCampus, list files, published-count warnings."""

from __future__ import annotations

import warnings

import pytest

from data_fixtures import make_bupt, make_hitsz, make_list_dataset
from star.data import (
    INFRARED,
    VISIBLE,
    DataFormatError,
    DatasetLayoutError,
    DataWarning,
    decode_frame_name,
    load_dataset,
    read_bupt,
    read_hitsz_vcm,
    read_list_dataset,
)


def test_decode_frame_name():
    assert decode_frame_name("0001M2D3T1F1.jpg") == (1, VISIBLE, 3, 1, "0001/rgb/D3/1.jpg")
    assert decode_frame_name("0927M1D12T4F1033.jpg") == (927, INFRARED, 12, 4, "0927/ir/D12/1033.jpg")
    with pytest.raises(ValueError):
        decode_frame_name("0001M3D3T1F1.jpg")


@pytest.mark.parametrize("layout", ["merged", "split"])
def test_hitsz_reader(tmp_path, layout):
    fx = make_hitsz(tmp_path, layout)
    data = read_hitsz_vcm(tmp_path)
    base = {"merged": tmp_path, "split": tmp_path / "Train"}[layout]

    # Train: the 5-frame tracklet is dropped, pids 1 and 7 relabelled to 0 and 1.
    assert [(t.pid, t.modality, t.camid, len(t)) for t in data.train] == [
        (0, INFRARED, 1, 12),
        (0, VISIBLE, 2, 13),
        (1, INFRARED, 1, 12),
        (1, VISIBLE, 3, 14),
    ]
    assert data.train_pid_map == {1: 0, 7: 1}
    first = data.train[0]
    assert first.paths[0] == str(base / "0001/ir/D1/1.jpg")
    assert first.paths[1] == str(base / "0001/ir/D1/3.jpg")  # frame numbers not contiguous
    assert first.rows == tuple(range(0, 12)) and first.store_split == "train"
    # 1-based inclusive ranges: the second train row starts at name line 13.
    second = data.train[1]
    assert second.rows[0] == 12 and second.rows[-1] == 24
    assert second.paths[-1].endswith("0001/rgb/D2/25.jpg")

    # Query = the query_IDX rows (over two lines), gallery = every other test row; pids kept.
    assert [(t.pid, t.modality, len(t)) for t in data.query] == [(501, INFRARED, 12), (502, INFRARED, 12)]
    assert [(t.pid, t.modality, len(t)) for t in data.gallery] == [(501, VISIBLE, 12), (502, VISIBLE, 15)]
    test_base = {"merged": tmp_path, "split": tmp_path / "Test"}[layout]
    assert data.query[0].paths[0] == str(test_base / "0501/ir/D1/1.jpg")
    assert data.query[1].rows[0] == len(fx["names"]["test"]) - 15 - 4 - 12
    assert len(data.frame_index["train"]) == len(fx["names"]["train"])
    assert data.frame_index["test"].keys == fx["names"]["test"]


def test_hitsz_min_frames_option(tmp_path):
    make_hitsz(tmp_path, frames=False)
    data = read_hitsz_vcm(tmp_path, min_frames=1)
    assert len(data.train) == 5 and len(data.query) == 3 and len(data.gallery) == 3


@pytest.mark.parametrize(
    "name, row, text, match",
    [  # row None: ``text`` is the whole file
        ("track_train_info.txt", 2, "1 40 30 0001 2", r"track_train_info\.txt:3: frame range 40\.\.30"),
        ("test_name.txt", 4, "garbage.jpg", r"test_name\.txt:5: .*garbage"),
        ("query_IDX.txt", None, "1 x", r"query_IDX\.txt:1: not an integer"),
        ("query_IDX.txt", None, "1\n99", r"query_IDX\.txt:2: row 99"),
    ],
)
def test_hitsz_malformed_lines_name_file_and_line(tmp_path, name, row, text, match):
    make_hitsz(tmp_path, frames=False)
    path = tmp_path / "info" / name
    rows = text.split("\n") if row is None else path.read_text().splitlines()
    if row is not None:
        rows[row] = text
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=match):
        read_hitsz_vcm(tmp_path)


def test_hitsz_missing_info_file_shows_tree(tmp_path):
    make_hitsz(tmp_path, frames=False)
    (tmp_path / "info" / "query_IDX.txt").unlink()
    with pytest.raises(DatasetLayoutError) as err:
        read_hitsz_vcm(tmp_path)
    assert str(tmp_path / "info" / "query_IDX.txt") in str(err.value)
    assert "track_test_info.txt" in str(err.value)  # the expected tree is shown


def test_hitsz_inconsistent_range_is_a_warning(tmp_path):
    make_hitsz(tmp_path)  # load_dataset checks that the frames exist
    info = tmp_path / "info"
    rows = (info / "track_train_info.txt").read_text().splitlines()
    assert rows[0] == "1 1 12 0001 1"
    rows[0] = "1 1 12 0001 9"  # camera 9 disagrees with the frame names (D1)
    (info / "track_train_info.txt").write_text("\n".join(rows) + "\n")
    with pytest.warns(DataWarning, match=r"track_train_info\.txt:1: 1 track row"):
        data = load_dataset("synthetic", tmp_path, verbose=False)  # the HITSZ-VCM reader, no count warning
    assert data.train[0].camid == 9  # used as published code does


def test_bupt_reader(tmp_path):
    make_bupt(tmp_path)
    data = read_bupt(tmp_path)
    # Two aligned pairs -> 4 tracklets (IR then RGB per pair), pids 1, 2 -> 0, 1.
    assert [(t.pid, t.modality, t.camid, t.tid, len(t)) for t in data.train] == [
        (0, INFRARED, 0, "1", 3),
        (0, VISIBLE, 0, "1", 3),
        (1, INFRARED, 1, "1", 4),
        (1, VISIBLE, 1, "1", 4),
    ]
    assert data.train[0].paths[0] == str(tmp_path / "DATA/1/IR/LS3/1_IR_LS3_1_100.jpg")
    assert [(t.pid, t.modality, t.camid) for t in data.query] == [(5, INFRARED, 2), (5, VISIBLE, 2)]
    assert [(t.pid, t.modality, t.camid) for t in data.gallery] == [(5, VISIBLE, 4), (5, INFRARED, 5)]
    # One store split of every RGB/IR frame (FakeIR excluded); rows point at the right keys.
    index = data.frame_index["all"]
    assert len(index) == 3 + 3 + 4 + 2 + 4 + 2 + 2 + 3 + 2 + 2
    assert not any("FakeIR" in k for k in index.keys)
    for t in data.train + data.query + data.gallery:
        assert [index.paths[r] for r in t.rows] == list(t.paths)
    assert data.stats()["train"] == {"tracklets": 4, "ids": 2, "frames": 14, "ir": 2, "rgb": 2}

    aux = read_bupt(tmp_path, auxiliary=True)
    assert len(aux.train) == 6 and aux.num_train_pids == 2


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("query.txt", "5 IR CQ1 1\n5 IR XX9 1\n", r"query\.txt:2: unknown camera 'XX9'"),
        ("query.txt", "5 IR CQ1 7\n", r"query\.txt:1: tracklet 5/IR/CQ1/7 is not in data_paths\.json"),
        ("data_paths.json", '{"1": \n [}', r"data_paths\.json:2: invalid JSON"),
    ],
)
def test_bupt_errors(tmp_path, name, text, match):
    make_bupt(tmp_path)
    (tmp_path / name).write_text(text)
    with pytest.raises(DataFormatError, match=match):
        read_bupt(tmp_path)


def test_list_reader(tmp_path):
    make_list_dataset(tmp_path)
    data = read_list_dataset(tmp_path)
    # pids relabelled in increasing order: 4 -> 0, 10 -> 1; tracklets in order of first appearance.
    assert [(t.pid, t.camid, t.modality, t.tid, len(t)) for t in data.train] == [
        (1, 1, INFRARED, "t1", 3),
        (1, 2, VISIBLE, "t1", 2),
        (0, 1, INFRARED, "x", 2),
        (0, 2, VISIBLE, "y", 2),
    ]
    assert data.train[0].paths == (str(tmp_path / "a/f 1.jpg"), str(tmp_path / "a/f2.jpg"), str(tmp_path / "a/f3.jpg"))
    assert data.train[0].rows == (0, 1, 3)  # rows count frame lines only (comments/blank skipped)
    assert data.frame_index["train"].keys[3] == "a/f3.jpg"
    assert [(t.pid, t.modality) for t in data.query] == [(33, INFRARED)]
    assert [(t.pid, t.modality) for t in data.gallery] == [(33, VISIBLE)]


@pytest.mark.parametrize(
    "text, error, match",
    [
        ("g/1.jpg 33 2 rgb g\ng/2.jpg 33 2 thermal g\n", DataFormatError, r"gallery\.txt:2: modality"),
        ("g/1.jpg 33 rgb g\n", DataFormatError, r"gallery\.txt:1: expected"),
        (None, DatasetLayoutError, "gallery.txt"),  # the file is missing
    ],
)
def test_list_reader_errors(tmp_path, text, error, match):
    make_list_dataset(tmp_path)
    gallery = tmp_path / "gallery.txt"
    if text is None:
        gallery.unlink()
    else:
        gallery.write_text(text)
    with pytest.raises(error, match=match):
        read_list_dataset(tmp_path)


def test_count_warnings_only_for_real_datasets(tmp_path, capsys):
    make_hitsz(tmp_path)  # load_dataset checks that the frames exist
    with pytest.warns(DataWarning, match=r"train\.tracklets: 4 \(expected 9751\)"):
        load_dataset("hitsz-vcm", tmp_path)
    assert "train" in capsys.readouterr().out  # counts printed on load
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("synthetic", tmp_path, verbose=False)  # same layout, no published counts

    make_bupt(tmp_path / "b")
    with pytest.warns(DataWarning, match=r"train\.ids: 2 \(expected 1074\)"):
        load_dataset("bupt", tmp_path / "b", verbose=False)


def test_count_check_follows_the_protocol_options(tmp_path):
    make_hitsz(tmp_path)  # load_dataset checks that the frames exist
    with pytest.warns(DataWarning, match="published release"):
        load_dataset("hitsz-vcm", tmp_path, verbose=False, min_frames=12)  # the default protocol, spelled out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("hitsz-vcm", tmp_path, verbose=False, min_frames=1)  # another protocol: no published counts
