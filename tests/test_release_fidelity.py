"""The switches between the authors' released STAR and our variants (README, "Deviations from
the authors' release"): each released setting computes the formula the README states, the
variants compute theirs, and the release presets build exactly the released network.

Written from the stated formulas (docs of the release's facts), not from the release's code.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import star_ext
from star.config import load_config
from star.engine.checkpoint import PRE_V3_BONE_EMBEDDING, PRE_V3_EXPONENT_BUFFER, PRE_V3_MODEL_SWITCHES, _upgrade
from star.models import STAR, ModelConfig, build_model
from star.models.bone_geometry import BoneEncoding, bone_geometry
from star.models.config import PoolingConfig, StyleConfig
from star.models.guided_pooling import GuidedPooling, UnguidedPooling
from star.models.style import StyleAugmentation, StyleDisturbance, adain, partner_frames, random_partners

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPONENTS = (0.7, 1.0, 3.0, 5.0, 7.0)
RELEASE_POOLING = PoolingConfig(eps=0.0, floor=1e-12, unguided="gem", unguided_exponent=3.0)
B, T, H, W, CLASSES = 4, 3, 64, 32, 5


def small(**overrides) -> dict:
    cfg = {"seq_len": T, "backbone": {"name": "resnet18", "pretrained": None}}
    cfg.update(overrides)
    return cfg


def batch(seed: int = 0, b: int = B, t: int = T, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randn(b, t, 3, H, W, generator=gen, dtype=dtype)
    keypoints = torch.rand(b, t, 17, 3, generator=gen, dtype=dtype)
    keypoints[0, 1, 5] = 0.0  # an undetected joint
    modality = torch.tensor([1, 1, 0, 0][:b])  # visible tracklets first, as the release batches them
    return frames, keypoints, modality


# ----------------------------------------------------------------------------- bone geometry


def test_released_bone_encoding_is_length_and_atan2_per_bone_on_stored_coordinates():
    kpts = torch.rand(2, 17, 3, dtype=torch.float64)
    kpts[0, 6] = 0.0  # undetected right shoulder: its bones use the stored (0, 0) as it is
    e = bone_geometry(kpts, star_ext.COCO_BONES, aspect=0.5)  # aspect ignored without aspect_scale
    assert e.shape == (2, 38)
    for n, (i, j) in enumerate(star_ext.COCO_BONES):
        vx, vy = kpts[:, j, 0] - kpts[:, i, 0], kpts[:, j, 1] - kpts[:, i, 1]
        torch.testing.assert_close(e[:, 2 * n], torch.sqrt(vx * vx + vy * vy), rtol=1e-15, atol=0)
        torch.testing.assert_close(e[:, 2 * n + 1], torch.atan2(vy, vx), rtol=1e-15, atol=0)


def test_cos_sin_encoding_zeroes_undetected_bones_and_scales_x_by_the_aspect():
    kpts = torch.zeros(1, 17, 3)
    kpts[0, 13] = torch.tensor([0.5, 0.5, 1.0])  # left knee
    kpts[0, 15] = torch.tensor([0.5, 0.25, 0.9])  # left ankle above it: bone (15, 13) points down
    kpts[0, 14] = torch.tensor([0.75, 0.5, 0.8])  # right knee
    kpts[0, 16] = torch.tensor([0.0, 0.0, 0.7])  # right ankle at the corner, detected: bone (16, 14)
    kpts[0, 5] = torch.tensor([0.6, 0.3, 1.0])  # left shoulder; the right one (6) is not detected
    ours = BoneEncoding(angle="cos_sin", zero_undetected=True, aspect_scale=True)
    e = bone_geometry(kpts, star_ext.COCO_BONES, aspect=0.5, encoding=ours).view(19, 3)
    torch.testing.assert_close(e[0], torch.tensor([0.25, 0.0, 1.0]))
    # (16, 14): v = (0.75, 0.5) -> x scaled by the aspect 0.5 -> (0.375, 0.5).
    r = math.hypot(0.375, 0.5)
    torch.testing.assert_close(e[2], torch.tensor([r, 0.375 / r, 0.5 / r]))
    assert e[star_ext.COCO_BONES.index((5, 6))].abs().sum() == 0  # an undetected end: all zero
    kpts.requires_grad_(True)
    bone_geometry(kpts, star_ext.COCO_BONES, encoding=ours).sum().backward()
    assert torch.isfinite(kpts.grad).all()


def test_cos_sin_has_no_wraparound_where_atan2_jumps_by_two_pi():
    """A horizontal bone pointing left (shoulders of a person facing the camera)."""
    kpts = torch.ones(2, 17, 3)
    kpts[:, 5, :2] = torch.tensor([0.7, 0.3])
    kpts[:, 6, :2] = torch.tensor([[0.3, 0.3 + 1e-4], [0.3, 0.3 - 1e-4]])
    shoulders = star_ext.COCO_BONES.index((5, 6))
    cos_sin = bone_geometry(kpts, star_ext.COCO_BONES, encoding=BoneEncoding(angle="cos_sin"))
    assert (cos_sin[0] - cos_sin[1]).abs().max() < 1e-3
    atan2 = bone_geometry(kpts, star_ext.COCO_BONES)
    assert abs(float(atan2[0, 2 * shoulders + 1] - atan2[1, 2 * shoulders + 1])) > 6  # the 2 pi jump


@pytest.mark.parametrize("final_states", [False, True])
def test_edge_code_is_the_bilstm_output_at_frame_t_or_the_final_states(final_states):
    edge_code = "final_states" if final_states else "last_output"
    model = build_model(small(skeleton={"edge_code": edge_code}), CLASSES)
    _, kpts, _ = batch()
    seq, h_t = model.skeleton_encoder(kpts)
    half = seq.shape[-1] // 2
    expected = torch.cat([seq[:, -1, :half], seq[:, 0, half:]], dim=1) if final_states else seq[:, -1]
    assert torch.equal(h_t, expected)


# ----------------------------------------------------------------------------- frame level


@pytest.mark.parametrize("offset", [1e-3, 0.0])
def test_frame_correction_adds_the_offset_to_the_residual(offset):
    model = build_model(small(frame_correction={"offset": offset}, sequence={"enabled": False}), CLASSES).double()
    fc = model.frame_correction
    with torch.no_grad():  # FFN output 0: F' = F + offset exactly
        fc.ffn[2].weight.zero_()
        fc.ffn[2].bias.zero_()
    f, h = torch.rand(2, T, model.feature_dim, dtype=torch.float64), torch.randn(2, T, model.feature_dim).double()
    assert torch.equal(fc(f, h), f + offset)


# ----------------------------------------------------------------------------- keypoint graph


def _edges(rowptr, col):
    dst = star_ext.graph.csr_destinations(rowptr)
    return set(zip(col.tolist(), dst.tolist(), strict=False))


def test_first_frame_graph_has_bones_in_frame_zero_only():
    t, k = 12, star_ext.NUM_COCO_KEYPOINTS
    rowptr, col = star_ext.skeleton_graph(t, bones_in_first_frame_only=True)
    v = t * k
    assert col.numel() == 19 * 2 + 17 * 11 * 2 + v
    edges = _edges(rowptr, col)
    loops = {(n, n) for n in range(v)}
    bones = {(i, j) for i, j in star_ext.COCO_BONES} | {(j, i) for i, j in star_ext.COCO_BONES}
    temporal = {(n, n + k) for n in range(v - k)} | {(n + k, n) for n in range(v - k)}
    assert edges == loops | bones | temporal
    full = _edges(*star_ext.skeleton_graph(t))
    assert full - edges == {(a + f * k, b + f * k) for f in range(1, t) for a, b in bones}


def test_model_builds_the_graph_its_switch_names():
    for spatial, edges in (("first_frame", 19 * 2 + 17 * 2 * 2 + 51), ("all_frames", 3 * 19 * 2 + 17 * 2 * 2 + 51)):
        model = build_model(small(sequence={"spatial_edges": spatial}), CLASSES)
        assert model.sequence_guidance.graph.col.numel() == edges


def test_avg_pool_readout_is_adaptive_average_pooling_of_the_node_codes():
    model = build_model(small(sequence={"readout": "avg_pool"}), CLASSES).eval()
    graph = model.sequence_guidance.graph
    assert graph.readout is None and not any("readout" in n for n, _ in model.named_parameters())
    _, kpts, _ = batch()
    codes = []
    graph.gat2.register_forward_hook(lambda m, i, o: codes.append(F.elu(o).flatten(1)))
    g = graph(kpts)
    torch.testing.assert_close(g, F.adaptive_avg_pool1d(codes[0], model.feature_dim))  # float32 round-off
    linear = build_model(small(sequence={"readout": "linear"}), CLASSES).sequence_guidance.graph.readout
    assert linear.in_features == T * 17 * 12 and linear.out_features == 512


def test_graph_dropout_and_pose_classifier_follow_their_switches():
    release = {"dropout": 0.3, "attention_dropout": 0.6, "pose_classifier_bias": True}
    released = build_model(small(sequence=release), CLASSES).sequence_guidance
    assert released.graph.gat1.dropout == released.graph.gat2.dropout == 0.6 and released.graph.dropout.p == 0.3
    assert released.pose_classifier.bias is not None
    ours = build_model(small(sequence={"pose_classifier_bias": False, "dropout": 0.1}), CLASSES).sequence_guidance
    assert ours.pose_classifier.bias is None and ours.graph.dropout.p == 0.1


# ----------------------------------------------------------------------------- pooling


def _gem(x, p, floor=1e-12, eps=0.0):
    return (x.clamp(min=eps).pow(p).mean(dim=1) + floor).pow(1 / p)


def test_guided_pooling_is_the_softmax_mixture_of_floored_generalized_means():
    torch.manual_seed(0)
    pool = GuidedPooling(8, 6, RELEASE_POOLING).double()
    x, s = torch.rand(3, 5, 6, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    x[0, :, 0] = 0.0  # a dead channel: the floor gives 1e-12^(1/p), not 0
    scores = pool.score(s).view(3, 5, 6)  # W_i s for the five exponents
    expected = (scores.softmax(dim=1) * torch.stack([_gem(x, p) for p in EXPONENTS], dim=1)).sum(dim=1)
    torch.testing.assert_close(pool(x, s), expected, rtol=1e-13, atol=1e-15)


def test_baseline_pools_frames_by_gem_p3_or_the_mean():
    x = torch.rand(3, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(UnguidedPooling(RELEASE_POOLING).double()(x), _gem(x, 3.0), rtol=1e-13, atol=0)
    mean = UnguidedPooling(PoolingConfig(unguided="mean", eps=1e-6, floor=0.0))
    torch.testing.assert_close(mean(x), x.mean(dim=1), rtol=0, atol=0)


def test_exponents_are_exact_in_a_float64_model():
    model = build_model(small(), CLASSES).double()
    exps = model.sequence_guidance.pooling.exponents
    assert exps.dtype == torch.float64 and exps.tolist() == list(EXPONENTS)  # 0.7, not 0.69999998807907
    assert "sequence_guidance.pooling.exponents" not in model.state_dict()  # from the config, not the checkpoint


# ----------------------------------------------------------------------------- heads


def test_neck_init_is_normal_around_one_or_ones():
    torch.manual_seed(0)
    model = build_model(small(backbone={"name": "resnet50", "pretrained": None}, neck_init="normal"), CLASSES)
    for neck in (model.head, model.frame_head):
        w = neck.bn.weight.detach()
        assert abs(float(w.mean()) - 1) < 2e-3 and 0.008 < float(w.std()) < 0.012
        assert not neck.bn.bias.requires_grad and float(neck.bn.bias.abs().max()) == 0
        assert neck.classifier.bias is None and 0.0008 < float(neck.classifier.weight.detach().std()) < 0.0012
    assert torch.equal(build_model(small(neck_init="ones"), CLASSES).head.bn.weight, torch.ones(512))


# ----------------------------------------------------------------------------- style


def test_released_augmentation_scales_each_normalised_frame_on_its_own():
    aug = StyleAugmentation(StyleConfig(augment_space="normalised", augment_per="frame"))
    frames = torch.randn(2, 4, 3, 5, 3, dtype=torch.float64)
    visible = torch.tensor([False, True])
    drawn = []
    aug.colour_maps = lambda v: drawn.append(StyleAugmentation.colour_maps(aug, v)) or drawn[-1].double()
    out = aug(frames, visible)
    maps = drawn[0].double().view(2, 4, 3, 3)
    assert drawn[0].shape == (8, 3, 3)  # one draw per frame
    for t in range(4):
        delta = maps[0, t, 0, 0]
        assert torch.equal(maps[0, t], delta * torch.eye(3, dtype=torch.float64)) and 0.5 <= delta <= 1.5
        assert torch.equal(out[0, t], frames[0, t] * delta)  # infrared: the normalised frame x delta
        perm = maps[1, t].abs().argmax(dim=1)
        gains = maps[1, t][torch.arange(3), perm]
        assert sorted(perm.tolist()) == [0, 1, 2] and ((gains >= 0.5) & (gains <= 1.5)).all()
        assert torch.equal(out[1, t], frames[1, t][perm] * gains.view(3, 1, 1))  # channel gains, then permuted
    assert len({float(maps[0, t, 0, 0]) for t in range(4)}) == 4


def test_raw_per_tracklet_augmentation_changes_raw_intensities_alike_in_every_frame():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    aug = StyleAugmentation(StyleConfig(augment_space="raw", augment_per="tracklet"))
    raw = torch.rand(2, 2, 3, 4, 3)
    m_, s_ = torch.tensor(mean).view(1, 1, 3, 1, 1), torch.tensor(std).view(1, 1, 3, 1, 1)
    visible = torch.tensor([False, True])
    torch.manual_seed(5)
    maps = aug.colour_maps(visible)
    torch.manual_seed(5)
    out = aug((raw - m_) / s_, visible) * s_ + m_
    torch.testing.assert_close(out[0], raw[0] * maps[0, 0, 0])
    perm = maps[1].abs().argmax(dim=1)
    torch.testing.assert_close(out[1], raw[1][:, perm] * maps[1][torch.arange(3), perm].view(1, 3, 1, 1))


def test_released_adain_uses_unbiased_std_plus_1e6_and_lets_gradients_reach_the_partner():
    content = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    style = (3 * torch.randn(3, 4, 5, 6, dtype=torch.float64) + 2).requires_grad_(True)
    flat_c, flat_s = content.flatten(2), style.flatten(2)
    sigma_c = flat_c.std(dim=2, unbiased=True)[..., None, None] + 1e-6
    sigma_s = flat_s.std(dim=2, unbiased=True)[..., None, None] + 1e-6
    mu_c, mu_s = flat_c.mean(dim=2)[..., None, None], flat_s.mean(dim=2)[..., None, None]
    out = adain(content, style)
    torch.testing.assert_close(out, sigma_s * (content - mu_c) / sigma_c + mu_s, rtol=1e-14, atol=1e-14)
    out.square().sum().backward()
    assert style.grad is not None and style.grad.abs().sum() > 0
    biased = adain(content, style, unbiased=False, detach_style=True)
    var_s = flat_s.var(dim=2, unbiased=False)[..., None, None]
    var_c = flat_c.var(dim=2, unbiased=False)[..., None, None]
    torch.testing.assert_close(biased, (var_s + 1e-5).sqrt() * (content - mu_c) / (var_c + 1e-5).sqrt() + mu_s)
    assert not biased.requires_grad


def test_random_partners_pair_within_or_across_groups_without_data_dependent_shapes():
    torch.manual_seed(0)
    group = torch.tensor([True] * 6 + [False] * 6)
    for _ in range(5):
        same, cross = random_partners(group, True), random_partners(group, False)
        assert torch.equal(group[same], group) and sorted(same.tolist()) == list(range(12))
        assert torch.equal(group[cross], ~group) and sorted(cross.tolist()) == list(range(12))
    single = random_partners(torch.tensor([True, True, True]), False)
    assert sorted(single.tolist()) == [0, 1, 2]  # one modality only: a shuffle inside it
    assert partner_frames(torch.tensor([1, 0]), 3).tolist() == [3, 4, 5, 0, 1, 2]


@pytest.mark.parametrize("per_frame", [True, False])
def test_partners_are_drawn_per_frame_or_per_tracklet(per_frame):
    torch.manual_seed(1)
    disturbance = StyleDisturbance(StyleConfig(partners_per="frame" if per_frame else "tracklet"))
    visible = torch.tensor([True, True, False, False])
    partners = disturbance.partners(visible, 6, same_modality=False)
    frame_visible = visible.repeat_interleave(6)
    assert torch.equal(frame_visible[partners], ~frame_visible)
    same_position = bool((partners % 6 == torch.arange(24) % 6).all())
    assert same_position == (not per_frame)  # per tracklet: frame t with the partner's frame t


@pytest.mark.parametrize("source", ["disturbed", "clean"])
def test_cross_modality_style_comes_from_the_chosen_maps(source):
    disturbance = StyleDisturbance(StyleConfig(cross_source=source, adain_std="unbiased", adain_detach_style=False))
    partners = torch.tensor([2, 3, 0, 1])
    disturbance.partners = lambda visible, t, same_modality: partners
    clean, disturbed = torch.randn(4, 3, 4, 2, dtype=torch.float64), torch.randn(4, 3, 4, 2, dtype=torch.float64)
    out = disturbance.cross_modality(clean, disturbed, torch.tensor([True, False]), 2)
    style = (disturbed if source == "disturbed" else clean)[partners]
    torch.testing.assert_close(out, adain(disturbed, style), rtol=0, atol=0)


@pytest.mark.parametrize("branches", ["separate", "joint"])
def test_separate_branches_keep_the_clean_maps_of_an_undisturbed_pass(branches):
    """Separate batches: BatchNorm normalises the clean branch by its own statistics (the release)."""
    model = build_model(small(style={"branch_batches": branches}, sequence={"enabled": False}), CLASSES).double()
    frames, _, modality = batch(dtype=torch.float64)
    x, visible = frames.flatten(0, 1), modality == 1
    torch.manual_seed(0)
    clean, disturbed = model._backbone(x, visible, T)
    disturbance, model.style_disturbance = model.style_disturbance, None
    undisturbed, _ = model._backbone(x, visible, T)
    model.style_disturbance = disturbance
    assert disturbed is not None and disturbed.shape == clean.shape
    assert torch.equal(clean, undisturbed) == (branches == "separate")


# ----------------------------------------------------------------------------- presets


def _release_cfg(name: str) -> ModelConfig:
    cfg = load_config(CONFIGS / "hitsz_vcm" / name).model
    return dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, pretrained=None))


def test_release_preset_sets_every_released_value():
    cfg = _release_cfg("star_release.yaml")
    assert (cfg.style.augment_space, cfg.style.augment_per, cfg.style.partners_per) == ("normalised", "frame", "frame")
    assert (cfg.style.adain_std, cfg.style.adain_detach_style, cfg.style.cross_source) == (
        "unbiased",
        False,
        "disturbed",
    )
    assert cfg.style.branch_batches == "separate" and cfg.neck_init == "normal"
    assert dataclasses.astuple(cfg.skeleton) == ("atan2", "keep", False, "last_output")
    assert cfg.frame_correction.offset == 1e-3
    seq = cfg.sequence
    assert (seq.spatial_edges, seq.readout, seq.pose_classifier_bias) == ("first_frame", "avg_pool", True)
    assert (seq.dropout, seq.attention_dropout, seq.visual_nodes) == (0.3, 0.6, False)
    assert (cfg.pooling.exponents, cfg.pooling.eps, cfg.pooling.floor) == (EXPONENTS, 0.0, 1e-12)
    assert load_config(CONFIGS / "hitsz_vcm" / "star_release.yaml").loss.consistency_weight == 0
    base = _release_cfg("baseline_release.yaml")
    assert not base.frame_correction.enabled and not base.sequence.enabled
    assert (base.pooling.unguided, base.pooling.unguided_exponent, base.pooling.floor) == ("gem", 3.0, 1e-12)


def _released_embedding(model: STAR, frames, kpts, visible) -> torch.Tensor:
    """The released eval embedding composed from the stated formulas, on the model's weights."""
    b, t = frames.shape[:2]
    net = model.backbone
    x = frames.flatten(0, 1)
    frame_visible = visible.repeat_interleave(t).view(-1, 1, 1, 1)
    x = torch.where(frame_visible, net.visible_stem(x), net.infrared_stem(x))
    f = net.layer4(net.layer3(net.layer2(net.layer1(x)))).mean(dim=(2, 3)).view(b, t, -1)
    # Bones: [||v||, atan2(v_y, v_x)] per bone, v = p_j - p_i; Linear; BiLSTM; h_T = H[:, -1].
    i, j = torch.tensor(star_ext.COCO_BONES).T
    v = kpts[:, :, j, :2] - kpts[:, :, i, :2]
    e = torch.stack([v.norm(dim=-1), torch.atan2(v[..., 1], v[..., 0])], dim=-1).flatten(2)
    enc = model.skeleton_encoder
    h_seq = enc.lstm(enc.embed(e))  # the BiLSTM module returns the output sequence H
    h_t = h_seq[:, -1]
    fc = model.frame_correction
    e_o = fc.skeleton_queries(h_seq, f, f)[0]
    e_s = fc.frame_queries(f, h_seq, h_seq)[0]
    f_corr = fc.ffn(torch.cat([e_o, e_s], dim=-1)) + f + 1e-3
    # GAT (GATConv formula, dense) on the first-frame-only graph; ELU; adaptive average pool.
    graph = model.sequence_guidance.graph
    num_nodes = t * 17
    adj = torch.eye(num_nodes, dtype=torch.bool)
    for a, c in star_ext.COCO_BONES:
        adj[a, c] = adj[c, a] = True
    for n in range(num_nodes - 17):
        adj[n, n + 17] = adj[n + 17, n] = True
    nodes = kpts.reshape(b, num_nodes, 3)
    for layer in (graph.gat1, graph.gat2):
        h = layer.lin(nodes).view(b, num_nodes, layer.heads, layer.out_dim)
        logits = F.leaky_relu((h * layer.att_dst).sum(-1)[:, :, None] + (h * layer.att_src).sum(-1)[:, None], 0.2)
        alpha = logits.masked_fill(~adj[None, :, :, None], float("-inf")).softmax(dim=2)
        out = torch.einsum("bijk,bjkd->bikd", alpha, h)
        out = out.flatten(2) if layer.concat else out.mean(dim=2)
        nodes = F.elu(out + layer.bias)
    g = F.adaptive_avg_pool1d(nodes.flatten(1).unsqueeze(1), model.feature_dim).squeeze(1)
    sg = model.sequence_guidance
    s = sg.guide_bn(torch.cat([h_t, g], dim=1))
    weights = sg.pooling.score(s).view(b, len(EXPONENTS), -1).softmax(dim=1)
    z = (weights * torch.stack([_gem(f_corr, p) for p in EXPONENTS], dim=1)).sum(dim=1)
    return F.normalize(model.head.bn(z), dim=1)


