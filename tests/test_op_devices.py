"""Every tensor argument of every fused op is on one device: a tensor elsewhere (e.g. on the meta
device) is a device-mismatch error, never an uninitialised result."""

from __future__ import annotations

import pytest
import torch

import star_ext

pytestmark = pytest.mark.skipif(not star_ext.HAS_C, reason="the compiled ops are not built")


def _pool_args():
    return {"feat": torch.randn(2, 4, 5, 5), "kpts": torch.rand(2, 17, 3)}


def _gem_args():
    return {"x": torch.rand(2, 3, 4), "weight": torch.rand(2, 2, 4), "p": torch.tensor([1.0, 3.0])}


def _gat_args():
    rowptr, col = torch.tensor([0, 1, 2, 2]), torch.tensor([1, 2])  # edges 1 -> 0, 2 -> 1
    return {
        "h": torch.randn(2, 3, 1, 4),
        "a_src": torch.randn(2, 3, 1),
        "a_dst": torch.randn(2, 3, 1),
        "rowptr": rowptr,
        "col": col,
    }


CASES = [
    ("keypoint_pool", _pool_args, (0.1, 1e-6)),
    ("guided_gem_pool", _gem_args, (1e-6,)),
    ("keypoint_graph_attention", _gat_args, ()),
]


@pytest.mark.parametrize("op_name, make_args, extra", CASES, ids=[c[0] for c in CASES])
def test_a_tensor_on_another_device_is_named(op_name, make_args, extra):
    op = getattr(torch.ops.star, op_name)
    names = list(make_args())
    op(*make_args().values(), *extra)  # all on the CPU: runs
    for moved in names:
        args = make_args()
        args[moved] = args[moved].to("meta")
        with pytest.raises(RuntimeError, match=f"{op_name}: .* is on (meta|cpu) but .* is on (cpu|meta)") as err:
            op(*args.values(), *extra)
        assert moved in str(err.value)


def test_the_edge_mask_device_is_checked_too():
    args = _gat_args()
    keep = torch.ones(2, 2, 1, dtype=torch.bool, device="meta")
    with pytest.raises(RuntimeError, match="edge_keep is on meta but h is on cpu"):
        torch.ops.star.keypoint_graph_attention(*args.values(), 0.2, keep, 1.0)


def test_all_on_meta_is_shape_inference():
    out = torch.ops.star.keypoint_pool(
        torch.randn(2, 4, 5, 5, device="meta"), torch.rand(2, 17, 3, device="meta"), 0.1, 1e-6
    )
    assert out.device.type == "meta" and out.shape == (2, 17, 4)
