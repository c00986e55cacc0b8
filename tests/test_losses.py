"""Tests of star.losses: triplet vs a loop, consistency, defence, the switchable weighted sum."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from star.losses import (
    TERMS,
    LossConfig,
    StarLoss,
    batch_hard_triplet_loss,
    compute_losses,
    defence_loss,
    skeleton_consistency_loss,
)
from star.models import StarOutput

B, T, C, K = 8, 3, 6, 4
PIDS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def loop_triplet(x: torch.Tensor, pids: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet written anchor by anchor."""
    losses = []
    for a in range(len(x)):
        pos = [torch.dist(x[a], x[p]) for p in range(len(x)) if p != a and pids[p] == pids[a]]
        neg = [torch.dist(x[a], x[n]) for n in range(len(x)) if pids[n] != pids[a]]
        if pos and neg:
            losses.append(torch.relu(max(pos) - min(neg) + margin))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_matches_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 5, generator=gen, dtype=torch.float64)
    pids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])  # pid 3 has no positive: left out
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = batch_hard_triplet_loss(x1, pids, margin=0.3)
    want = loop_triplet(x2, pids, 0.3)
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_triplet_is_zero_when_identities_are_separated_by_the_margin():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0]], requires_grad=True)
    loss = batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1]), margin=0.3)
    assert loss.item() == 0.0
    loss.backward()  # still a graph: no error
    assert batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1]), margin=10.0).item() > 0


def test_triplet_without_valid_anchor_is_zero():
    x = torch.randn(3, 4, requires_grad=True)
    assert batch_hard_triplet_loss(x, torch.tensor([0, 0, 0]), margin=0.3).item() == 0.0
    with pytest.raises(ValueError, match="features must be"):
        batch_hard_triplet_loss(x, torch.tensor([0, 0]))


def test_consistency_zero_when_codes_match_and_equals_formula():
    h = torch.randn(5, 7)
    assert skeleton_consistency_loss(h, h.clone(), tau=2.0).abs().item() < 1e-6
    g = torch.randn(5, 7)
    tau = 2.0
    p, q = F.softmax(h / tau, dim=1), F.softmax(g / tau, dim=1)
    want = (p * (p.log() - q.log())).sum(dim=1).mean() * tau**2
    torch.testing.assert_close(skeleton_consistency_loss(h, g, tau), want)
    assert skeleton_consistency_loss(h, g, tau) > 0
    with pytest.raises(ValueError, match="tau must be > 0"):
        skeleton_consistency_loss(h, g, 0.0)


def test_defence_loss_is_mean_frame_distance():
    f = torch.zeros(2, 3, 4)
    f_dis = torch.zeros(2, 3, 4)
    f_dis[0, 0, 0] = 3.0
    f_dis[1, 2, 1:3] = 4.0
    assert defence_loss(f, f_dis).item() == pytest.approx((3.0 + math.sqrt(32.0)) / 6)


def fake_output(seed: int = 0, **none_fields) -> StarOutput:
    gen = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=gen).requires_grad_()

    out = StarOutput(
        z=r(B, C),
        logits=r(B, K),
        frame_logits=r(B, T, K),
        f=r(B, T, C),
        frame_logits_dis=r(B, T, K),
        f_dis=r(B, T, C),
        h_t=r(B, C),
        g=r(B, C),
        s=r(B, 2 * C),
        pose_logits=r(B, K),
    )
    for name in none_fields:
        setattr(out, name, None)
    return out


ALL_TERMS = ["id", "triplet", "frame_id", "frame_id_dis", "defence", "pose", "consistency"]


