"""The fused ops under torch.autocast: mixed input dtypes run in the dtype of the feature input.

Under autocast a network's layers give float16/bfloat16 features while the
keypoints (pose store), softmax weights and attention logits stay float32;
the ops' autocast kernels cast those to the feature dtype (csrc/autocast.cpp).
"""

from __future__ import annotations

import pytest
import torch

from op_cases import DEVICES, TOLERANCES, as64, assert_close_scaled, grads, leaf
from op_cases import guided_gem_pool_inputs as gem_inputs
from op_cases import keypoint_graph_attention_inputs as graph_inputs
from op_cases import keypoint_pool_inputs as pool_inputs
from star_ext import reference

AUTOCAST_DTYPE = {"cpu": torch.bfloat16, "cuda": torch.float16}


def keypoint_pool_case(device, low):
    feat, kpts = pool_inputs(3, 5, 7, 4, 17, device=device)
    inputs = [leaf(feat.to(low)), leaf(kpts.float())]
    return "keypoint_pool", inputs, [False, True], dict(sigma=0.3, eps=1e-6)


def guided_gem_pool_case(device, low):
    x, weight, p = gem_inputs(2, 5, 9, device=device)
    # p keeps its own dtype under autocast, as it does outside it.
    inputs = [leaf(x.to(low)), leaf(weight.float()), leaf(p.float())]
    return "guided_gem_pool", inputs, [False, True, False], dict(eps=1e-6)


def guided_gem_pool_floor_case(device, low):
    # The floor reaches the kernel: at 0.5 it changes every mean by far more than the tolerance.
    name, inputs, cast, _ = guided_gem_pool_case(device, low)
    return name, inputs, cast, dict(eps=0.0, floor=0.5)


def keypoint_graph_attention_case(device, low):
    h, a_src, a_dst, rowptr, col = graph_inputs(2, 3, 2, 4, device=device)
    inputs = [leaf(h.to(low)), leaf(a_src.float()), leaf(a_dst.float()), rowptr, col]
    return "keypoint_graph_attention", inputs, [False, True, True, False, False], {}


CASES = [keypoint_pool_case, guided_gem_pool_case, guided_gem_pool_floor_case, keypoint_graph_attention_case]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.removesuffix("_case"))
def test_mixed_dtypes_run_in_the_feature_dtype(device, case):
    low = AUTOCAST_DTYPE[device]
    name, inputs, cast, kwargs = case(device, low)
    op = getattr(torch.ops.star, name)
    with pytest.raises(RuntimeError, match="must have the dtype of"):
        op(*inputs, **kwargs)  # outside autocast a mixed call is an error
    with torch.autocast(device, dtype=low):
        out = op(*inputs, **kwargs)
    assert out.dtype == low

    # The reference on the values the kernel saw: the cast inputs rounded to the feature dtype.
    seen = [as64(t.to(low) if c else t) if t.is_floating_point() else t for t, c in zip(inputs, cast, strict=False)]
    expected = getattr(reference, name)(*seen, **kwargs)
    torch.testing.assert_close(out.double(), expected, **TOLERANCES[low])

    leaves = [t for t in inputs if t.is_floating_point()]
    got = grads(out, leaves)
    assert [g.dtype for g in got] == [t.dtype for t in leaves]  # each input's gradient in its own dtype
    want = grads(expected, [t for t in seen if t.is_floating_point()])
    for g, w in zip(got, want, strict=False):
        assert_close_scaled(g, w, low)


@pytest.mark.parametrize("device", DEVICES)
def test_feature_dtype_decides_even_when_it_is_float32(device):
    """A float32 feature under autocast keeps the op in float32 (no downcast of the features)."""
    low = AUTOCAST_DTYPE[device]
    feat, kpts = pool_inputs(2, 3, 5, 4, 6, device=device)
    feat, kpts = feat.float(), kpts.to(low)
    with torch.autocast(device, dtype=low):
        out = torch.ops.star.keypoint_pool(feat, kpts, 0.3)
    assert out.dtype == torch.float32
    expected = reference.keypoint_pool(feat.double(), kpts.double(), 0.3)
    torch.testing.assert_close(out.double(), expected, **TOLERANCES[torch.float32])
