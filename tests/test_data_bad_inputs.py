"""Bad files a user hands star.data: each gives one DataError naming the file (and line), at load time.

Reproductions of defects found in review and the same class of defect in every other file
the readers and the keypoint store take. The dataset is a small ``star synth`` set, copied
per test so each can break it its own way.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from data_fixtures import make_bupt
from star.cli import main
from star.data import (
    DataError,
    DataFormatError,
    EmptySplitError,
    KeypointStoreError,
    MissingFramesError,
    SynthConfig,
    UnreadableFolderError,
    check_dataset,
    generate_synthetic,
    load_dataset,
    open_keypoint_store,
    read_bupt,
)
from tiny_run import quick_train_argv

SYNTH = SynthConfig(ids=6, test_ids=3, tracklets=2, max_frames=13, height=32, width=16, seed=4)


@pytest.fixture(scope="module")
def synth_master(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synth") / "syn0", SYNTH)


@pytest.fixture
def syn0(synth_master, tmp_path):
    return shutil.copytree(synth_master, tmp_path / "syn0")


def _check_data(root, capsys) -> tuple[int, str]:
    rc = main(["check-data", "--dataset", "synthetic", "--root", str(root)])
    return rc, capsys.readouterr().err


def _load(root):
    data = load_dataset("synthetic", root, verbose=False)
    return open_keypoint_store(data)


# ----------------------------------------------------------------------------- 1: keypoint .npy that is not one
@pytest.mark.parametrize("content, why", [(b"", "empty (0 bytes)"), (b"\x00garbage" * 40, "not a .npy file")])
def test_zero_byte_or_garbage_keypoint_array(syn0, capsys, content, why):
    npy = syn0 / "keypoints" / "train.npy"
    npy.write_bytes(content)
    with pytest.raises(KeypointStoreError, match=re.escape(why)) as err:
        _load(syn0)
    assert str(npy) in str(err.value)
    rc, out = _check_data(syn0, capsys)
    assert rc == 1 and f"error: {npy}: " in out and why in out and "Traceback" not in out


def test_npy_with_a_broken_header(syn0):
    npy = syn0 / "keypoints" / "test.npy"
    npy.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f2'," + b" " * 20)
    with pytest.raises(KeypointStoreError, match="not a readable .npy array") as err:
        _load(syn0)
    assert str(npy) in str(err.value)


# ----------------------------------------------------------------------------- 2: empty splits
def test_every_tracklet_shorter_than_the_minimum_is_an_error(syn0, capsys):
    info = syn0 / "info" / "track_train_info.txt"
    rows = [ln.split() for ln in info.read_text().splitlines()]
    info.write_text("".join(f"{m} {s} {int(s) + 5} {p} {c}\n" for m, s, e, p, c in rows))  # 6 frames each
    with pytest.raises(EmptySplitError) as err:
        load_dataset("synthetic", syn0, verbose=False)
    assert f"train: 0 tracklets of at least 12 frames ({len(rows)} shorter ones dropped) in {info}" in str(err.value)
    rc, out = _check_data(syn0, capsys)
    assert rc == 1 and "train: 0 tracklets of at least 12 frames" in out


@pytest.mark.parametrize("file, split", [("track_train_info.txt", "train"), ("query_IDX.txt", "query")])
def test_empty_annotation_file_is_an_empty_split(syn0, capsys, file, split):
    path = syn0 / "info" / file
    path.write_text("")
    rc, out = _check_data(syn0, capsys)
    assert rc == 1 and f"{split}: {path} lists no tracklets" in out


def test_empty_bupt_split_file(tmp_path):
    make_bupt(tmp_path)
    (tmp_path / "gallery.txt").write_text("\n")
    with pytest.raises(EmptySplitError, match=r"gallery: .*gallery\.txt lists no tracklets"):
        load_dataset("bupt", tmp_path, verbose=False)


def test_synth_refuses_settings_that_leave_no_tracklet(tmp_path, capsys):
    # Every tracklet shorter than the reader's 12-frame minimum: refused before anything is written.
    out = tmp_path / "short"
    rc = main(["synth", "--out", str(out), "--ids", "6", "--min-frames", "6", "--max-frames", "8"])
    assert rc == 1 and "max_frames=8" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match="12-frame minimum"):
        SynthConfig(min_frames=6, max_frames=8).validate()
    # Settings that pass validate() but whose dataset would still have an empty split: not written either.
    cfg = SynthConfig(**{**SYNTH.__dict__, "short_fraction": 1.0})
    with pytest.raises(ValueError, match="empty split"):
        generate_synthetic(out, cfg)
    assert not out.exists() and not list(tmp_path.glob(".short*"))


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"ids": 1}, r"ids = 1 is out of range: it must be \[2, 9999\]"),
        ({"cameras": 1}, r"cameras = 1 is out of range: it must be >= 2"),
        ({"short_fraction": float("nan")}, r"short_fraction = nan is out of range: it must be \[0, 1\] and finite"),
        ({"ids": 4, "test_ids": 4}, r"need test_ids < ids, got ids=4, test_ids=4"),
    ],
)
def test_synth_settings_checked_in_python_name_the_setting(tmp_path, setting, message):
    # The same ranges as the run config's data.synthetic (one table), for callers without a run config.
    from star.data.errors import SynthConfigError

    with pytest.raises(SynthConfigError, match=message):
        generate_synthetic(tmp_path / "d", SynthConfig(**setting))
    assert not (tmp_path / "d").exists()


def test_synth_refuses_frames_too_large_before_any_work(tmp_path, capsys):
    out = tmp_path / "huge"
    rc = main(["synth", "--out", str(out), "--height", "100000", "--width", "100000"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: frames of 100000 x 100000 pixels do not fit a JPEG") and not out.exists()
    with pytest.raises(ValueError, match=r"need 6.7 GiB per tracklet of 24 frames; only 1.0 GiB of memory"):
        SynthConfig(height=10000, width=10000).validate(memory=2**30)


# ----------------------------------------------------------------------------- 3: missing frames
def test_missing_frame_folders_fail_at_load(syn0, capsys):
    for mod in ("rgb", "ir"):
        shutil.rmtree(syn0 / "0001" / mod)
    with pytest.raises(MissingFramesError) as err:
        load_dataset("synthetic", syn0, verbose=False)
    e = err.value
    names = (syn0 / "info" / "train_name.txt").read_text().splitlines()
    gone = [i for i, n in enumerate(names) if n.startswith("0001")]
    assert e.count == len(gone) and e.path == str(syn0 / "info" / "train_name.txt")
    message = str(e)
    assert f"{len(gone)} missing of the {len(names)} frames listed" in message
    first = names[gone[0]]
    assert f"line {gone[0] + 1}: {syn0}/0001/" in message and f"and {len(gone) - 5} more" in message
    assert first.startswith("0001M")
    # Opting out (pose with skip_unreadable does) still loads.
    assert load_dataset("synthetic", syn0, verbose=False, check_frames=False).train

    rc, out = _check_data(syn0, capsys)
    assert rc == 1 and f"{len(gone)} missing of the {len(names)} frames listed" in out


def test_training_stops_before_any_work_on_missing_frames(syn0, tmp_path, capsys):
    shutil.rmtree(syn0 / "0001" / "rgb")
    rc = main(quick_train_argv(syn0, tmp_path / "O"))
    err = capsys.readouterr().err
    assert rc == 1 and "frames listed" in err and "unreadable frame" not in err
    assert not (tmp_path / "O" / "log.jsonl").exists()


# ----------------------------------------------------------------------------- 4: keypoint values
def _edit_store(root, split, edit):
    npy = root / "keypoints" / f"{split}.npy"
    arr = np.load(npy)
    edit(arr)
    np.save(npy, arr)
    return npy


@pytest.mark.parametrize(
    "edit, row, what",
    [
        (lambda a: a.fill(np.nan), 0, "x = nan"),
        (lambda a: a.__setitem__((37, 5, 1), np.inf), 37, "keypoint 5 (left_shoulder) y = inf"),
        (lambda a: a.__setitem__((3, 0, 2), 1.5), 3, "keypoint 0 (nose) conf = 1.5"),
        (lambda a: a.__setitem__((9, 2), (143.0, 0.5, 0.9)), 9, "x = 143"),  # pixel coordinates
    ],
)
def test_bad_keypoint_values_fail_at_load(syn0, capsys, edit, row, what):
    npy = _edit_store(syn0, "train", edit)
    with pytest.raises(KeypointStoreError) as err:
        _load(syn0)
    message = str(err.value)
    assert message.startswith(f"{npy}: row {row} (frame ") and what in message
    rc, out = _check_data(syn0, capsys)
    assert rc == 1 and f"{npy}: row {row} (frame " in out


def test_undetected_keypoint_coordinates_are_not_range_checked(syn0):
    # conf 0 = not detected: x, y carry no meaning (they must still be finite).
    _edit_store(syn0, "test", lambda a: a.__setitem__((4, 3), (-7.0, 9.0, 0.0)))
    _load(syn0)
    _edit_store(syn0, "test", lambda a: a.__setitem__((4, 3, 1), 1.04))  # small margin
    _load(syn0)


# ----------------------------------------------------------------------------- the rest of the keypoint store
@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe{}", b"[1, 2]", b'{"splits": {"train": 3}}', b'{"splits": {"train": {"num_frames": "many"}}}'],
)
def test_bad_meta_json(syn0, content):
    meta = syn0 / "keypoints" / "meta.json"
    meta.write_bytes(content)
    with pytest.raises(KeypointStoreError) as err:
        _load(syn0)
    assert str(meta) in str(err.value)


def test_non_utf8_index_file(syn0):
    index = syn0 / "keypoints" / "train.index.txt"
    lines = index.read_bytes().split(b"\n")
    lines[2] = b"\xff\xfe"
    index.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"train\.index\.txt:3: not a UTF-8 text file"):
        _load(syn0)


# ----------------------------------------------------------------------------- annotation files
def test_non_utf8_info_file_names_line_and_offset(syn0):
    info = syn0 / "info" / "track_test_info.txt"
    text = info.read_bytes()
    info.write_bytes(text.replace(b"\n", b"\n\xe9", 2)[: len(text) + 2])
    with pytest.raises(DataFormatError, match=r"track_test_info\.txt:2: not a UTF-8 text file \(byte 0xe9 at offset"):
        load_dataset("synthetic", syn0, verbose=False)


def test_duplicate_query_row_names_the_line(syn0):
    path = syn0 / "info" / "query_IDX.txt"
    first = path.read_text().split()[0]
    path.write_text(f"{path.read_text().strip()}\n{first}\n")
    with pytest.raises(DataFormatError, match=rf"query_IDX\.txt:2: row {first} is listed more than once"):
        load_dataset("synthetic", syn0, verbose=False)


@pytest.mark.parametrize("content, match", [(b"\xff\xfe{}", "not a UTF-8 text file"), (b"", "invalid JSON")])
def test_bad_bupt_paths_json(tmp_path, content, match):
    make_bupt(tmp_path)
    (tmp_path / "data_paths.json").write_bytes(content)
    with pytest.raises(DataFormatError, match=match) as err:
        read_bupt(tmp_path)
    assert "data_paths.json" in str(err.value)


def test_bupt_paths_json_top_level_list(tmp_path):
    make_bupt(tmp_path)
    (tmp_path / "data_paths.json").write_text(json.dumps([1, 2]))
    with pytest.raises(DataFormatError, match="data_paths.json: expected pid -> modality"):
        read_bupt(tmp_path)


def test_check_data_reports_the_good_case(syn0):
    report = check_dataset("synthetic", syn0)
    assert report.keypoints == str(syn0 / "keypoints") and report.frames_checked > 0


def test_bupt_split_file_that_is_a_folder(tmp_path):
    make_bupt(tmp_path)
    (tmp_path / "query.txt").unlink()
    (tmp_path / "query.txt").mkdir()
    with pytest.raises(DataError, match=r"missing .*query\.txt"):
        read_bupt(tmp_path)


def test_unreadable_text_file_is_a_data_error(tmp_path):
    from star.data.source_files import read_lines

    with pytest.raises(DataFormatError, match=rf"{re.escape(str(tmp_path))}: cannot be read"):
        read_lines(tmp_path)  # a folder: IsADirectoryError inside


def test_writer_refuses_values_the_reader_would_reject(tmp_path):
    from star.data import write_keypoints

    kps = np.zeros((3, 17, 3), np.float32)
    kps[2, 4] = (70000.0, 0.5, 0.9)  # finite in float32, inf once stored as float16
    with pytest.raises(ValueError, match=r"row 2 \(frame 'c'\): keypoint 4 \(right_ear\) x = inf"):
        write_keypoints(tmp_path / "kp", "train", kps, ["a", "b", "c"], pose_model="x")
    assert not (tmp_path / "kp").exists()


def test_byte_order_mark_is_not_part_of_the_first_line(syn0):
    names = syn0 / "info" / "train_name.txt"
    names.write_bytes(b"\xef\xbb\xbf" + names.read_bytes())
    assert load_dataset("synthetic", syn0, verbose=False).train


def test_zero_byte_index_file(syn0):
    index = syn0 / "keypoints" / "test.index.txt"
    index.write_bytes(b"")
    with pytest.raises(
        KeypointStoreError, match=rf"{re.escape(str(index))}: lists 0 frames but .*test_name\.txt lists"
    ):
        _load(syn0)


def test_empty_list_file_and_missing_list_frame(tmp_path):
    from data_fixtures import make_list_dataset

    make_list_dataset(tmp_path)
    (tmp_path / "a" / "f2.jpg").unlink()
    with pytest.raises(MissingFramesError, match=r"train\.txt: 1 missing of the 9 frames listed:\n  line 3: "):
        load_dataset("list", tmp_path, verbose=False)
    (tmp_path / "query.txt").write_text("# nothing yet\n")
    with pytest.raises(EmptySplitError, match=r"query: .*query\.txt lists no tracklets"):
        load_dataset("list", tmp_path, verbose=False)


# ----------------------------------------------------------------------------- unreadable frame folder
def _assert_names_the_unreadable_folder(syn0, folder, capsys):
    with pytest.raises(
        UnreadableFolderError, match=f"cannot read the frame folder {re.escape(str(folder))}: permission denied"
    ):
        load_dataset("synthetic", syn0, verbose=False)
    rc, err = _check_data(syn0, capsys)
    assert rc == 1 and err.count("\n") == 1 and f"error: cannot read the frame folder {folder}" in err
    assert "info/train_name.txt line" in err


def test_unlistable_frame_folder_is_one_error_naming_it(syn0, capsys, monkeypatch):
    # os.listdir raising as it does without read permission (runs as root too, where chmod is ignored)
    import os

    folder = syn0 / "0001" / "rgb" / "D1"
    real = os.listdir

    def listdir(path="."):
        if str(path) == str(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "listdir", listdir)
    _assert_names_the_unreadable_folder(syn0, folder, capsys)


def test_frame_folder_without_read_permission(syn0, capsys):
    import os

    folder = syn0 / "0001" / "rgb" / "D1"
    folder.chmod(0o300)  # write and search, no read: cannot be listed
    try:
        if os.access(folder, os.R_OK):
            pytest.skip("permission bits are not enforced here (running as root)")
        _assert_names_the_unreadable_folder(syn0, folder, capsys)
    finally:
        folder.chmod(0o755)


def test_a_dataset_root_that_is_a_file_is_named_as_such(tmp_path, capsys):
    root = tmp_path / "data.tar"
    root.write_bytes(b"an archive, not unpacked")
    with pytest.raises(DataError, match=f"the dataset root {re.escape(str(root))} is a file, not a folder"):
        load_dataset("synthetic", root, verbose=False)
    rc, err = _check_data(root, capsys)
    assert rc == 1 and err.count("\n") == 1 and "is a file, not a folder" in err


def test_duplicated_hitsz_track_row_names_both_lines(syn0):
    info = syn0 / "info" / "track_train_info.txt"
    lines = info.read_text().splitlines()
    info.write_text("\n".join([*lines, lines[2]]) + "\n")
    with pytest.raises(
        DataFormatError,
        match=rf"track_train_info\.txt:{len(lines) + 1}: frames .* are already a "
        r"tracklet \(line 3\): duplicated row",
    ):
        load_dataset("synthetic", syn0, verbose=False)


def test_duplicated_bupt_split_row_names_both_lines(tmp_path):
    make_bupt(tmp_path)
    with open(tmp_path / "gallery.txt", "a") as f:
        f.write("5 RGB TSG1 3\n")
    with pytest.raises(DataFormatError, match=r"gallery\.txt:3: tracklet 5/RGB/TSG1/3 is already listed on line 1"):
        load_dataset("bupt", tmp_path, verbose=False)