def test_total_is_weighted_sum_of_named_terms():
    out = fake_output()
    cfg = LossConfig(id_weight=1.5, triplet_weight=0.5, pose_weight=0.25, consistency_weight=2.0)
    total, tensors = compute_losses(out, PIDS, cfg)
    assert list(tensors) == ALL_TERMS + ["total"]
    # detached 0-d float32 tensors on the loss's device: the caller decides when to copy them to the host
    assert all(v.shape == () and v.dtype == torch.float32 and not v.requires_grad for v in tensors.values())
    terms = {k: float(v) for k, v in tensors.items()}
    weights = dict(id=1.5, triplet=0.5, frame_id=1.0, frame_id_dis=1.0, defence=1.0, pose=0.25, consistency=2.0)
    assert terms["total"] == pytest.approx(sum(weights[k] * terms[k] for k in weights), rel=1e-6)
    assert total.item() == pytest.approx(terms["total"], rel=1e-6)
    torch.testing.assert_close(tensors["id"], F.cross_entropy(out.logits, PIDS).detach())
    torch.testing.assert_close(
        tensors["frame_id_dis"],
        F.cross_entropy(out.frame_logits_dis.flatten(0, 1), PIDS.repeat_interleave(T)).detach(),
    )


@pytest.mark.parametrize("term", list(TERMS))
def test_each_term_switches_off(term):
    out = fake_output()
    full_total, full = compute_losses(out, PIDS)
    weight_field = TERMS[term][0]
    total, terms = compute_losses(out, PIDS, LossConfig(**{weight_field: 0.0}))
    dropped = {"frame_id": ["frame_id", "frame_id_dis"]}.get(term, [term])
    assert set(full) - set(terms) == set(dropped)
    assert total.item() == pytest.approx(full_total.item() - sum(float(full[d]) for d in dropped), rel=1e-5)
    # The switched-off term's inputs get no gradient from it.
    total.backward()
    only_input = {"id": "logits", "pose": "pose_logits", "consistency": "g"}.get(term)
    if only_input is not None:
        assert getattr(out, only_input).grad is None


def test_missing_model_part_with_active_term_is_a_clear_error():
    out = fake_output(g=None, h_t=None, s=None, pose_logits=None)
    with pytest.raises(ValueError, match=r"'pose' has weight 1.0 .* no pose_logits; set loss.pose_weight=0"):
        compute_losses(out, PIDS)
    total, terms = compute_losses(out, PIDS, LossConfig(pose_weight=0, consistency_weight=0))
    assert "pose" not in terms and "consistency" not in terms and math.isfinite(terms["total"])


def test_without_disturbance_frame_term_uses_clean_frames_only():
    out = fake_output(f_dis=None, frame_logits_dis=None)
    with pytest.raises(ValueError, match="'defence' .* no f_dis"):
        compute_losses(out, PIDS)
    _, terms = compute_losses(out, PIDS, LossConfig(defence_weight=0))
    assert "frame_id" in terms and "frame_id_dis" not in terms


def test_label_smoothing_changes_cross_entropies_only():
    out = fake_output()
    _, plain = compute_losses(out, PIDS)
    _, smooth = compute_losses(out, PIDS, LossConfig(label_smoothing=0.1))
    for name in ("id", "frame_id", "frame_id_dis", "pose"):
        assert smooth[name] != pytest.approx(plain[name]), name
    for name in ("triplet", "defence", "consistency"):
        assert smooth[name] == pytest.approx(plain[name]), name


def test_star_loss_module_and_bad_calls():
    out = fake_output()
    total, terms = StarLoss(LossConfig(triplet_margin=0.5))(out, PIDS)
    assert float(terms["total"]) == pytest.approx(total.item(), rel=1e-6)
    with pytest.raises(TypeError, match="StarOutput of a model in training mode"):
        compute_losses(torch.randn(B, C), PIDS)
    with pytest.raises(ValueError, match=r"pids must have shape \[B\] = \[8\]"):
        compute_losses(out, PIDS[:4])
    with pytest.raises(ValueError, match="every loss term is switched off"):
        compute_losses(out, PIDS, LossConfig(**{field: 0 for field, _, _ in TERMS.values()}))


def test_loss_config_from_dict_and_validation():
    assert LossConfig.from_dict({"pose_weight": 0.5}).pose_weight == 0.5
    with pytest.raises(ValueError, match="unknown config key.*pose_wieght.*valid keys: id_weight"):
        LossConfig.from_dict({"pose_wieght": 0.5})
