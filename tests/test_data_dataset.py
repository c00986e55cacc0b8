"""TrackletDataset items, keypoint lookup, corrupt-frame substitution, and the loaders."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch

from data_fixtures import make_hitsz
from star.data import (
    INFRARED,
    VISIBLE,
    SynthConfig,
    TrackletDataset,
    eval_loader,
    generate_synthetic,
    load_dataset,
    open_keypoint_store,
    read_hitsz_vcm,
    sample_frame_indices,
    train_loader,
)

TINY = SynthConfig(
    ids=12, test_ids=4, tracklets=2, min_frames=12, max_frames=16, short_fraction=0.0, height=32, width=16, seed=5
)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = generate_synthetic(tmp_path_factory.mktemp("synth") / "ds", TINY)
    data = load_dataset("synthetic", root, verbose=False)
    return data, open_keypoint_store(data)


def test_item_contents(synth):
    data, store = synth
    ds = TrackletDataset(data.query, train=False, num_frames=6, keypoints=store)
    item = ds[1]
    t = data.query[1]
    assert item["frames"].shape == (6, 3, 288, 144) and item["frames"].dtype == torch.uint8
    assert item["keypoints"].shape == (6, 17, 3) and item["keypoints"].dtype == torch.float32
    assert (item["pid"], item["camid"], item["modality"], item["index"]) == (t.pid, t.camid, INFRARED, 1)
    # Test mode: the keypoints are the store rows of the first frame of each chunk, unchanged by the resize.
    rows = np.asarray(t.rows)[sample_frame_indices(len(t), 6, train=False)]
    expected = store.array("test")[rows].astype(np.float32)
    np.testing.assert_array_equal(item["keypoints"].numpy(), expected)
    # Deterministic in test mode.
    assert torch.equal(ds[1]["frames"], item["frames"])


def test_training_items_vary_and_stay_consistent(synth):
    data, store = synth
    ds = TrackletDataset(data.train, train=True, num_frames=4, keypoints=store)
    torch.manual_seed(0)
    a = ds[0]
    torch.manual_seed(0)
    assert torch.equal(ds[0]["frames"], a["frames"])  # reproducible from torch's seed
    items = [ds[0] for _ in range(6)]
    assert any(not torch.equal(i["frames"], a["frames"]) for i in items)
    for item in items:
        kp = item["keypoints"]
        shown = kp[..., 2] > 0
        assert torch.all((kp[..., :2][shown] >= 0) & (kp[..., :2][shown] <= 1))


def test_without_keypoint_store_keypoints_are_zero(synth):
    data, _ = synth
    item = TrackletDataset(data.gallery, train=False, num_frames=3)[0]
    assert item["modality"] == VISIBLE
    assert torch.count_nonzero(item["keypoints"]) == 0


def test_corrupt_frame_is_replaced_with_a_warning(tmp_path, caplog):
    make_hitsz(tmp_path)
    data = read_hitsz_vcm(tmp_path)
    t = data.train[0]
    for k, path in enumerate(t.paths):  # distinct grey levels to tell frames apart
        cv2.imwrite(path, np.full((16, 8, 3), 10 * k, np.uint8))
    with open(t.paths[3], "wb") as f:
        f.write(b"\xff\xd8 not a jpeg")
    ds = TrackletDataset([t], train=False, num_frames=12)
    with caplog.at_level(logging.WARNING, logger="star.data"):
        item = ds[0]
    assert any("unreadable frame" in r.message and t.paths[3] in r.message for r in caplog.records)
    levels = item["frames"][:, 0, 0, 0].tolist()
    assert levels[3] == 20  # the nearest decodable frame (the earlier one on a tie), not a crash
    assert levels[2] == 20 and levels[4] == 40

    for path in t.paths:  # nothing decodable: black frames, no crash
        with open(path, "wb") as f:
            f.write(b"junk")
    item = ds[0]
    assert item["frames"].shape == (12, 3, 288, 144) and int(item["frames"].max()) == 0


def test_loaders(synth):
    data, store = synth
    loader = train_loader(
        data.train,
        store,
        num_frames=4,
        num_ids=4,
        num_per_modality=2,
        num_workers=2,
        seed=1,
        height=64,
        width=32,
        pin_memory=False,
    )
    loader.batch_sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == len(loader.batch_sampler) >= 1
    b = batches[0]
    assert b["frames"].shape == (16, 4, 3, 64, 32) and b["keypoints"].shape == (16, 4, 17, 3)
    assert b["modality"].tolist() == [0, 0, 1, 1] * 4
    assert len(set(b["pid"].tolist())) == 4

    ev = eval_loader(data.gallery, store, num_frames=4, batch_size=5, num_workers=0, height=64, width=32)
    got = torch.cat([b["index"] for b in ev])
    assert got.tolist() == list(range(len(data.gallery)))


def test_dataset_turns_off_opencv_threads(synth):
    # OpenCV's thread pool is not fork-safe (opencv#5150): forked DataLoader workers can
    # deadlock at random, so the dataset switches OpenCV to one thread before any fork.
    cv2.setNumThreads(4)
    TrackletDataset(synth[0].train, train=True)
    assert cv2.getNumThreads() == 1
