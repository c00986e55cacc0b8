"""star.export: the inference API, ONNX export and its onnxruntime parity, bad checkpoints and options.

One tiny demo-sized run (the demo's model: ResNet-18, 6 frames of 32 x 16, full STAR, here with
visual keypoint nodes too so all three fused ops are in the graph) is trained for a few
iterations on a small synthetic set and exported once per batch mode.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import star_ext
from star.config import RunConfig
from star.data import SynthConfig, generate_synthetic, load_dataset, open_keypoint_store
from star.engine import Trainer, evaluate_features, extract_features
from star.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from star.errors import StarError
from star.export import PARITY_TOLERANCE, Embedder, ExportError, InferenceInputError, OnnxEmbedder, export_onnx
from star.export.onnx_export import example_inputs
from star.export.onnx_network import DenseGraphAttention
from star_ext import reference
from tiny_run import SYNTH, subprocess_env

T, H, W = 6, 32, 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint path, dataset, keypoint store) of a 3-iteration demo-sized run."""
    base = tmp_path_factory.mktemp("export")
    root = base / "synthetic"
    generate_synthetic(root, SynthConfig(**SYNTH))
    cfg = RunConfig.from_dict(
        {
            "output_dir": str(base / "run"),
            "seed": 0,
            "data": {
                "dataset": "synthetic",
                "root": str(root),
                "height": H,
                "width": W,
                "num_ids": 2,
                "num_per_modality": 1,
                "num_workers": 0,
                "batches_per_epoch": 3,
                "eval_batch_size": 32,
                "synthetic": SYNTH,
            },
            "model": {
                "seq_len": T,
                "neck_feat": "before",
                "backbone": {"name": "resnet18", "pretrained": None},
                "style": {"disturbance": False},
                "sequence": {"visual_nodes": True},
            },
            "loss": {"defence_weight": 0.0},
            "optim": {
                "name": "adamw",
                "lr": 1e-3,
                "epochs": 1,
                "warmup_epochs": 0,
                "milestones": [],
                "pretrained_lr_mult": 1.0,
            },
            "train": {"eval_period": 0, "log_period": 1, "progress": False, "tensorboard": False},
            "eval": {"visrank_queries": 0},
        }
    )
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the box's cores are shared; one thread trains as fast here
    try:
        Trainer(cfg).run()
    finally:
        torch.set_num_threads(threads)
    data = load_dataset("synthetic", root, verbose=False)
    return base / "run" / "last.pt", data, open_keypoint_store(data)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export_onnx(trained[0], path)
    return path, report


class OnnxModule(nn.Module):
    """Lets extract_features (the evaluation's own pipeline) drive the ONNX model."""

    def __init__(self, embedder: OnnxEmbedder):
        super().__init__()
        self.embedder = embedder

    def forward(self, frames, keypoints, modality):
        return self.embedder.embed(frames, keypoints, modality)


def test_export_writes_standard_op_onnx_with_metadata(exported):
    path, report = exported
    assert report.path == path and report.batch is None and report.embedding_dim == 512
    assert report.max_abs_diff is not None and report.max_abs_diff <= PARITY_TOLERANCE
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}  # no custom (star) ops
    assert [i.name for i in model.graph.input] == ["frames", "keypoints", "modality"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in model.metadata_props}
    assert (meta["star.seq_len"], meta["star.height"], meta["star.width"]) == (str(T), str(H), str(W))
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temporary left


def test_onnx_embeddings_equal_pytorch_on_the_test_split(trained, exported):
    checkpoint, data, store = trained
    embedder = Embedder.from_checkpoint(checkpoint, device="cpu")
    onnx_model = OnnxModule(OnnxEmbedder(exported[0]))
    kw = dict(num_frames=T, height=H, width=W, batch_size=5)  # batches of 5 and a shorter last one
    results = {}
    for name, model in (("torch", embedder.model), ("onnx", onnx_model)):
        q = extract_features(model, data.query, store, **kw)
        g = extract_features(model, data.gallery, store, **kw)
        results[name] = (q, g, evaluate_features(q, g, protocol="hitsz-vcm", dataset="synthetic"))
    for split in (0, 1):
        diff = (results["onnx"][split].feats - results["torch"][split].feats).abs().max().item()
        assert diff <= PARITY_TOLERANCE
    torch_metrics, onnx_metrics = (results[k][2].to_dict()["modes"] for k in ("torch", "onnx"))
    assert set(torch_metrics) == {"IR->RGB", "RGB->IR"}
    for mode, m in torch_metrics.items():
        for key in ("R1", "R5", "mAP", "mINP"):
            assert onnx_metrics[mode][key] == pytest.approx(m[key], abs=1e-9), (mode, key)


