"""Keypoint store: round trip, memory mapping, alignment and missing-store errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from data_fixtures import make_hitsz
from star.data import (
    COCO17_KEYPOINTS,
    KeypointStore,
    KeypointStoreError,
    open_keypoint_store,
    read_hitsz_vcm,
    write_keypoints,
)


def _random_keypoints(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 17, 3)).astype(np.float32)


def _write_store(data, store_dir, **kw):
    arrays = {}
    for split, index in data.frame_index.items():
        arrays[split] = _random_keypoints(len(index), seed=len(split))
        write_keypoints(
            store_dir, split, arrays[split], index.keys, pose_model="test-pose", input_size=(256, 192), **kw
        )
    return arrays


def test_roundtrip_meta_and_mmap(tmp_path):
    make_hitsz(tmp_path, frames=False)
    data = read_hitsz_vcm(tmp_path)
    arrays = _write_store(data, tmp_path / "keypoints")

    meta = json.loads((tmp_path / "keypoints/meta.json").read_text())
    assert meta["pose_model"] == "test-pose" and meta["input_size"] == [256, 192]
    assert meta["keypoint_order"] == list(COCO17_KEYPOINTS)
    assert meta["package_version"] and meta["created_at"]
    assert meta["splits"]["train"]["num_frames"] == len(data.frame_index["train"])
    assert (tmp_path / "keypoints/train.index.txt").read_text().splitlines() == data.frame_index["train"].keys
    assert not list((tmp_path / "keypoints").glob("*.tmp"))  # atomic writes leave no temporaries

    store = open_keypoint_store(data)
    arr = store.array("train")
    assert isinstance(arr, np.memmap) and arr.dtype == np.float16
    t = data.train[1]
    got = store.gather("train", np.asarray(t.rows))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, arrays["train"][list(t.rows)], atol=1e-3)  # float16 storage

    # Pickling (DataLoader workers under spawn) does not copy the mapped arrays.
    clone = pickle.loads(pickle.dumps(store))
    assert clone._arrays == {}
    np.testing.assert_array_equal(clone.array("test"), store.array("test"))


def test_float32_and_no_index_file(tmp_path):
    make_hitsz(tmp_path, frames=False)
    data = read_hitsz_vcm(tmp_path)
    _write_store(data, tmp_path / "keypoints", dtype="float32", write_index=False)
    assert not (tmp_path / "keypoints/train.index.txt").exists()
    store = open_keypoint_store(data)  # aligned by length + sha256 of the dataset's own name file
    assert store.array("test").dtype == np.float32

    # Same length, different order: caught by the recorded digest.
    names = data.frame_index["test"].keys
    names[0], names[1] = names[1], names[0]
    with pytest.raises(KeypointStoreError, match="frame order differs"):
        store.verify(data.frame_index)


def test_misaligned_store_names_the_file(tmp_path):
    make_hitsz(tmp_path, frames=False)
    data = read_hitsz_vcm(tmp_path)
    store_dir = tmp_path / "keypoints"
    _write_store(data, store_dir)

    # Wrong length
    short = data.frame_index["train"].keys[:-1]
    write_keypoints(store_dir, "train", _random_keypoints(len(short)), short, pose_model="x")
    with pytest.raises(KeypointStoreError, match=r"train\.npy: has \d+ frames but .*train_name\.txt lists"):
        open_keypoint_store(data)

    # Right length, one key differs: the index line is named.
    keys = list(data.frame_index["train"].keys)
    keys[6] = "0001M1D1T1F999.jpg"
    write_keypoints(store_dir, "train", _random_keypoints(len(keys)), keys, pose_model="x")
    with pytest.raises(KeypointStoreError, match=r"train\.index\.txt:7: '0001M1D1T1F999\.jpg'"):
        open_keypoint_store(data)

    # Wrong shape
    np.save(store_dir / "train.npy", np.zeros((len(keys), 18, 3), np.float16))
    with pytest.raises(KeypointStoreError, match=r"train\.npy: expected float16/float32 \[num_frames, 17, 3\]"):
        KeypointStore(store_dir).array("train")


def test_missing_store_and_split(tmp_path):
    make_hitsz(tmp_path, frames=False)
    data = read_hitsz_vcm(tmp_path)
    with pytest.raises(KeypointStoreError, match=r"missing .*keypoints/meta\.json"):
        open_keypoint_store(data)

    write_keypoints(
        tmp_path / "keypoints",
        "train",
        _random_keypoints(len(data.frame_index["train"])),
        data.frame_index["train"].keys,
        pose_model="x",
    )
    with pytest.raises(KeypointStoreError, match="no split 'test'"):
        open_keypoint_store(data)

    _write_store(data, tmp_path / "keypoints")
    (tmp_path / "keypoints/test.npy").unlink()
    with pytest.raises(KeypointStoreError, match=r"missing .*test\.npy"):
        open_keypoint_store(data)


def test_writer_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="one row per index key"):
        write_keypoints(tmp_path, "train", np.zeros((3, 17, 3)), ["a", "b"], pose_model="x")
