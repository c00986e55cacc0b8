"""star.explain and `star explain`: attention weights, saliency, absent modules, outputs, errors.

One tiny run (32x16 frames, 4-frame tracklets, resnet18 without pretrained weights, one
epoch of 2 iterations on the CPU, one torch thread) is trained once for the module, as in
tests/test_engine_train.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import pytest
import torch
import torch.nn.functional as F

from star.cli import main
from star.config import RunConfig
from star.data import SynthConfig, generate_synthetic, load_dataset, open_keypoint_store
from star.data.loaders import eval_loader
from star.data.transforms import normalize_frames
from star.engine import train
from star.engine.inference import load_trained_model
from star.explain import EXPLAIN_FILE, explain_checkpoint, explain_model
from star.explain.figures import FIGURE_FILES
from star.explain.probes import attention_received, keypoint_jacobian_squares, layer_attention
from star.models import STAR
from star.models.ops import FUSED
from tiny_run import SYNTH as TINY_SYNTH
from tiny_run import config

SYNTH = {**TINY_SYNTH, "ids": 8}
T = 4  # tiny_run.config's model.seq_len


def run_config(root: Path, out: Path, **model) -> RunConfig:
    """tiny_run's run config on 8 identities: one epoch without warm-up on the CPU, evaluation
    batches of 4 tracklets; ``model`` merged into the model settings."""
    return RunConfig.from_dict(
        config(
            root,
            out,
            data={"eval_batch_size": 4, "synthetic": SYNTH},
            model=model,
            optim={"epochs": 1, "warmup_epochs": 0},
            train={"device": "cpu"},
        )
    )


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("explain")
    root = base / "synthetic"
    generate_synthetic(root, SynthConfig(**SYNTH))
    cfg = run_config(root, base / "run")
    train(cfg)
    return {"cfg": cfg, "best": base / "run" / "best.pt", "root": root}


@pytest.fixture(scope="module")
def batch(trained):
    data = load_dataset("synthetic", trained["root"], verbose=False)
    loader = eval_loader(
        data.query[:3], open_keypoint_store(data), num_frames=T, batch_size=3, height=32, width=16, num_workers=0
    )
    b = next(iter(loader))
    return normalize_frames(b["frames"]), b["keypoints"], b["modality"]


def captured_gat_inputs(model: STAR, batch) -> dict[str, torch.Tensor]:
    seen = {}
    graph = model.sequence_guidance.graph
    hooks = [
        layer.register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, args[0]))
        for name, layer in (("gat1", graph.gat1), ("gat2", graph.gat2))
    ]
    with torch.no_grad():
        model(*batch)
    for h in hooks:
        h.remove()
    return seen


def test_attention_weights_sum_to_one_match_a_naive_softmax_and_reproduce_the_layer(trained, batch):
    model = load_trained_model(trained["best"], "cpu").model
    graph = model.sequence_guidance.graph
    rowptr, col = graph.rowptr, graph.col
    for name, x in captured_gat_inputs(model, batch).items():
        layer = getattr(graph, name)
        with torch.no_grad():
            alpha, recomputed = layer_attention(layer, x, rowptr, col)
            real = layer(x, rowptr, col)  # the fused op
        assert layer.ops is FUSED  # the model's own forward ran the fused op
        torch.testing.assert_close(recomputed, real, rtol=1e-5, atol=1e-5)
        dst = torch.repeat_interleave(torch.arange(len(rowptr) - 1), rowptr[1:] - rowptr[:-1])
        sums = torch.zeros(x.shape[0], len(rowptr) - 1, layer.heads).index_add(1, dst, alpha)
        torch.testing.assert_close(sums, torch.ones_like(sums))
        # an independent oracle: the softmax of each destination's edges, one destination at a time
        h, a_src, a_dst = layer.project(x)
        for i in (0, 5, 17 * T - 1):
            edges = slice(int(rowptr[i]), int(rowptr[i + 1]))
            logits = F.leaky_relu(a_dst[:, i, None] + a_src[:, col[edges]], layer.negative_slope)
            torch.testing.assert_close(alpha[:, edges], logits.softmax(dim=1))
        received = attention_received(alpha, col, x.shape[1])
        torch.testing.assert_close(received.mean(dim=1), torch.ones(x.shape[0], dtype=received.dtype))


def test_saliency_equals_finite_differences(trained, batch):
    model = load_trained_model(trained["best"], "cpu").model.double()
    frames, keypoints, modality = (v.double() if v.is_floating_point() else v for v in batch)
    seen = {}
    hook = model.backbone.layer4.register_forward_hook(lambda m, a, out: seen.__setitem__("maps", out))
    with torch.no_grad():
        model(frames, keypoints, modality)
    hook.remove()
    maps, kp, aspect = seen["maps"][:T], keypoints[0], 16 / 32
    squares = keypoint_jacobian_squares(model, maps, kp, aspect)
    assert squares.shape == (T, 17, 3) and bool((squares > 0).any())
    step = 1e-6
    for t, j, k in ((0, 5, 0), (1, 11, 1), (3, 0, 2), (2, 14, 0)):
        plus, minus = kp.clone(), kp.clone()
        plus[t, j, k] += step
        minus[t, j, k] -= step
        with torch.no_grad():
            column = model.embed_from_maps(maps, plus[None], aspect) - model.embed_from_maps(maps, minus[None], aspect)
        expected = float((column / (2 * step)).pow(2).sum())
        assert float(squares[t, j, k]) == pytest.approx(expected, rel=1e-4, abs=1e-12)


def test_explanation_is_deterministic_and_complete(trained):
    first = explain_checkpoint(trained["cfg"], trained["best"], max_tracklets=3, saliency_tracklets=1).to_dict()
    second = explain_checkpoint(trained["cfg"], trained["best"], max_tracklets=3, saliency_tracklets=1).to_dict()
    assert first == second
    assert first["dataset"] == "synthetic" and first["split"] == "test" and first["max_tracklets"] == 3
    for name, m in first["modalities"].items():
        assert m["tracklets"] == 3 and m["absent"] == {}, name
        att = m["attention"]
        assert len(att["layers"]) == 2 and len(att["mean"]) == 17 and att["reproduction_error"] < 1e-4
        assert m["saliency"]["tracklets"] == 1 and len(m["saliency"]["per_coordinate"]) == 17
        mix = m["pooling"]
        assert sum(mix["weight_mean"]) == pytest.approx(1) and sum(mix["dominant_share"]) == pytest.approx(1)
        corr = m["correction"]
        assert len(corr["position_mean"]) == T and sum(corr["bin_frames"]) == 3 * T


def test_saliency_on_a_few_tracklets_spread_over_several_batches(trained):
    """Batches without a tracklet picked for saliency contribute none (and do not fail)."""
    cfg = dataclasses.replace(trained["cfg"], data=dataclasses.replace(trained["cfg"].data, eval_batch_size=2))
    result = explain_checkpoint(cfg, trained["best"], max_tracklets=6, saliency_tracklets=1).to_dict()
    for name, m in result["modalities"].items():
        assert m["tracklets"] == 6 and m["saliency"]["tracklets"] == 1, name


def test_switched_off_modules_are_absent_with_a_reason(trained):
    cfg = run_config(
        trained["root"],
        trained["root"].parent / "unused",
        frame_correction={"enabled": False},
        sequence={"enabled": False},
    )
    torch.manual_seed(0)
    model = STAR(cfg.model, 4).eval()
    data = load_dataset("synthetic", trained["root"], verbose=False)
    result = explain_model(model, data.query[:2], open_keypoint_store(data), cfg, torch.device("cpu"), "IR")
    assert result.tracklets == 2
    assert (result.attention, result.saliency, result.pooling, result.correction) == (None, None, None, None)
    assert set(result.absent) == {"attention", "saliency", "pooling", "correction"}
    assert "model.sequence.enabled is false" in result.absent["attention"]
    assert "model.frame_correction.enabled is false" in result.absent["correction"]

    # frame correction alone: the keypoints still matter (saliency), the graph is absent
    cfg = run_config(trained["root"], trained["root"].parent / "unused", sequence={"enabled": False})
    model = STAR(cfg.model, 4).eval()
    result = explain_model(model, data.query[:2], open_keypoint_store(data), cfg, torch.device("cpu"), "IR", 1)
    assert set(result.absent) == {"attention", "pooling"} and result.saliency is not None
    assert result.correction is not None


def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(rc: int, err: str, *names) -> None:
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for name in names:
        assert str(name) in lines[0], (name, err)


def test_cli_writes_json_and_pictures_beside_the_checkpoint(trained, capsys):
    rc, out, err = cli(
        capsys, "explain", "--checkpoint", trained["best"], "--max-tracklets", "2", "--saliency-tracklets", "1"
    )
    assert rc == 0, err
    folder = trained["best"].parent / "explain"
    assert str(folder) in out
    written = json.loads((folder / EXPLAIN_FILE).read_text())
    assert written["checkpoint"] == str(trained["best"]) and written["figures"] == list(FIGURE_FILES)
    for name in FIGURE_FILES:
        img = cv2.imread(str(folder / name))
        assert img is not None and img.shape[0] > 200 and img.shape[1] > 400, name


def test_cli_errors_are_one_line(trained, tmp_path, capsys):
    missing = tmp_path / "none.pt"
    rc, _, err = cli(capsys, "explain", "--checkpoint", missing, "--out", tmp_path / "x")
    one_error_line(rc, err, "checkpoint not found", missing)
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, _, err = cli(capsys, "explain", "--checkpoint", trained["best"], "--out", afile)
    one_error_line(rc, err, afile, "is a file, not a folder")
    taken = tmp_path / "taken"
    (taken / EXPLAIN_FILE).mkdir(parents=True)
    rc, _, err = cli(capsys, "explain", "--checkpoint", trained["best"], "--out", taken)
    one_error_line(rc, err, taken / EXPLAIN_FILE, "is an existing folder")
    text = tmp_path / "notes"
    text.mkdir()
    (text / FIGURE_FILES[0]).write_text("my notes")
    rc, _, err = cli(capsys, "explain", "--checkpoint", trained["best"], "--out", text)
    one_error_line(rc, err, text / FIGURE_FILES[0], "--force")
    rc, _, err = cli(
        capsys, "explain", "--checkpoint", trained["best"], "--max-tracklets", "-1", "--out", tmp_path / "y"
    )
    one_error_line(rc, err, "--max-tracklets")
    assert afile.read_text() == "x" and not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