def test_onnx_model_runs_without_star_ext_or_torch(trained, exported, tmp_path):
    x = example_inputs(3, T, H, W, seed=4)
    np.savez(tmp_path / "x.npz", **{k: v.numpy() for k, v in x._asdict().items()})
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("star_ext", "star", "torch"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
import numpy as np, onnxruntime
x = dict(np.load({str(tmp_path / "x.npz")!r}))
out = onnxruntime.InferenceSession({str(exported[0])!r}).run(None, x)[0]
np.save({str(tmp_path / "out.npy")!r}, out)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, env=subprocess_env())
    out = torch.from_numpy(np.load(tmp_path / "out.npy"))
    want = Embedder.from_checkpoint(trained[0], device="cpu").embed(*x)
    assert out.shape == want.shape == (3, 512)
    assert (out - want).abs().max().item() <= PARITY_TOLERANCE


def test_cli_fixed_batch_export_and_uint8_frames(trained, tmp_path, capsys):
    from star.cli import main

    checkpoint = trained[0]
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "b4.onnx"), "--batch", "4"]
    assert main([*args, "--opset", "14"]) == 0
    out = capsys.readouterr().out
    assert "opset 14, batch 4" in out and "max |diff|" in out
    onnx_embedder, embedder = OnnxEmbedder(tmp_path / "b4.onnx"), Embedder.from_checkpoint(checkpoint, device="cpu")
    assert onnx_embedder.batch == 4
    g = torch.Generator().manual_seed(2)
    frames = torch.randint(0, 256, (7, T, 3, H, W), dtype=torch.uint8, generator=g)  # 4 + 3 (padded)
    kpts = torch.rand(7, T, 17, 3, generator=g)
    modality = ["ir", "rgb", 0, 1, "infrared", "visible", True]
    got, want = onnx_embedder.embed(frames, kpts, modality), embedder.embed(frames.numpy(), kpts.numpy(), modality)
    assert got.shape == want.shape == (7, 512)
    assert (got - want).abs().max().item() <= PARITY_TOLERANCE
    # uint8 frames are normalised exactly as the data pipeline does
    from star.data import normalize_frames

    torch.testing.assert_close(embedder.embed(normalize_frames(frames), kpts, modality), want)


def test_embedder_rejects_inputs_that_do_not_fit(trained):
    embedder = Embedder.from_checkpoint(trained[0], device="cpu")
    frames, kpts = torch.zeros(2, T, 3, H, W), torch.rand(2, T, 17, 3)
    cases = [
        ((torch.zeros(2, T + 1, 3, H, W), torch.rand(2, T + 1, 17, 3), "ir"), r"\[B, 6, 3, 32, 16\]"),
        ((torch.zeros(2, T, 3, 64, 32), kpts, "ir"), "frame size"),
        ((frames.int(), kpts, "ir"), "uint8 RGB or normalised float"),
        ((frames, torch.rand(2, T, 16, 3), "ir"), r"keypoints must be float \[B, T, 17, 3\]"),
        ((frames, kpts, "depth"), "modality 'depth' is not one of ir, rgb"),
        ((frames, kpts, [0, 1, 1]), "modality has 3 entries but the batch has 2"),
        ((frames, kpts.clone().fill_(float("nan")), 0), "keypoints hold NaN"),
        (([[0.0]], kpts, 0), "frames must be a torch tensor or a numpy array"),
    ]
    for args, message in cases:
        with pytest.raises(InferenceInputError, match=message):
            embedder.embed(*args)


