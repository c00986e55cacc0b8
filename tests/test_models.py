"""Tests of star.models: shapes per ablation, gradients, fused vs reference, training,
torch.compile of the skeleton head, input validation, config, pretrained weights,
and the building blocks (style perturbations, bone geometry, graph attention)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision

import star_ext
from star.losses import LossConfig, compute_losses
from star.models import (
    STAR,
    KeypointGraphAttention,
    ModelConfig,
    StarOutput,
    build_model,
    load_backbone_weights,
)
from star.models.pretrained import PretrainedWeightsError, imagenet_checkpoint_candidates

B, T, H, W, CLASSES = 4, 3, 64, 32, 2
MODALITY = torch.tensor([0, 1, 0, 1])  # 2 ids x 1 tracklet x {infrared, visible}
PIDS = torch.tensor([0, 0, 1, 1])

# Each ablation row: (model overrides, loss overrides); "+consistency" only changes the loss.
OFF = {"enabled": False}
ABLATIONS = {
    "baseline": ({"frame_correction": OFF, "sequence": OFF}, {"pose_weight": 0, "consistency_weight": 0}),
    "frame_level": ({"sequence": OFF}, {"pose_weight": 0, "consistency_weight": 0}),
    "sequence_level": ({}, {"consistency_weight": 0}),
    "consistency": ({}, {}),
    "visual_nodes": ({"sequence": {"visual_nodes": True}}, {}),
}


def config(**overrides) -> dict:
    cfg = {"seq_len": T, "backbone": {"name": "resnet18", "pretrained": None}}
    cfg.update(overrides)
    return cfg


def make_model(seed: int = 0, **overrides) -> STAR:
    torch.manual_seed(seed)
    return build_model(config(**overrides), CLASSES)


def make_batch(b: int = B, t: int = T, h: int = H, w: int = W, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randn(b, t, 3, h, w, generator=gen)
    keypoints = torch.rand(b, t, 17, 3, generator=gen)
    keypoints[0, 1] = 0.0  # a frame without detection
    return frames, keypoints, MODALITY[:b].clone()


@pytest.fixture(scope="module")
def full_model() -> STAR:
    return make_model()


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("row", list(ABLATIONS))
def test_ablation_rows_shapes_and_losses(row):
    model_overrides, loss_overrides = ABLATIONS[row]
    model = make_model(**model_overrides)
    frames, kpts, modality = make_batch()
    out = model(frames, kpts, modality)
    c = 512
    assert isinstance(out, StarOutput)
    assert out.z.shape == (B, c) and out.logits.shape == (B, CLASSES)
    assert out.frame_logits.shape == out.frame_logits_dis.shape == (B, T, CLASSES)
    assert out.f.shape == out.f_dis.shape == (B, T, c)
    has_sequence = row not in ("baseline", "frame_level")
    assert (model.frame_correction is not None) == (row != "baseline")
    # h_T comes with either skeleton level; g, s and the pose logits only with the sequence level.
    assert (out.h_t.shape == (B, c)) if row != "baseline" else out.h_t is None
    for name, shape in (("g", (B, c)), ("s", (B, 2 * c)), ("pose_logits", (B, CLASSES))):
        value = getattr(out, name)
        assert (value.shape == shape) if has_sequence else value is None, name
    assert (model.sequence_guidance is not None and model.sequence_guidance.graph.visual_proj is not None) == (
        row == "visual_nodes"
    )
    # The row's loss config fits its model, and every active term is finite.
    total, terms = compute_losses(out, PIDS, LossConfig(**loss_overrides))
    assert torch.isfinite(total) and all(math.isfinite(v) for v in terms.values())
    assert ("pose" in terms) == has_sequence
    assert ("consistency" in terms) == (row in ("consistency", "visual_nodes"))
    model.eval()
    with torch.no_grad():
        emb = model(frames, kpts, modality)
    assert emb.shape == (B, c)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(B))


@pytest.mark.slow  # 1.5-2 s
def test_dims_scale_with_backbone():
    model = STAR(ModelConfig.from_dict(config(backbone={"name": "resnet50", "pretrained": None}, seq_len=12)), CLASSES)
    c = 2048
    assert model.feature_dim == c
    assert model.skeleton_encoder.lstm.hidden_size == c // 2 and model.skeleton_encoder.lstm.bidirectional
    assert model.skeleton_encoder.embed.in_features == 57 and model.skeleton_encoder.embed.out_features == 64
    assert model.frame_correction.ffn[0].in_features == 2 * c
    assert model.frame_correction.skeleton_queries.num_heads == 4
    assert model.sequence_guidance.guide_bn.num_features == 2 * c
    assert model.sequence_guidance.pooling.score.out_features == 5 * c
    assert model.sequence_guidance.graph.readout is None  # avg_pool: no parameters
    linear = STAR(
        ModelConfig.from_dict(
            config(backbone={"name": "resnet50", "pretrained": None}, seq_len=12, sequence={"readout": "linear"})
        ),
        CLASSES,
    )
    assert linear.sequence_guidance.graph.readout.in_features == 12 * 17 * 12
    assert model.head.classifier.in_features == c


def test_feature_map_is_18x9_at_paper_size_with_last_stride_1():
    model = make_model(frame_correction=OFF, sequence=OFF)
    x = torch.zeros(1, 3, 288, 144)
    with torch.no_grad():
        stem = model.backbone.stem(x, torch.tensor([True]))
        maps = model.backbone.layer4(model.backbone.layer3(model.backbone.layer2(model.backbone.layer1(stem))))
    assert maps.shape == (1, 512, 18, 9)


def test_eval_is_deterministic_and_pure(full_model):
    frames, kpts, modality = make_batch()
    full_model.eval()
    with torch.no_grad():
        a = full_model(frames, kpts, modality)
        b = full_model(frames, kpts, modality.bool())
    full_model.train()
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_neck_feat_picks_the_test_embedding():
    after = make_model(seed=3).eval()
    before = make_model(seed=3, neck_feat="before").eval()
    for model in (after, before):  # trained running statistics, so that BN(z) differs from z
        model.head.bn.running_mean.copy_(torch.linspace(0.0, 1.0, model.feature_dim))
        model.head.bn.running_var.copy_(torch.linspace(0.1, 4.0, model.feature_dim))
    frames, kpts, modality = make_batch()
    seen = []
    before.head.register_forward_hook(lambda mod, args, out: seen.append((args[0], out[0])))
    with torch.no_grad():
        a, b = after(frames, kpts, modality), before(frames, kpts, modality)
    z, bn_z = seen[0]
    torch.testing.assert_close(a, F.normalize(bn_z, dim=1))
    torch.testing.assert_close(b, F.normalize(z, dim=1))
    assert not torch.allclose(a, b, atol=1e-3)
    with pytest.raises(ValueError, match="neck_feat must be one of after, before, got 'middle'"):
        make_model(neck_feat="middle")


# --------------------------------------------------------------------------- gradients


def test_every_learnable_parameter_gets_a_gradient():
    model = make_model(sequence={"visual_nodes": True}, pooling={"learnable": True})
    frames, kpts, modality = make_batch()
    total, _ = compute_losses(model(frames, kpts, modality), PIDS)
    total.backward()
    frozen = {"head.bn.bias", "frame_head.bn.bias"}
    for name, param in model.named_parameters():
        if name in frozen:
            assert not param.requires_grad and param.grad is None, name
            continue
        assert param.requires_grad, name
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{name} got a zero gradient"
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == frozen


def test_training_step_under_autocast():
    """Mixed precision (bfloat16 autocast on the CPU; float16 on CUDA takes the same path): the fused ops
    get float32 keypoints, weights and logits next to low-precision features, and every loss term is finite."""
    model = make_model(sequence={"visual_nodes": True})
    frames, kpts, modality = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(frames, kpts, modality)
        total, terms = compute_losses(out, PIDS)
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(torch.as_tensor(v)) for v in terms.values())
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_frozen_bn_bias_stays_zero_under_sgd():
    model = make_model(frame_correction=OFF, sequence=OFF)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    total, _ = compute_losses(model(*make_batch()), PIDS, LossConfig(pose_weight=0, consistency_weight=0))
    total.backward()
    opt.step()
    assert torch.count_nonzero(model.head.bn.bias) == 0
    assert model.head.bn.weight.grad is not None


# --------------------------------------------------------------------------- fused vs reference


@pytest.mark.slow  # 1.5-2 s
def test_fused_and_reference_paths_agree_float64():
    assert star_ext.HAS_C, star_ext.FALLBACK_REASON
    overrides = dict(sequence={"visual_nodes": True}, pooling={"learnable": True})
    fused = make_model(use_fused_ops=True, **overrides).double()
    ref = make_model(use_fused_ops=False, **overrides).double()
    ref.load_state_dict(fused.state_dict())
    frames, kpts, modality = make_batch(h=32, w=16)
    results = []
    for model in (fused, ref):
        torch.manual_seed(123)  # same style draws, partners and attention-dropout masks
        out = model(frames.double(), kpts.double(), modality)
        total, _ = compute_losses(out, PIDS)
        total.backward()
        results.append((out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (out_f, grads_f), (out_r, grads_r) = results
    for name in ("z", "logits", "f", "f_dis", "h_t", "g", "s", "pose_logits"):
        torch.testing.assert_close(getattr(out_f, name), getattr(out_r, name), rtol=1e-9, atol=1e-10, msg=name)
    assert grads_f.keys() == grads_r.keys()
    for name in grads_f:
        torch.testing.assert_close(grads_f[name], grads_r[name], rtol=1e-7, atol=1e-9, msg=name)


# --------------------------------------------------------------------------- training


@pytest.mark.slow  # 1.5-2 s
def test_overfits_one_batch():
    model = make_model(seed=1)
    frames, kpts, modality = make_batch(h=32, w=16, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(1)
    history = []
    for _ in range(8):
        total, terms = compute_losses(model(frames, kpts, modality), PIDS)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(terms)
    first, last = history[0], history[-1]
    assert last["total"] < 0.8 * first["total"], [h["total"] for h in history]
    assert last["id"] < first["id"]


# --------------------------------------------------------------------------- torch.compile


@pytest.mark.slow  # torch.compile: 3 s
def test_compiled_skeleton_head_matches_eager():
    model = make_model(sequence={"visual_nodes": True})
    head = model.sequence_guidance
    gen = torch.Generator().manual_seed(0)
    c = model.feature_dim
    frames = torch.rand(B, T, c, generator=gen)
    kpts = torch.rand(B, T, 17, 3, generator=gen)
    h_t = torch.randn(B, c, generator=gen)
    maps = torch.rand(B * T, c, 4, 2, generator=gen)
    compiled = torch.compile(head, backend="aot_eager", fullgraph=True)

    out = compiled(frames.requires_grad_(), kpts, h_t, maps)  # training: dropout, pose logits
    assert out.pose_logits.shape == (B, CLASSES)
    out.z.sum().backward()
    assert frames.grad is not None and torch.isfinite(frames.grad).all()
    assert head.pooling.score.weight.grad is not None and head.graph.gat1.att_src.grad is not None

    head.eval()
    with torch.no_grad():
        want, got = head(frames, kpts, h_t, maps), compiled(frames, kpts, h_t, maps)
    for name in ("z", "g", "s"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), msg=name)


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    "case, match",
    [
        ("frames_rank", r"frames must be a tensor \[B, T, 3, H, W\]"),
        ("frames_channels", r"frames must be a tensor \[B, T, 3, H, W\]"),
        ("keypoints_T", r"keypoints have B, T = \(4, 2\) but frames have B, T = \(4, 3\)"),
        ("keypoints_B", r"keypoints have B, T = \(3, 3\) but frames have B, T = \(4, 3\)"),
        ("keypoints_joints", r"keypoints must be a tensor \[B, T, 17, 3\]"),
        ("modality_value", r"modality flags must be 0 \(infrared\) or 1 \(visible\) .*got \[0, 1, 2\]"),
        ("modality_float", r"modality flags must be 0 \(infrared\) or 1 \(visible\) in a bool or integer tensor"),
        ("modality_length", r"modality must have shape \[B\] = \[4\]"),
        ("seq_len", r"built for seq_len = 3 frames, got T = 5"),
    ],
)
def test_bad_inputs_raise_clear_errors(full_model, case, match):
    frames, kpts, modality = make_batch()
    if case == "frames_rank":
        frames = frames[:, 0]
    elif case == "frames_channels":
        frames = frames[:, :, :1]
    elif case == "keypoints_T":
        kpts = kpts[:, :2]
    elif case == "keypoints_B":
        kpts = kpts[:3]
    elif case == "keypoints_joints":
        kpts = kpts[:, :, :16]
    elif case == "modality_value":
        modality = torch.tensor([0, 1, 2, 1])
    elif case == "modality_float":
        modality = modality.float()
    elif case == "modality_length":
        modality = modality[:3]
    elif case == "seq_len":
        frames, kpts, _ = make_batch(t=5, h=32, w=16)
    with pytest.raises(ValueError, match=match):
        full_model(frames, kpts, modality)


def test_other_seq_len_is_fine_without_the_graph():
    model = make_model(sequence=OFF)
    out = model(*make_batch(t=5, h=32, w=16))
    assert out.frame_logits.shape == (B, 5, CLASSES)


# --------------------------------------------------------------------------- config


def test_config_from_dict_nested_and_lists():
    cfg = ModelConfig.from_dict(config(pooling={"exponents": [1, 3], "learnable": True}, sequence={"dropout": 0.0}))
    assert cfg.pooling.exponents == (1, 3) and cfg.pooling.learnable
    assert cfg.sequence.dropout == 0.0 and cfg.sequence.enabled and cfg.backbone.name == "resnet18"
    assert cfg.feature_dim == 512


def test_config_unknown_keys_name_the_valid_ones():
    match = r"unknown config key 'backbon'; valid keys: seq_len, backbone"
    with pytest.raises(ValueError, match=match):
        ModelConfig.from_dict({"backbon": {}})
    with pytest.raises(ValueError, match=r"unknown config key 'num_classes'"):  # a property of the data
        ModelConfig.from_dict({"num_classes": 2})
    with pytest.raises(ValueError, match=r"sequence\.visual_node'.*valid keys: enabled, pose_classifier, visual_nodes"):
        build_model(config(sequence={"visual_node": True}), CLASSES)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"backbone": {"name": "resnet101"}}, "backbone.name must be one of resnet18, resnet34, resnet50"),
        ({"sequence": {"readout": "max"}}, "sequence.readout must be one of avg_pool, linear, got 'max'"),
        ({"pooling": {"exponents": "3"}}, "pooling.exponents must be a list of float"),
    ],
)
def test_config_rejects_bad_choices_and_types(overrides, match):
    # value ranges and rules across fields are checked with the whole run config (test_config_ranges.py)
    with pytest.raises(ValueError, match=match):
        ModelConfig.from_dict(config(**overrides))


# --------------------------------------------------------------------------- pretrained weights


def _save_resnet18(path):
    torch.manual_seed(7)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    return state


def test_pretrained_from_path_fills_both_stems(tmp_path, caplog):
    path = tmp_path / "r18.pth"
    state = _save_resnet18(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a complete checkpoint gives no warning
        with caplog.at_level("INFO", logger="star.models.pretrained"):
            model = build_model(config(backbone={"name": "resnet18", "pretrained": str(path)}), CLASSES)
    backbone = model.backbone
    for stem in (backbone.visible_stem, backbone.infrared_stem):
        torch.testing.assert_close(stem.conv1.weight, state["conv1.weight"], rtol=0, atol=0)
        torch.testing.assert_close(stem.bn1.running_var, state["bn1.running_var"], rtol=0, atol=0)
    torch.testing.assert_close(backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"], rtol=0, atol=0)
    assert "skipped 2: ['fc.weight', 'fc.bias']" in caplog.text


def test_pretrained_reports_missing_backbone_tensors(tmp_path):
    path = tmp_path / "partial.pth"
    state = _save_resnet18(path)
    torch.save({"state_dict": {k: v for k, v in state.items() if not k.startswith("layer4")}}, path)
    model = make_model(frame_correction=OFF, sequence=OFF)
    with pytest.warns(UserWarning, match=r"do not cover \d+ backbone tensors"):
        report = load_backbone_weights(model.backbone, path)
    assert all(k.startswith("layer4") for k in report.missing) and report.missing
    torch.testing.assert_close(model.backbone.layer3[0].conv1.weight, state["layer3.0.conv1.weight"], rtol=0, atol=0)


def test_pretrained_imagenet_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch.hub.get_dir() is $TORCH_HOME/hub
    (expected,) = imagenet_checkpoint_candidates("resnet18")
    assert expected == tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    expected.parent.mkdir(parents=True)
    state = _save_resnet18(expected)
    model = build_model(
        config(backbone={"name": "resnet18", "pretrained": "imagenet", "require_pretrained": True}), CLASSES
    )
    torch.testing.assert_close(model.backbone.infrared_stem.conv1.weight, state["conv1.weight"], rtol=0, atol=0)


def test_garbage_pretrained_file_is_one_error_naming_it(tmp_path):
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"PK\x03\x04 not really a zip" + bytes(range(256)))
    with pytest.raises(PretrainedWeightsError) as info:
        build_model(config(backbone={"name": "resnet18", "pretrained": str(garbage)}), CLASSES)
    message = str(info.value)
    assert str(garbage) in message and "weights_only" not in message and "\n" not in message


def test_missing_pretrained_file_warns_once_or_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: no ImageNet file
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth.*require_pretrained"):
        build_model(config(backbone={"name": "resnet18", "pretrained": missing, "require_pretrained": True}), CLASSES)
    for source in (missing, "imagenet"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = build_model(config(backbone={"name": "resnet18", "pretrained": source}), CLASSES)
        assert len(caught) == 1, [str(w.message) for w in caught]
        assert "not found" in str(caught[0].message) and "randomly initialised" in str(caught[0].message)
        assert isinstance(model, STAR)


# --------------------------------------------------------------------------- building blocks


def _dense_gat(layer: KeypointGraphAttention, x, rowptr, col):
    """GATConv written with a dense adjacency mask: the semantics the layer must have."""
    b, v, _ = x.shape
    h = layer.lin(x).view(b, v, layer.heads, layer.out_dim)
    a_src = (h * layer.att_src).sum(-1)
    a_dst = (h * layer.att_dst).sum(-1)
    adj = torch.zeros(v, v, dtype=torch.bool)  # adj[i, j]: edge j -> i
    dst = torch.repeat_interleave(torch.arange(v), rowptr[1:] - rowptr[:-1])
    adj[dst, col] = True
    e = F.leaky_relu(a_dst.unsqueeze(2) + a_src.unsqueeze(1), 0.2)  # [B, i, j, heads]
    alpha = e.masked_fill(~adj.view(1, v, v, 1), float("-inf")).softmax(dim=2)
    out = torch.einsum("bijk,bjkd->bikd", alpha, h)
    out = out.reshape(b, v, -1) if layer.concat else out.mean(dim=2)
    return out + layer.bias


@pytest.mark.parametrize("concat", [True, False])
def test_graph_attention_has_gatconv_semantics(concat):
    torch.manual_seed(0)
    rowptr, col = star_ext.skeleton_graph(2)
    layer = KeypointGraphAttention(5, 4, heads=3, concat=concat, dropout=0.5)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 34, 5)
    layer.eval()
    out = layer(x, rowptr, col)
    assert out.shape == (2, 34, 12 if concat else 4)
    torch.testing.assert_close(out, _dense_gat(layer, x, rowptr, col), rtol=1e-5, atol=1e-5)
    layer.train()  # attention dropout: random in training, mean preserved by the 1/(1-p) scaling
    assert not torch.allclose(layer(x, rowptr, col), out)


def test_num_classes_is_given_to_the_model_not_its_config():
    cfg = ModelConfig.from_dict(config())
    model = STAR(cfg, 7)
    assert model.num_classes == 7 and model.head.classifier.out_features == 7
    with pytest.raises(ValueError, match="num_classes .* must be >= 1, got 0"):
        STAR(cfg, 0)


def test_coco_skeleton_is_defined_once():
    from star.data import COCO17_KEYPOINTS, COCO_BONES, NUM_COCO_KEYPOINTS
    from star.pose.runtime import NUM_COCO_KEYPOINTS as POSE_KEYPOINTS  # a copy: star.pose must not import torch

    assert COCO_BONES is star_ext.COCO_BONES and NUM_COCO_KEYPOINTS == star_ext.NUM_COCO_KEYPOINTS
    assert POSE_KEYPOINTS == star_ext.NUM_COCO_KEYPOINTS
    assert len(COCO17_KEYPOINTS) == NUM_COCO_KEYPOINTS  # the joint names agree with star_ext's count
