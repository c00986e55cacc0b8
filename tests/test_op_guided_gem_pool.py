"""guided_gem_pool: kernels vs the reference, stability, gradients, bad input (the checks every op
gets: test_op_common.py; here with the floor too)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import star_ext
from op_cases import (
    DEVICES,
    LOW_PRECISION,
    STAR_P,
    TOLERANCES,
    assert_compiled_matches_eager,
    assert_matches_reference,
    assert_same_non_finite,
    grads,
    leaf,
    opcheck_with_and_without_grad,
)
from op_cases import guided_gem_pool_inputs as make_inputs
from star_ext import reference

op = torch.ops.star.guided_gem_pool


def gem(x, p):
    """Plain generalized mean in float64, the textbook formula."""
    return (x.double().clamp(min=1e-6) ** p).mean(dim=1) ** (1.0 / p)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 12, 33), (1, 1, 1), (2, 5, 7), (4, 2, 2049)])
def test_matches_reference_forward_and_backward(device, dtype, shape):
    inputs = [leaf(t) for t in make_inputs(*shape, dtype=dtype, device=device)]
    assert_matches_reference(op, reference.guided_gem_pool, inputs, (1e-6,), dtype=dtype)


def test_reference_is_the_textbook_formula():
    x, weight, p = make_inputs(2, 6, 5)
    expected = sum(weight[:, i] * gem(x, float(p[i])) for i in range(len(p)))
    torch.testing.assert_close(reference.guided_gem_pool(x, weight, p), expected)
    torch.testing.assert_close(op(x, weight, p, 1e-6), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_stable_for_large_exponents_and_values_in_float32(device):
    # x up to 1e3 with p = 10: x ** p = 1e30 per frame, near float32's limit once summed naively.
    x, weight, _ = make_inputs(2, 12, 64, dtype=torch.float64, device=device, low=0.0, high=1e3)
    p = torch.tensor([0.5, 1.0, 4.0, 10.0, 12.0], dtype=torch.float64, device=device)
    x32, w32, p32 = (leaf(t.float()) for t in (x, weight, p))
    out = op(x32, w32, p32, 1e-6)
    expected = sum(weight[:, i] * gem(x, float(p[i])) for i in range(len(p)))
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-3)
    out.sum().backward()
    for g in (x32.grad, w32.grad, p32.grad):
        assert torch.isfinite(g).all()
    ref32 = reference.guided_gem_pool(x.float(), weight.float(), p.float())
    torch.testing.assert_close(ref32.double(), expected, rtol=1e-4, atol=1e-3)


def test_values_below_eps_are_clamped_and_get_no_gradient():
    x, weight, p = make_inputs(2, 4, 3)
    x[0, 1, :] = -2.0
    x[1, 2, 0] = 0.0
    x = leaf(x)
    out = op(x, weight, p, 1e-3)
    torch.testing.assert_close(out, reference.guided_gem_pool(x.detach(), weight, p, 1e-3))
    out.sum().backward()
    assert torch.all(x.grad[0, 1] == 0) and x.grad[1, 2, 0] == 0
    assert torch.all(x.grad[0, 0] != 0)


def test_negative_exponent_matches_reference():
    inputs = [leaf(t) for t in make_inputs(2, 5, 4, p=(-1.0, 2.0))]
    assert_matches_reference(op, reference.guided_gem_pool, inputs, (1e-6,))


def test_exponents_in_another_dtype_get_gradients_in_their_dtype():
    x, weight, p = make_inputs(2, 5, 4, dtype=torch.float32)
    p = leaf(p.double())
    out = op(x, weight, p, 1e-6)
    (grad_p,) = torch.autograd.grad(out.sum(), [p])
    assert grad_p.dtype == torch.float64
    p_ref = leaf(p)
    expected = torch.autograd.grad(reference.guided_gem_pool(x.double(), weight.double(), p_ref).sum(), [p_ref])[0]
    torch.testing.assert_close(grad_p, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_and_empty(device):
    x, weight, p = make_inputs(3, 6, 5, device=device)
    x_nc = x.transpose(1, 2).contiguous().transpose(1, 2)
    w_nc = weight.transpose(0, 2).contiguous().transpose(0, 2)
    torch.testing.assert_close(op(x_nc, w_nc, p, 1e-6), reference.guided_gem_pool(x, weight, p))
    x0, w0, p0 = (leaf(t) for t in make_inputs(0, 6, 5, device=device))
    out = op(x0, w0, p0, 1e-6)
    assert out.shape == (0, 5)
    out.sum().backward()
    assert p0.grad is not None and torch.all(p0.grad == 0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_low_precision(device, dtype):
    x, weight, p = make_inputs(3, 12, 17, device=device)
    out = op(x.to(dtype), weight.to(dtype), p.float(), 1e-6)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), reference.guided_gem_pool(x, weight, p), **TOLERANCES[dtype])


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(0, 3),
    t=st.integers(1, 13),
    c=st.integers(1, 9),
    p=st.lists(st.floats(0.3, 9.0), min_size=0, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_fuzz_against_reference(b, t, c, p, seed):
    inputs = [leaf(v) for v in make_inputs(b, t, c, p=tuple(p), seed=seed)]
    assert_matches_reference(op, reference.guided_gem_pool, inputs, (1e-6,))


@pytest.mark.parametrize(
    "x_shape, w_shape, p_values, eps, error, message",
    [
        ((2, 12), (2, 5, 12), STAR_P, 1e-6, RuntimeError, r"x must be a 3-D tensor \[B, T, C\]"),
        ((2, 4, 8), (2, 5, 7), STAR_P, 1e-6, RuntimeError, r"weight must have shape \[B, P, C\]"),
        ((2, 4, 8), (2, 4, 8), STAR_P, 1e-6, RuntimeError, r"weight has 4 exponent slots but p has 5"),
        ((2, 0, 8), (2, 5, 8), STAR_P, 1e-6, RuntimeError, r"x must hold at least one frame"),
        ((2, 4, 8), (2, 2, 8), (1.0, 0.0), 1e-6, ValueError, r"p\[1\] = 0 is outside the supported range"),
        ((2, 4, 8), (2, 2, 8), (1.0, float("inf")), 1e-6, ValueError, r"p\[1\] = inf is outside"),
        ((2, 4, 8), (2, 5, 8), STAR_P, -1e-6, ValueError, r"eps must be a non-negative finite number"),
        ((2, 4, 8), (2, 5, 8), STAR_P, float("nan"), ValueError, r"eps must be a non-negative finite number"),
    ],
)
def test_bad_input_names_the_argument(x_shape, w_shape, p_values, eps, error, message):
    with pytest.raises(error, match=message):
        op(torch.ones(x_shape), torch.ones(w_shape), torch.tensor(p_values), eps)


def test_bad_dtypes_name_the_argument():
    x, weight, p = make_inputs(2, 4, 3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="weight must have the dtype of x"):
        op(x, weight.double(), p, 1e-6)
    with pytest.raises(RuntimeError, match="p must be a floating-point tensor"):
        op(x, weight, torch.tensor([1, 2, 3, 4, 5]), 1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("exponents", [(1.0, 3.0), (-1.0, 2.0), (-0.5,)], ids=["positive", "mixed", "negative"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_x_propagates_as_the_reference(device, dtype, exponents, value):
    # Before the fix, NaN gave a finite number, an all-NaN column 1e-6, +inf 1.5e38.
    x, weight, p = make_inputs(3, 5, 4, p=exponents, dtype=dtype, device=device)
    x[0, 1, 0] = value  # one frame of a column
    x[1, :, 2] = value  # every frame of a column
    out = op(x, weight, p, 1e-6)
    expected = reference.guided_gem_pool(x, weight, p)
    if value != value:
        assert torch.isnan(out[0, 0]) and torch.isnan(out[1, 2])
    elif value > 0:
        assert torch.isposinf(out[1, 2])
        assert torch.isposinf(out[0, 0]) == (max(exponents) > 0)  # one p > 0 term is +inf
    assert_same_non_finite(out, expected)
    assert torch.isfinite(out[2]).all()  # other samples are untouched


@pytest.mark.parametrize("device", DEVICES)
def test_nan_gradient_stays_in_its_column(device):
    x, weight, p = make_inputs(2, 4, 3, device=device)
    x[0, 1, 0] = float("nan")
    x, weight = leaf(x), leaf(weight)
    op(x, weight, p, 1e-6).sum().backward()
    assert torch.isnan(x.grad[0, :, 0]).any() and torch.isnan(weight.grad[0, :, 0]).all()
    assert torch.isfinite(x.grad[1]).all() and torch.isfinite(x.grad[0, :, 1:]).all()


@pytest.mark.parametrize("bad", [0.0, 1e-8, -1e-3, 2e3, -1e10, float("inf"), float("nan")])
def test_exponents_outside_the_supported_range_are_rejected_by_both(bad):
    # Before the range check, p = 1e-8 gave 1.0 (geometric mean 0.466), p >= 1e10 a NaN gradient.
    low, high = reference.SUPPORTED_EXPONENTS
    x, weight, _ = make_inputs(2, 4, 3, p=(1.0, 1.0), dtype=torch.float32)
    p = torch.tensor([1.0, bad])
    message = (
        rf"guided_gem_pool: p\[1\] = .* is outside the supported range: "
        rf"each exponent needs {low:g} <= \|p\| <= {high:g}"
    )
    with pytest.raises(ValueError, match=message):
        op(x, weight, p, 1e-6)
    with pytest.raises(ValueError, match=message):
        reference.guided_gem_pool(x, weight, p)


@pytest.mark.parametrize("device", DEVICES)
def test_range_limits_are_accurate_in_float32(device):
    low, high = reference.SUPPORTED_EXPONENTS
    inputs = make_inputs(2, 12, 16, p=(low, -low, high, -high), dtype=torch.float64, device=device)
    x32, w32, p32 = (leaf(t.float()) for t in inputs)
    x64, w64, p64 = (leaf(t) for t in inputs)
    out, expected = op(x32, w32, p32, 1e-6), reference.guided_gem_pool(x64, w64, p64)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)
    for g, e in zip(grads(out, [x32, w32, p32]), grads(expected, [x64, w64, p64]), strict=False):
        torch.testing.assert_close(g.double(), e, rtol=2e-3, atol=1e-3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_nan_for_an_unsupported_exponent():
    # Reading p back to check it would synchronise: the kernels give NaN instead.
    x, weight, _ = make_inputs(2, 4, 3, p=(1.0, 1.0), dtype=torch.float32, device="cuda")
    out = op(x, weight, torch.tensor([1.0, 1e-8], device="cuda"), 1e-6)
    assert torch.isnan(out).all()


# ---------------------------------------------------------------- floor and eps = 0 (the released STAR's GeM)

RELEASE = dict(eps=0.0, floor=1e-12)  # (mean_t x^p + 1e-12)^(1/p), x not clamped


def with_zeros(x):
    """x with exact zeros: one frame of a column, every frame of another, and a few scattered."""
    x = x.clone()
    x[0, 1, 0] = 0.0
    x[-1, :, -1] = 0.0
    x.view(-1)[::7] = 0.0
    return x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("eps", [1e-6, 0.0])
@pytest.mark.parametrize("floor", [0.0, 1e-12, 1e-3])
def test_floor_matches_reference_in_float64(device, eps, floor):
    x, weight, p = make_inputs(3, 12, 70, p=(-1.0, 0.7, 1.0, 3.0, 7.0), device=device, low=0.0, high=0.2)
    inputs = [leaf(with_zeros(x)), leaf(weight), leaf(p)]
    assert_matches_reference(op, reference.guided_gem_pool, inputs, (eps, floor), dtype=torch.float64)


@pytest.mark.parametrize("device", DEVICES)
def test_floor_in_float32(device):
    # x small enough (0..1e-3) that the floor 1e-3 changes the means by far more than rounding.
    x, weight, p = make_inputs(2, 12, 70, device=device, low=0.0, high=1e-3)
    inputs = [leaf(with_zeros(x).float()), leaf(weight.float()), leaf(p.float())]
    assert_matches_reference(op, reference.guided_gem_pool, inputs, (0.0, 1e-3), dtype=torch.float32)
    without = op(*[t.detach() for t in inputs], 0.0, 0.0)
    assert (op(*inputs, 0.0, 1e-3) - without).abs().min() > 1e-3  # the floor is not dropped


def test_release_setting_is_the_plain_formula():
    # Independent of the log-space code: (mean_t x**p + 1e-12) ** (1 / p), directly, on positive x.
    x, weight, p = make_inputs(3, 12, 9, low=1e-4, high=2.0)
    x[0, :, 0] = 1e-5  # x^7 = 1e-35, far below the floor: the floor decides this mean
    expected = sum(weight[:, i] * ((x ** p[i]).mean(dim=1) + 1e-12) ** (1.0 / p[i]) for i in range(len(p)))
    torch.testing.assert_close(op(x, weight, p, **RELEASE), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(star_ext.guided_gem_pool(x, weight, p, **RELEASE), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(reference.guided_gem_pool(x, weight, p, **RELEASE), expected, rtol=1e-12, atol=0)
    assert not torch.allclose(op(x, weight, p, 0.0, 0.0), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_with_floor(device):
    # floor comparable to mean x^p, so its term carries real weight in every gradient.
    x, weight, p = make_inputs(2, 4, 3, p=(0.7, 1.0, 3.0), device=device, low=0.05, high=0.5)
    assert torch.autograd.gradcheck(lambda a, b, c: op(a, b, c, 1e-6, 1e-2), (leaf(x), leaf(weight), leaf(p)))
    assert torch.autograd.gradcheck(lambda a, b, c: op(a, b, c, 0.0, 1e-2), (leaf(x), leaf(weight), leaf(p)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_frames_with_eps_zero(device, dtype):
    """x = 0 with eps = 0: x^p = 0 for p > 0; z = 0 for p < 0 (x^p = inf) and for a column of zeros
    without floor; zero frames get zero gradient, and those z pass none; everything else is finite."""
    x, weight, p = make_inputs(2, 5, 4, p=(-1.0, 0.7, 1.0, 3.0), dtype=dtype, device=device)
    x[0, 2, 0] = 0.0  # one frame at 0
    x[1, :, 1] = 0.0  # a column of zeros
    for floor in (0.0, 1e-12):
        xs, ws, ps = leaf(x), leaf(weight), leaf(p)
        out = op(xs, ws, ps, 0.0, floor)
        gx, gw, gp = torch.autograd.grad(out.sum(), [xs, ws, ps])
        for g in (out, gx, gw, gp):
            assert torch.isfinite(g).all()
        assert torch.all(gx[0, 2, 0] == 0) and torch.all(gx[1, :, 1] == 0)
        assert gw[0, 0, 0] == 0 and gw[1, 0, 1] == 0  # p = -1: z = 0
        x64 = x.double()
        # the one-zero column, p > 0: the mean of the other frames' x^p, with 0 for the zero frame
        for i in (1, 2, 3):
            pi = float(p[i])
            z = ((x64[0, :, 0] ** pi).mean() + floor) ** (1 / pi)
            torch.testing.assert_close(gw[0, i, 0].double(), z, **TOLERANCES[dtype])
        # the all-zero column: z = floor ** (1 / p) for p > 0 (0 without floor)
        torch.testing.assert_close(gw[1, 1:, 1].double(), floor ** (1 / p[1:].double()), **TOLERANCES[dtype])
        assert_matches_reference(op, reference.guided_gem_pool, [leaf(x), leaf(weight), leaf(p)], (0.0, floor))


def test_eps_zero_with_positive_x_is_bit_identical_to_a_tiny_eps():
    # Nothing below the smallest eps: clamping does nothing either way.
    x, weight, p = make_inputs(2, 12, 70, dtype=torch.float32, low=0.5, high=2.0)
    xs, xt = leaf(x), leaf(x)
    a, b = op(xs, weight, p, 0.0), op(xt, weight, p, 1e-6)
    assert torch.equal(a, b)
    a.sum().backward()
    b.sum().backward()
    assert torch.equal(xs.grad, xt.grad)


@pytest.mark.parametrize("floor", [-1e-12, float("inf"), float("nan")])
def test_bad_floor_is_rejected_by_both(floor):
    x, weight, p = make_inputs(2, 4, 3, dtype=torch.float32)
    message = r"guided_gem_pool: floor must be a non-negative finite number, got"
    with pytest.raises(ValueError, match=message):
        op(x, weight, p, 1e-6, floor)
    with pytest.raises(ValueError, match=message):
        star_ext.guided_gem_pool(x, weight, p, floor=floor)
    with pytest.raises(ValueError, match=message):
        reference.guided_gem_pool(x, weight, p, floor=floor)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_with_floor(device):
    x, weight, p = make_inputs(2, 4, 3, dtype=torch.float32, device=device)
    opcheck_with_and_without_grad(op, [with_zeros(x), weight, p], (0.0, 1e-12))


def test_torch_compile_fullgraph_with_floor():
    x, weight, p = make_inputs(2, 4, 3, dtype=torch.float32)

    def pooled(a, w, e):
        return star_ext.guided_gem_pool(torch.relu(a - 1.0), torch.softmax(w, dim=1), e, **RELEASE).sum()

    assert_compiled_matches_eager(pooled, [x], weight, p)
