"""star.engine evaluation and star.reports: feature extraction, protocols, metrics.json, .npz files,
rank-list pictures."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from star.config import RunConfig
from star.data import (
    INFRARED,
    VISIBLE,
    SynthConfig,
    eval_loader,
    generate_synthetic,
    load_dataset,
    normalize_frames,
    open_keypoint_store,
)
from star.engine import EvalResult, evaluate, evaluate_features, extract_features
from star.errors import StarError
from star.metrics import MetricsInputError, evaluate_hitsz_vcm, official_dropped_keep, resolve_protocol
from star.metrics import protocols as protocols_module
from star.models import build_model
from star.output_paths import OutputPathError
from star.reports import FeatureFileError, Features, load_npz, save_npz, write_metrics, write_rank_lists
from star.reports.rank_lists import (
    BORDER,
    LABEL_WIDTH,
    MATCH_COLOR,
    MISMATCH_COLOR,
    QUERY_COLOR,
    QUERY_GAP,
    ROW_GAP,
    rank_list_size,
    similarity_labels,
)
from tiny_run import EVAL_SYNTH

T, H, W = 4, 32, 16  # frames per tracklet, frame size: tiny


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ds"
    generate_synthetic(root, SynthConfig(**EVAL_SYNTH))
    return load_dataset("synthetic", root, verbose=False)


@pytest.fixture(scope="module")
def store(data):
    return open_keypoint_store(data)


def make_cfg(data, **eval_options) -> RunConfig:
    return RunConfig.from_dict(
        {
            "data": {
                "dataset": "synthetic",
                "root": data.root,
                "height": H,
                "width": W,
                "num_workers": 0,
                "eval_batch_size": 3,
            },
            "model": {"seq_len": T, "backbone": {"name": "resnet18", "pretrained": None}},
            "eval": eval_options,
        }
    )


@pytest.fixture(scope="module")
def model(data):
    torch.manual_seed(0)
    return build_model(make_cfg(data).model, data.num_train_pids)


class OracleModel(nn.Module):
    """Knows the identity of every test tracklet from its (normalised) input frames: one-hot pid embeddings."""

    def __init__(self, table: dict[bytes, int], dim: int):
        super().__init__()
        self.table, self.dim = table, dim
        self.scale = nn.Parameter(torch.ones(()))

    @staticmethod
    def key(frames: torch.Tensor) -> bytes:
        return hashlib.sha1(frames.detach().cpu().contiguous().numpy().tobytes()).digest()

    def forward(self, frames, keypoints, modality):
        assert not self.training and frames.is_floating_point()
        assert keypoints.shape == (*frames.shape[:2], 17, 3) and modality.shape == frames.shape[:1]
        out = torch.zeros(len(frames), self.dim)
        for i in range(len(frames)):
            out[i, self.table[self.key(frames[i])]] = self.scale
        return out


@pytest.fixture(scope="module")
def oracle(data, store):
    tracklets = data.query + data.gallery
    pids = sorted({t.pid for t in tracklets})
    table = {}
    for batch in eval_loader(tracklets, store, num_frames=T, batch_size=8, height=H, width=W, num_workers=0):
        frames = normalize_frames(batch["frames"])
        for i, index in enumerate(batch["index"].tolist()):
            table[OracleModel.key(frames[i])] = pids.index(tracklets[index].pid)
    return OracleModel(table, len(pids))


@pytest.fixture(scope="module")
def oracle_features(data, store, oracle):
    kw = dict(num_frames=T, height=H, width=W, batch_size=5)
    return extract_features(oracle, data.query, store, **kw), extract_features(oracle, data.gallery, store, **kw)


def bupt_like(data):
    """The synthetic test split re-cut like BUPTCampus: query and gallery both mix IR and RGB."""
    return dataclasses.replace(
        data,
        name="bupt",
        query=data.query[::2] + data.gallery[::2],
        gallery=data.query[1::2] + data.gallery[1::2],
    )


# --------------------------------------------------------------------------- features


def test_extract_features_order_metadata_determinism_and_mode(data, store, model):
    model.train()
    f = extract_features(model, data.query, store, num_frames=T, height=H, width=W, batch_size=3)
    assert model.training  # restored
    assert isinstance(f, Features) and len(f) == len(data.query)
    assert f.feats.shape == (len(data.query), 512) and f.feats.dtype == torch.float32 and f.feats.device.type == "cpu"
    assert not f.feats.requires_grad
    torch.testing.assert_close(f.feats.norm(dim=1), torch.ones(len(f)))
    assert f.pids.tolist() == [t.pid for t in data.query]
    assert f.camids.tolist() == [t.camid for t in data.query]
    assert f.modalities.tolist() == [t.modality for t in data.query] == [INFRARED] * len(data.query)
    assert f.paths == [t.paths[0] for t in data.query]

    model.eval()
    again = extract_features(model, data.query, store, num_frames=T, height=H, width=W, batch_size=3)
    assert not model.training
    assert torch.equal(f.feats, again.feats)  # deterministic
    one_batch = extract_features(model, data.query, store, num_frames=T, height=H, width=W, batch_size=8)
    torch.testing.assert_close(one_batch.feats, f.feats, atol=1e-5, rtol=1e-4)  # batching does not matter

    g = extract_features(model, data.gallery, store, num_frames=T, height=H, width=W)
    assert g.modalities.tolist() == [VISIBLE] * len(data.gallery)  # through the visible stem


def test_extract_features_empty_and_bad_model(data, store):
    empty = extract_features(nn.Identity(), [], store, num_frames=T, height=H, width=W)
    assert len(empty) == 0

    class Bad(nn.Module):
        def forward(self, frames, keypoints, modality):
            return frames

    with pytest.raises(RuntimeError, match=r"\[B, C\]"):
        extract_features(Bad(), data.query, store, num_frames=T, height=H, width=W)


def test_npz_round_trip(tmp_path, oracle_features):
    q, g = oracle_features
    path = save_npz({"query": q, "gallery": g}, tmp_path / "feats.npz", meta={"dataset": "synthetic"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npz"]  # no temporary left over
    sets, meta = load_npz(path, with_meta=True)
    assert list(sets) == ["query", "gallery"] and meta["dataset"] == "synthetic" and "package_version" in meta
    for name, f in (("query", q), ("gallery", g)):
        back = sets[name]
        assert torch.equal(back.feats, f.feats) and back.feats.dtype == torch.float32
        for field in ("pids", "camids", "modalities"):
            np.testing.assert_array_equal(getattr(back, field), getattr(f, field))
        assert back.paths == f.paths
    single = load_npz(save_npz(q, tmp_path / "one.npz"))
    assert list(single) == ["features"] and torch.equal(single["features"].feats, q.feats)


# --------------------------------------------------------------------------- protocols


def test_protocol_auto_selection():
    assert resolve_protocol("auto", "bupt") == "bupt"
    for name in ("hitsz-vcm", "synthetic", "list"):
        assert resolve_protocol("auto", name) == "hitsz-vcm"
    assert resolve_protocol("bupt", "synthetic") == "bupt"
    assert resolve_protocol("bupt-official-dropped", "bupt") == "bupt-official-dropped"
    with pytest.raises(ValueError, match="protocol"):
        resolve_protocol("market", "bupt")


def test_evaluate_writes_metrics_matching_results(tmp_path, data, store, model):
    cfg = make_cfg(data, visrank_queries=2, visrank_topk=2)
    model.train()
    result = evaluate(model, data, store, cfg, output_dir=tmp_path, visrank=True)
    assert model.training
    assert isinstance(result, EvalResult) and result.protocol == "hitsz-vcm" and result.dataset == "synthetic"
    assert set(result.results) == {"IR->RGB", "RGB->IR"}
    assert "IR->RGB" in result.table and "RGB->IR" in result.table and "hitsz-vcm" in result.table
    # The same numbers as the metrics API on the returned features.
    direct = evaluate_hitsz_vcm(
        result.query.feats,
        result.query.pids,
        result.query.camids,
        result.gallery.feats,
        result.gallery.pids,
        result.gallery.camids,
    )
    for mode, r in direct.items():
        assert result.results[mode] == r

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["protocol"] == "hitsz-vcm" and saved["dataset"] == "synthetic"
    assert saved["num_query"] == len(data.query) and saved["num_gallery"] == len(data.gallery)
    assert saved["counts"]["query"] == {"tracklets": len(data.query), "ir": len(data.query), "rgb": 0}
    assert set(saved["modes"]) == set(result.results)
    for mode, r in result.results.items():
        m = saved["modes"][mode]
        assert m["R1"] == pytest.approx(r.rank(1)) and m["R5"] == pytest.approx(r.rank(5))
        assert m["mAP"] == pytest.approx(r.mAP) and m["mINP"] == pytest.approx(r.mINP)
        assert m["num_valid"] == r.num_valid and m["cmc"] == pytest.approx(r.cmc.tolist())
    # R10/R20 of an 8-item gallery: known (1.0) once the curve reached 1, else null.
    for mode, r in result.results.items():
        assert saved["modes"][mode]["R20"] == (1.0 if r.cmc[-1] == 1.0 else None)

    pictures = sorted((tmp_path / "visrank").iterdir())
    assert len(pictures) == 2 and all(p.suffix == ".png" for p in pictures)

    again = write_metrics(result, tmp_path / "copy")
    assert again == tmp_path / "copy"  # a file path is used as given
    assert json.loads(again.read_text()) == saved


def test_oracle_model_is_perfect_on_hitsz_vcm(data, store, oracle):
    result = evaluate(oracle, data, store, make_cfg(data))
    for mode, r in result.results.items():
        assert (r.rank(1), r.mAP, r.mINP, r.num_valid) == (1.0, 1.0, 1.0, len(data.query)), mode


def test_oracle_model_is_perfect_on_bupt_protocol(data, store, oracle):
    bupt = bupt_like(data)
    result = evaluate(oracle, bupt, store, make_cfg(data, same_modality=True))
    assert result.protocol == "bupt"
    assert set(result.results) == {"IR->RGB", "RGB->IR", "RGB->RGB", "IR->IR"}
    for mode, r in result.results.items():
        assert (r.rank(1), r.mAP, r.mINP) == (1.0, 1.0, 1.0), mode
    assert result.results["IR->RGB"].num_valid == sum(t.modality == INFRARED for t in bupt.query)
    # Explicit hitsz-vcm protocol on the same data runs the camera-filtered protocol instead.
    assert evaluate(oracle, bupt, store, make_cfg(data, protocol="hitsz-vcm")).protocol == "hitsz-vcm"


def test_official_dropped_keep():
    mods = np.array([VISIBLE, INFRARED, VISIBLE, VISIBLE, INFRARED, VISIBLE, VISIBLE])
    assert official_dropped_keep(mods, 4).tolist() == [True, True, True, True, True, True, False]
    assert official_dropped_keep(mods, 5).all()  # 5 RGB % 5 == 0: nothing dropped
    assert official_dropped_keep(mods, 2).tolist() == [True, True, True, True, True, True, False]
    many = np.array([VISIBLE] * 70 + [INFRARED] * 3)
    keep = official_dropped_keep(many)  # batch 64
    assert keep.sum() == 67 and not keep[64:70].any() and keep[70:].all()


def test_bupt_official_dropped_protocol_is_labelled(monkeypatch, data, oracle_features):
    q, g = oracle_features
    cut = bupt_like(data)
    n = len(data.query) // 2
    query = Features(
        torch.cat([q.feats[::2], g.feats[::2]]),
        np.r_[q.pids[::2], g.pids[::2]],
        np.r_[q.camids[::2], g.camids[::2]],
        np.r_[q.modalities[::2], g.modalities[::2]],
        [t.paths[0] for t in cut.query],
    )
    gallery = Features(
        torch.cat([q.feats[1::2], g.feats[1::2]]),
        np.r_[q.pids[1::2], g.pids[1::2]],
        np.r_[q.camids[1::2], g.camids[1::2]],
        np.r_[q.modalities[1::2], g.modalities[1::2]],
        [t.paths[0] for t in cut.gallery],
    )
    full = evaluate_features(query, gallery, protocol="auto", dataset="bupt")
    assert full.protocol == "bupt" and "dropped" not in full.info and "NOTE" not in full.table
    monkeypatch.setattr(protocols_module, "OFFICIAL_TEST_BATCH", 3)  # n = 4 RGB per split: drop 1
    dropped = evaluate_features(query, gallery, protocol="bupt-official-dropped", dataset="bupt")
    assert dropped.protocol == "bupt-official-dropped"
    assert dropped.info["dropped"]["query"] == n % 3 and dropped.info["dropped"]["gallery"] == n % 3
    assert "bupt-official-dropped" in dropped.table and "NOTE" in dropped.table
    assert dropped.results["RGB->IR"].num_valid == n - n % 3  # RGB queries dropped
    assert dropped.query is query and len(dropped.query) == 2 * n  # the features stay whole
    assert dropped.to_dict()["dropped"]["gallery"] == n % 3


# --------------------------------------------------------------------------- rank lists


def _row_border_colors(img: np.ndarray, num_rows: int) -> list[tuple[int, ...]]:
    """Colour of the top border of each strip (middle column), RGB."""
    strip_h = H + 2 * BORDER
    colors, y = [], 0
    for i in range(num_rows):
        x = LABEL_WIDTH + (img.shape[1] - LABEL_WIDTH) // 2
        colors.append(tuple(int(v) for v in img[y + 1, x]))
        y += strip_h + (QUERY_GAP if i == 0 else ROW_GAP)
    return colors


def test_rank_lists_of_the_oracle(tmp_path, data, store, oracle_features):
    q, g = oracle_features
    topk, frames = 3, 3
    paths = write_rank_lists(
        data,
        store,
        q,
        g,
        tmp_path,
        topk=topk,
        num_queries=4,
        num_frames=frames,
        height=H,
        width=W,
        modes=("IR->RGB", "RGB->IR"),
    )
    assert len(paths) == 8 and len(set(paths)) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        assert bgr is not None
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        assert img.shape[:2] == rank_list_size(1 + topk, frames, H, W)
        colors = _row_border_colors(img, 1 + topk)
        assert colors[0] == QUERY_COLOR
        assert colors[1] == MATCH_COLOR  # the oracle is right at rank 1 ...
        gallery_colors = colors[1:]
        assert set(gallery_colors) <= {MATCH_COLOR, MISMATCH_COLOR}
        n_match = gallery_colors.count(MATCH_COLOR)
        # ... and every positive comes before every negative.
        assert gallery_colors == [MATCH_COLOR] * n_match + [MISMATCH_COLOR] * (topk - n_match)
    assert {p.name.split("_")[0] for p in paths} == {"ir2rgb", "rgb2ir"}


def test_rank_lists_without_keypoints_and_misaligned_features(tmp_path, data, oracle_features):
    q, g = oracle_features
    paths = write_rank_lists(
        data, None, q, g, tmp_path, topk=20, num_queries=1, num_frames=2, height=H, width=W, image_format="jpg"
    )
    assert len(paths) == 1 and paths[0].suffix == ".jpg"
    img = cv2.imread(str(paths[0]))
    # topk past the gallery: every allowed gallery item (8 minus the same-camera same-pid ones) is drawn.
    rows = (
        1 + len(data.gallery) - sum(t.pid == data.query[0].pid and t.camid == data.query[0].camid for t in data.gallery)
    )
    assert img.shape[:2] == rank_list_size(rows, 2, H, W)
    with pytest.raises(ValueError, match="rows"):
        write_rank_lists(data, None, q.subset(np.arange(3)), g, tmp_path)
    with pytest.raises(ValueError, match="do not belong"):
        write_rank_lists(data, None, g, q, tmp_path)


# --------------------------------------------------------------------------- protocols in one place


def test_mode_sets_of_each_protocol():
    from star.metrics import mode_sets

    q_mods = np.array([INFRARED, VISIBLE, VISIBLE, INFRARED])
    g_mods = np.array([VISIBLE, INFRARED, VISIBLE])
    hitsz = mode_sets("hitsz-vcm", q_mods, g_mods)
    assert list(hitsz) == ["IR->RGB", "RGB->IR"] and all(m.camera_filter for m in hitsz.values())
    assert (hitsz["RGB->IR"].query_side, hitsz["RGB->IR"].gallery_side) == ("gallery", "query")
    assert hitsz["RGB->IR"].query_rows.tolist() == [0, 1, 2]
    bupt = mode_sets("bupt", q_mods, g_mods, same_modality=True)
    assert list(bupt) == ["IR->RGB", "RGB->IR", "RGB->RGB", "IR->IR"] and not bupt["IR->RGB"].camera_filter
    assert bupt["IR->RGB"].query_rows.tolist() == [0, 3] and bupt["IR->RGB"].gallery_rows.tolist() == [0, 2]
    assert bupt["RGB->IR"].query_rows.tolist() == [1, 2] and bupt["RGB->IR"].gallery_rows.tolist() == [1]
    dropped = mode_sets("bupt-official-dropped", q_mods, g_mods)
    keep = official_dropped_keep(q_mods)
    assert dropped["RGB->IR"].query_rows.tolist() == [i for i in (1, 2) if keep[i]]
    with pytest.raises(StarError, match="hitsz-vcm has modes"):
        mode_sets("hitsz-vcm", q_mods, g_mods, modes=("IR->IR",))


# --------------------------------------------------------------------------- feature files


def _features_file(tmp_path, oracle_features, name="f.npz", drop=None, **replace):
    q, g = oracle_features
    path = save_npz({"query": q, "gallery": g}, tmp_path / "ok.npz")
    arrays = dict(np.load(path))
    for key in [drop] if drop else []:
        del arrays[key]
    arrays.update(replace)
    out = tmp_path / name
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize("key", ["query_feats", "gallery_pids", "splits", "query_paths"])
def test_load_npz_names_a_missing_key(tmp_path, oracle_features, key):
    path = _features_file(tmp_path, oracle_features, drop=key)
    with pytest.raises(FeatureFileError, match=f"{re.escape(str(path))}: key '{key}' is missing"):
        load_npz(path)


def test_load_npz_truncated_garbage_and_inconsistent_files(tmp_path, oracle_features):
    good = save_npz(dict(zip(("query", "gallery"), oracle_features, strict=False)), tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    array = tmp_path / "array.npy"
    np.save(array, np.zeros(3))
    cases = {
        truncated: "truncated",
        garbage: "not a features .npz",
        array: "single .npy array",
        tmp_path / "none.npz": "not found",
        tmp_path: "is a folder",
    }
    for path, what in cases.items():
        with pytest.raises(FeatureFileError, match=what) as info:
            load_npz(path)
        assert str(path) in str(info.value)
    q, _ = oracle_features
    three_d = _features_file(tmp_path, oracle_features, "3d.npz", query_feats=np.zeros((len(q), 2, 3), np.float32))
    with pytest.raises(FeatureFileError, match="query_feats must be a 2-D"):
        load_npz(three_d)
    short = _features_file(tmp_path, oracle_features, "short.npz", gallery_camids=np.zeros(1, np.int64))
    with pytest.raises(FeatureFileError, match="gallery_camids has shape"):
        load_npz(short)


# --------------------------------------------------------------------------- visrank checks as eval


@pytest.mark.parametrize("defect", ["dims", "nan"])
def test_rank_lists_check_features_like_eval(tmp_path, data, oracle_features, defect):
    q, g = oracle_features
    if defect == "dims":
        bad = dataclasses.replace(g, feats=g.feats[:, :-1])
        match = "different feature sizes"
    else:
        feats = g.feats.clone()
        feats[2, 0] = float("nan")
        bad = dataclasses.replace(g, feats=feats)
        match = "non-finite values .* first row 2"
    with pytest.raises(MetricsInputError, match=match):
        evaluate_features(q, bad)
    with pytest.raises(MetricsInputError, match=match):
        write_rank_lists(data, None, q, bad, tmp_path / "V", num_queries=1)
    assert not (tmp_path / "V").exists()


def test_rank_lists_reject_3d_features(tmp_path, data, oracle_features):
    q, g = oracle_features
    bad = dataclasses.replace(q, feats=q.feats[:, None, :])
    with pytest.raises(MetricsInputError, match="query features must be 2-D"):
        write_rank_lists(data, None, bad, g, tmp_path / "V", num_queries=1)


# --------------------------------------------------------------------------- output paths


def test_output_paths_that_are_folders_or_under_files(tmp_path, data, oracle_features):
    q, g = oracle_features
    folder = tmp_path / "existing"
    folder.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OutputPathError, match=f"{re.escape(str(folder))} is an existing folder"):
        save_npz(q, folder)
    with pytest.raises(OutputPathError, match=f"{re.escape(str(afile))} is a file, not a folder"):
        save_npz(q, afile / "x.npz")
    with pytest.raises(OutputPathError, match=f"{re.escape(str(afile))} exists and is a file"):
        write_rank_lists(data, None, q, g, afile, num_queries=1)
    with pytest.raises(OutputPathError, match=re.escape(str(afile))):
        write_rank_lists(data, None, q, g, afile / "V", num_queries=1)
    assert afile.read_text() == "x" and list(folder.iterdir()) == []


# --------------------------------------------------------------------------- similarity labels


def test_similarity_labels_tell_near_identical_ranks_apart():
    labels = similarity_labels([0.99991, 0.99987, 0.99987, 0.99912])
    assert labels == ["sim 0.99991", "sim 0.99987", "sim 0.99987", "sim 0.99912"]
    assert similarity_labels([0.9, 0.5, 0.1]) == ["sim 0.900", "sim 0.500", "sim 0.100"]  # 3 decimals suffice
    assert similarity_labels([1.0 - 1e-9, 1.0 - 2e-9]) == ["sim 1.000000", "sim 1.000000"]  # at most 6 decimals


# --------------------------------------------------------------------------- checkpoints read for evaluation


_MODEL = {"num_classes": 4, "seq_len": T, "backbone": {"name": "resnet18", "pretrained": None}}


@pytest.mark.parametrize(
    "state, match",
    [
        (
            {"model": {}, "config": {"model": {**_MODEL, "backbone": {"name": "vgg", "pretrained": None}}}},
            "recorded model configuration is invalid: backbone.name",
        ),
        (
            {"model": {}, "config": {"model": {**_MODEL, "num_classes": "many"}}},
            "recorded model configuration is invalid",
        ),
        ({"model": {}, "config": {"model": {**_MODEL, "zzz": 1}}}, "recorded model configuration is invalid: .*zzz"),
        ({"model": [1, 2], "config": {"model": _MODEL}}, "weights do not fit"),
    ],
    ids=["backbone", "num_classes", "unknown-key", "weights-not-a-dict"],
)
def test_damaged_checkpoint_configs_are_checkpoint_errors(tmp_path, state, match):
    from star.engine.checkpoint import CheckpointError
    from star.engine.inference import load_trained_model

    path = tmp_path / "best.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=match) as info:
        load_trained_model(path, "cpu")
    assert str(path) in str(info.value)


def test_run_config_of_a_checkpoint_whose_model_section_is_not_a_mapping(tmp_path):
    from star.engine.checkpoint import CheckpointError
    from star.engine.inference import run_config_from_checkpoint

    path = tmp_path / "best.pt"
    torch.save({"version": 2, "num_classes": 3, "model": {}, "config": {"model": [1, 2]}}, path)
    with pytest.raises(CheckpointError, match="not a mapping"):
        run_config_from_checkpoint(path)