def test_empty_batch_embeds_to_zero_rows_of_the_embedding_width(trained, exported):
    embedder = Embedder.from_checkpoint(trained[0], device="cpu")
    empty = (torch.zeros(0, T, 3, H, W), torch.zeros(0, T, 17, 3), torch.zeros(0, dtype=torch.int64))
    width = embedder.embed(torch.zeros(1, T, 3, H, W), torch.rand(1, T, 17, 3), "ir").shape[1]
    assert embedder.embed(*empty).shape == (0, width)
    pytest.importorskip("onnxruntime")
    assert OnnxEmbedder(exported[0]).embed(*empty).shape == (0, width)


# ----------------------------------------------------------------------------- errors


def test_bad_checkpoints_are_clear_errors_naming_the_file(trained, tmp_path):
    checkpoint = trained[0]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    state = {
        k: v
        for k, v in load_checkpoint(checkpoint).items()
        if k in ("model", "config", "epoch", "version", "num_classes")
    }
    missing = dict(state, model={k: v for k, v in state["model"].items() if "head.classifier" not in k})
    save_checkpoint(missing, tmp_path / "missing_keys.pt")
    no_config = {k: v for k, v in state.items() if k != "config"}
    save_checkpoint(no_config, tmp_path / "no_config.pt")
    unknown = dict(state, config={**state["config"], "model": {**state["config"]["model"], "wings": 2}})
    save_checkpoint(unknown, tmp_path / "unknown_key.pt")
    cases = [
        (tmp_path / "nothing.pt", "checkpoint not found"),
        (junk, "cannot read checkpoint"),
        (tmp_path / "missing_keys.pt", "weights do not fit"),
        (tmp_path / "no_config.pt", "holds no run configuration"),
        (tmp_path / "unknown_key.pt", "model configuration is invalid.*wings"),
    ]
    for path, message in cases:
        with pytest.raises(CheckpointError, match=message) as info:
            export_onnx(path, tmp_path / "out.onnx")
        assert str(path) in str(info.value)
    assert not (tmp_path / "out.onnx").exists()


def test_bad_export_options_are_clear_errors(trained, tmp_path):
    checkpoint = trained[0]
    for kwargs, message in (
        ({"opset": 13}, r"--opset must be in \[14, 20\]"),
        ({"batch": "lots"}, "--batch must be 'dynamic' or a positive integer"),
        ({"batch": 0}, "--batch must be"),
    ):
        with pytest.raises(ExportError, match=message):
            export_onnx(checkpoint, tmp_path / "x.onnx", **kwargs)
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(checkpoint, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_onnx_embedder_rejects_files_that_are_not_star_models(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    lin = tmp_path / "identity.onnx"  # a valid ONNX model without star's metadata
    info = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [info],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(lin))
    for path, message in (
        (tmp_path / "none.onnx", "not found"),
        (tmp_path / "junk.onnx", "not a loadable ONNX"),
        (lin, "not written by `star export`"),
    ):
        with pytest.raises(ExportError, match=message):
            OnnxEmbedder(path)


def test_cli_export_error_is_one_line(tmp_path, capsys):
    from star.cli import main

    assert main(["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "n.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: checkpoint not found") and "nope.pt" in err


# ----------------------------------------------------------------------------- the dense graph attention


def test_dense_graph_attention_equals_the_op_with_duplicates_and_empty_rows():
    # 5 nodes: a duplicate edge 1 -> 0, node 3 without incoming edges.
    rowptr = torch.tensor([0, 3, 5, 6, 6, 8])
    col = torch.tensor([0, 1, 1, 1, 2, 2, 4, 0])
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 5, 2, 4, generator=g, dtype=torch.float64)
    a_src, a_dst = torch.randn(2, 5, 2, generator=g, dtype=h.dtype), torch.randn(2, 5, 2, generator=g, dtype=h.dtype)
    dense = DenseGraphAttention(rowptr, col)(h, a_src, a_dst, rowptr, col, 0.2)
    torch.testing.assert_close(dense, reference.keypoint_graph_attention(h, a_src, a_dst, rowptr, col, 0.2))
    torch.testing.assert_close(dense, star_ext.keypoint_graph_attention(h, a_src, a_dst, rowptr, col, 0.2))
    assert dense[:, 3].abs().max() == 0
    with pytest.raises(StarError, match="another graph template"):
        DenseGraphAttention(rowptr, col)(h, a_src, a_dst, rowptr.clone(), col, 0.2)
