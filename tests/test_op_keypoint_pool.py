"""keypoint_pool: kernels vs the reference, gradients, bad input (the checks every op gets:
test_op_common.py)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from op_cases import (
    DEVICES,
    LOW_PRECISION,
    TOLERANCES,
    assert_close_scaled,
    assert_matches_reference,
    assert_same_non_finite,
    leaf,
)
from op_cases import keypoint_pool_inputs as make_inputs
from star_ext import reference

op = torch.ops.star.keypoint_pool
SHAPES = [(3, 5, 7, 4, 17), (1, 1, 1, 1, 1), (2, 6, 18, 9, 3), (4, 3, 5, 5, 2)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sigma", [0.05, 0.3])
def test_matches_reference_forward_and_backward(device, dtype, shape, sigma):
    inputs = [leaf(t) for t in make_inputs(*shape, dtype=dtype, device=device)]
    assert_matches_reference(
        op, reference.keypoint_pool, inputs, (sigma, 1e-6), dtype=dtype, grad_close=assert_close_scaled
    )


def test_large_feature_gradient_matches_reference():
    """A 34 MB float32 feature gradient: the size at which the CPU kernel advises huge pages
    for it (csrc/cpu/huge_pages.h); the values must not change."""
    feat, kpts = (leaf(t) for t in make_inputs(32, 1024, 16, 16, 17, dtype=torch.float32))
    assert feat.nbytes >= 32 << 20
    assert_matches_reference(
        op, reference.keypoint_pool, [feat, kpts], (0.1, 1e-6), dtype=torch.float32, grad_close=assert_close_scaled
    )


@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_inputs(device):
    feat, kpts = make_inputs(3, 8, 6, 5, 4, device=device)
    feat_nc = feat.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels-last strides
    kpts_nc = kpts.transpose(0, 1).contiguous().transpose(0, 1)
    assert not feat_nc.is_contiguous() and not kpts_nc.is_contiguous()
    torch.testing.assert_close(op(feat_nc, kpts_nc, 0.2, 1e-6), reference.keypoint_pool(feat, kpts, 0.2))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch_and_empty_maps(device):
    feat, kpts = make_inputs(0, 4, 3, 3, 5, device=device)
    feat, kpts = leaf(feat), leaf(kpts)
    out = op(feat, kpts, 0.2, 1e-6)
    assert out.shape == (0, 5, 4)
    out.sum().backward()
    assert feat.grad.shape == feat.shape and kpts.grad.shape == kpts.shape
    feat, kpts = make_inputs(2, 4, 0, 3, 5, device=device)
    assert torch.equal(op(feat, kpts, 0.2, 1e-6), torch.zeros(2, 5, 4, dtype=feat.dtype, device=device))


def test_confidence_scales_and_zero_confidence_gives_zero():
    feat, kpts = make_inputs(2, 4, 6, 3, 3)
    kpts[:, 0, 2] = 0.0
    kpts[:, 1, 2] = 0.5
    out = op(feat, kpts, 0.2, 1e-6)
    assert torch.all(out[:, 0] == 0)
    full = kpts.clone()
    full[:, 1, 2] = 1.0
    torch.testing.assert_close(out[:, 1] * 2, op(feat, full, 0.2, 1e-6)[:, 1])


def test_small_sigma_picks_the_nearest_cell():
    feat = torch.arange(2 * 4 * 3, dtype=torch.float64).view(1, 2, 4, 3)
    # Cell (h=2, w=1) has centre u = 1.5 / 3 = 0.5, v = 2.5 / 4 = 0.625.
    kpts = torch.tensor([[[0.5, 0.625, 1.0]]], dtype=torch.float64)
    out = op(feat, kpts, 0.01, 0.0)
    torch.testing.assert_close(out[0, 0], feat[0, :, 2, 1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("need", [(True, False), (False, True)])
def test_gradient_of_one_input_only(device, need):
    feat, kpts = make_inputs(2, 3, 5, 4, 3, device=device)
    feat, kpts = leaf(feat, need[0]), leaf(kpts, need[1])
    out = op(feat, kpts, 0.25, 1e-6)
    out.sum().backward()
    assert (feat.grad is not None) == need[0] and (kpts.grad is not None) == need[1]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_low_precision(device, dtype):
    feat, kpts = make_inputs(3, 5, 6, 4, 4, dtype=torch.float64, device=device)
    out = op(feat.to(dtype), kpts.to(dtype), 0.2, 1e-6)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), reference.keypoint_pool(feat, kpts, 0.2), **TOLERANCES[dtype])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 3),
    c=st.integers(1, 6),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    k=st.integers(0, 5),
    sigma=st.floats(0.02, 2.0),
    seed=st.integers(0, 2**16),
)
def test_fuzz_against_reference(n, c, h, w, k, sigma, seed):
    inputs = [leaf(t) for t in make_inputs(n, c, h, w, k, seed=seed)]
    assert_matches_reference(op, reference.keypoint_pool, inputs, (sigma, 1e-6))


@pytest.mark.parametrize(
    "feat_shape, kpts_shape, kwargs, error, message",
    [
        ((2, 3, 4), (2, 5, 3), {}, RuntimeError, r"feat must be a 4-D tensor \[N, C, H, W\]"),
        ((2, 3, 4, 4), (2, 5), {}, RuntimeError, r"kpts must be a 3-D tensor \[N, K, 3\]"),
        ((2, 3, 4, 4), (2, 5, 2), {}, RuntimeError, r"kpts must hold \(x, y, conf\)"),
        ((2, 3, 4, 4), (3, 5, 3), {}, RuntimeError, r"kpts has 3 samples but feat has 2"),
        ((2, 3, 4, 4), (2, 5, 3), {"sigma": 0.0}, ValueError, r"sigma must be a positive finite number"),
        ((2, 3, 4, 4), (2, 5, 3), {"sigma": float("nan")}, ValueError, r"sigma must be a positive"),
        ((2, 3, 4, 4), (2, 5, 3), {"eps": -1.0}, ValueError, r"eps must be a non-negative"),
        ((2, 3, 4, 4), (2, 5, 3), {"kpts_dtype": torch.float64}, RuntimeError, r"kpts must have the dtype of feat"),
        ((2, 3, 4, 4), (2, 5, 3), {"feat_dtype": torch.int64}, RuntimeError, r"feat must be a floating-point"),
    ],
)
def test_bad_input_names_the_argument(feat_shape, kpts_shape, kwargs, error, message):
    feat = torch.ones(feat_shape, dtype=kwargs.get("feat_dtype", torch.float32))
    kpts = torch.ones(
        kpts_shape, dtype=kwargs.get("kpts_dtype", feat.dtype if feat.is_floating_point() else torch.float32)
    )
    if not feat.is_floating_point():
        kpts = kpts.to(feat.dtype)
    with pytest.raises(error, match=message):
        op(feat, kpts, kwargs.get("sigma", 0.2), kwargs.get("eps", 1e-6))


def test_backward_op_checks_grad_out_shape():
    feat, kpts = make_inputs(2, 3, 4, 4, 5)
    with pytest.raises(RuntimeError, match=r"grad_out must have the output's shape"):
        torch.ops.star.keypoint_pool_backward(
            torch.ones(2, 5, 4, dtype=feat.dtype), feat, kpts, 0.2, 1e-6, [True, True]
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("where", ["feat", "x", "y", "conf"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_inputs_propagate_as_the_reference(device, dtype, where, value):
    # An infinite confidence gave NaN where the reference gave +-inf: both now
    # scale the normalised map by conf before the sum (docs/ops.md).
    feat, kpts = make_inputs(2, 3, 5, 4, 3, dtype=dtype, device=device)
    if where == "feat":
        feat[0, 1, 2, 3] = value
    else:
        kpts[0, 1, "xyc".index(where[0])] = value
    out = op(feat, kpts, 0.3, 1e-6)
    assert_same_non_finite(out, reference.keypoint_pool(feat, kpts, 0.3, 1e-6))
    assert torch.isfinite(out[1]).all()
    if value != value:
        assert torch.isnan(out[0, :, 1] if where == "feat" else out[0, 1]).all()