def test_release_preset_eval_embedding_equals_the_released_formulas_end_to_end():
    cfg = _release_cfg("star_release.yaml")
    cfg = dataclasses.replace(cfg, seq_len=T, backbone=dataclasses.replace(cfg.backbone, name="resnet18"))
    torch.manual_seed(0)
    model = STAR(cfg, CLASSES).double().eval()
    frames, kpts, modality = batch(dtype=torch.float64)
    with torch.no_grad():
        # Non-trivial running statistics of every BN layer (eval mode uses them).
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
        emb = model(frames, kpts, modality)
        expected = _released_embedding(model, frames, kpts, modality == 1)
    torch.testing.assert_close(emb, expected, rtol=1e-10, atol=1e-12)


def test_release_presets_build_and_run_a_training_step():
    for name in ("star_release.yaml", "baseline_release.yaml"):
        cfg = _release_cfg(name)
        cfg = dataclasses.replace(cfg, seq_len=T, backbone=dataclasses.replace(cfg.backbone, name="resnet18"))
        model = STAR(cfg, CLASSES).train()
        out = model(*batch())
        assert out.f_dis is not None and torch.isfinite(out.z).all()
        assert (out.g is not None) == (name == "star_release.yaml")


# ----------------------------------------------------------------------------- old checkpoints


