"""The synthetic VVI dataset: determinism, HITSZ-VCM layout, and an identity signal in the skeleton."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from star.data import (
    COCO_BONES,
    INFRARED,
    VISIBLE,
    SynthConfig,
    check_dataset,
    generate_synthetic,
    load_dataset,
    open_keypoint_store,
)

SMALL = SynthConfig(
    ids=6, test_ids=3, tracklets=2, min_frames=12, max_frames=14, short_fraction=0.3, height=32, width=16, seed=11
)


def _files(root: Path) -> dict[str, bytes]:
    # keypoints/meta.json records its creation time; every other byte is a function of the config.
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "meta.json"
    }


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a = _files(generate_synthetic(tmp_path / "a", SMALL))
    b = _files(generate_synthetic(tmp_path / "b", SMALL))
    assert a == b
    assert sum(k.endswith(".jpg") for k in a) > 100 and "keypoints/train.npy" in a
    c = _files(generate_synthetic(tmp_path / "c", SynthConfig(**{**SMALL.__dict__, "seed": 12})))
    assert c["keypoints/train.npy"] != a["keypoints/train.npy"]
    common = [k for k in a if k.endswith(".jpg") and k in c]
    assert sum(a[k] != c[k] for k in common) > 0.9 * len(common)


def test_layout_and_info_formats(tmp_path):
    root = generate_synthetic(tmp_path / "ds", SMALL)
    info = root / "info"
    names = (info / "train_name.txt").read_text().splitlines()
    assert all(re.fullmatch(r"\d{4}M[12]D\d+T\d+F\d+\.jpg", n) for n in names)
    for n in names[:30]:
        pid, mod, cam, frame = re.fullmatch(r"(\d{4})M([12])D(\d+)T\d+F(\d+)\.jpg", n).groups()
        assert (root / pid / ("ir" if mod == "1" else "rgb") / f"D{cam}" / f"{frame}.jpg").is_file()
    rows = [ln.split() for ln in (info / "track_test_info.txt").read_text().splitlines()]
    assert all(len(r) == 5 and all(x.isdigit() for x in r) for r in rows)
    query_lines = (info / "query_IDX.txt").read_text().splitlines()
    assert len(query_lines) == 1
    query = [int(x) for x in query_lines[0].split()]
    assert query == [i + 1 for i, r in enumerate(rows) if r[0] == "1"]  # the infrared test tracklets
    assert {int(r[4]) for r in rows} == {1, 2, 3}  # several cameras

    with pytest.raises(FileExistsError, match="--force"):
        generate_synthetic(root, SMALL)
    generate_synthetic(root, SMALL, force=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate_synthetic(tmp_path / "other", SMALL, force=True)  # never deletes a non-synthetic folder


def test_readable_by_hitsz_reader_and_check(tmp_path):
    root = generate_synthetic(tmp_path / "ds", SMALL)
    data = load_dataset("synthetic", root, verbose=False)
    all_rows = (root / "info/track_train_info.txt").read_text().splitlines()
    assert len(data.train) < len(all_rows)  # the short tracklets are dropped
    assert all(len(t) >= 12 for t in data.train + data.query + data.gallery)
    assert {t.modality for t in data.query} == {INFRARED} and {t.modality for t in data.gallery} == {VISIBLE}
    assert sorted({t.pid for t in data.train}) == list(range(3))
    report = check_dataset("synthetic", root)
    assert report.keypoints == str(root / "keypoints") and report.stats == data.stats()
    # Keypoints: normalized coordinates, conf in [0, 1], some drop-outs.
    kp = open_keypoint_store(data).array("train").astype(np.float32)
    assert kp.min() >= 0 and kp.max() <= 1
    assert 0.0 < np.mean(kp[..., 2] == 0) < 0.3
    # Infrared frames carry no colour.
    ir = cv2.imread(data.query[0].paths[0])
    assert np.array_equal(ir[..., 0], ir[..., 1]) and np.array_equal(ir[..., 1], ir[..., 2])


def _bone_features(store, tracklet) -> np.ndarray:
    """Mean and spread of each bone length over a tracklet (a crude skeleton descriptor)."""
    kp = store.gather(tracklet.store_split, np.asarray(tracklet.rows))
    xy = kp[..., :2] * np.array([0.5, 1.0])  # frames are twice as high as wide
    feats = []
    for i, j in COCO_BONES:
        ok = (kp[:, i, 2] > 0) & (kp[:, j, 2] > 0)
        lengths = np.linalg.norm(xy[ok, j] - xy[ok, i], axis=-1) if ok.any() else np.zeros(1)
        feats += [lengths.mean(), lengths.std()]
    f = np.asarray(feats)
    return f / np.linalg.norm(f)


@pytest.mark.slow  # 1.3 s
def test_identity_is_carried_across_modalities_by_the_skeleton(tmp_path):
    cfg = SynthConfig(ids=40, test_ids=30, tracklets=3, min_frames=12, max_frames=16, height=48, width=24, seed=3)
    data = load_dataset("synthetic", generate_synthetic(tmp_path / "ds", cfg), verbose=False)
    store = open_keypoint_store(data)
    q = np.stack([_bone_features(store, t) for t in data.query])
    g = np.stack([_bone_features(store, t) for t in data.gallery])
    qp, gp = np.array([t.pid for t in data.query]), np.array([t.pid for t in data.gallery])
    qc, gc = np.array([t.camid for t in data.query]), np.array([t.camid for t in data.gallery])
    dist = ((q[:, None] - g[None]) ** 2).sum(-1)
    hits = []
    for i in range(len(q)):
        keep = ~((gp == qp[i]) & (gc == qc[i]))  # the evaluation's same-pid-same-camera filter
        assert np.any(gp[keep] == qp[i])  # every query keeps a positive from another camera
        hits.append(gp[keep][np.argmin(dist[i][keep])] == qp[i])
    chance = 1 / len(set(gp.tolist()))
    # A hand-made bone-length descriptor already matches infrared to visible far above chance,
    # without being anywhere near solving the task.
    assert 4 * chance < np.mean(hits) < 0.9