def test_checkpoints_before_the_switches_rebuild_the_model_they_were_trained_with():
    model_cfg = dataclasses.asdict(ModelConfig())
    model_cfg["pooling"]["eps"] = 1e-6  # written out by every version 2 file (its default then)
    for section, values in PRE_V3_MODEL_SWITCHES.items():  # what a version 2 file's config lacks
        if isinstance(values, dict):
            for key in values:
                model_cfg[section].pop(key)
        else:
            model_cfg.pop(section)
    state = {"version": 2, "num_classes": 3, "config": {"model": model_cfg}, "model": {PRE_V3_EXPONENT_BUFFER: 1}}
    upgraded = _upgrade(state, Path("old.pt"), 2)
    cfg = ModelConfig.from_dict(upgraded["config"]["model"])
    assert cfg.skeleton.angle == "cos_sin" and cfg.sequence.readout == "linear" and cfg.style.adain_detach_style
    assert cfg.pooling.floor == 0.0 and cfg.frame_correction.offset == 0.0
    assert PRE_V3_EXPONENT_BUFFER not in upgraded["model"]


def test_version_2_bone_embedding_gives_the_same_embedding_after_the_upgrade():
    """Before version 3 the bone encoding listed all lengths, then all cos, then all sin
    (feature-major); it is bone-major now, so the upgrade moves the embedding's columns."""
    keypoints = torch.rand(2, 4, 17, 3, dtype=torch.float64)
    encoding = BoneEncoding("cos_sin", zero_undetected=True, aspect_scale=True)  # the only encoding before v3
    e = bone_geometry(keypoints, star_ext.COCO_BONES, 0.5, encoding)  # [2, 4, 19 * 3], bone-major
    feature_major = e.unflatten(-1, (-1, 3)).transpose(-1, -2).flatten(-2)
    old_weight = torch.randn(8, e.shape[-1], dtype=torch.float64)
    state = {"version": 2, "num_classes": 3, "config": {"model": {}}, "model": {PRE_V3_BONE_EMBEDDING: old_weight}}
    new_weight = _upgrade(state, Path("old.pt"), 2)["model"][PRE_V3_BONE_EMBEDDING]
    torch.testing.assert_close(e @ new_weight.t(), feature_major @ old_weight.t(), rtol=1e-12, atol=1e-12)
    assert not torch.equal(new_weight, old_weight)


@pytest.mark.parametrize("length,bins", [(2448, 2048), (2448, 512), (10, 3), (7, 7), (5, 8)])
def test_readout_bins_equal_adaptive_avg_pool1d(length, bins):
    from star.models.keypoint_graph import adaptive_average_bins

    index, weight = adaptive_average_bins(length, bins)
    x = torch.randn(3, length, dtype=torch.float64)
    expected = F.adaptive_avg_pool1d(x.unsqueeze(1), bins).squeeze(1)
    torch.testing.assert_close((x[:, index] * weight).sum(-1), expected, rtol=1e-14, atol=1e-14)
