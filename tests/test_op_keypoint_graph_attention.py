"""keypoint_graph_attention: kernels vs the reference and a per-edge loop, gradients, bad input (the
checks every op gets: test_op_common.py)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import star_ext
from op_cases import DEVICES, LOW_PRECISION, TOLERANCES, assert_matches_reference, assert_same_non_finite, leaf
from op_cases import keypoint_graph_attention_inputs as make_inputs
from star_ext import reference

op = torch.ops.star.keypoint_graph_attention


def per_edge_loop(h, a_src, a_dst, rowptr, col, slope, keep=None, scale=1.0):
    """GAT on a CSR template written as plain Python loops over samples, heads, nodes and edges."""
    b_n, v_n, heads, _ = h.shape
    out = torch.zeros_like(h)
    for b in range(b_n):
        for k in range(heads):
            for i in range(v_n):
                edges = range(int(rowptr[i]), int(rowptr[i + 1]))
                if not edges:
                    continue
                scores = []
                for e in edges:
                    s = float(a_dst[b, i, k] + a_src[b, int(col[e]), k])
                    scores.append(s if s > 0 else s * slope)
                top = max(scores)
                z = sum(math.exp(s - top) for s in scores)
                for e, s in zip(edges, scores, strict=False):
                    alpha = math.exp(s - top) / z
                    if keep is not None:
                        alpha *= float(keep[b, e, k]) * scale
                    out[b, i, k] += alpha * h[b, int(col[e]), k]
    return out


def random_csr(num_nodes, num_edges, gen, empty_rows=True):
    dst = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    if not empty_rows:
        dst = torch.cat([dst, torch.arange(num_nodes)])
    src = torch.randint(0, num_nodes, (dst.numel(),), generator=gen)
    return star_ext.edges_to_csr(src, dst, num_nodes)


def test_reference_matches_per_edge_loop():
    h, a_src, a_dst, rowptr, col = make_inputs(2, 2, 2, 3)
    keep = torch.rand(2, col.numel(), 2, generator=torch.Generator().manual_seed(1)) > 0.3
    for mask, scale in ((None, 1.0), (keep, 1.0 / 0.7)):
        expected = per_edge_loop(h, a_src, a_dst, rowptr, col, 0.2, mask, scale)
        torch.testing.assert_close(
            reference.keypoint_graph_attention(h, a_src, a_dst, rowptr, col, 0.2, mask, scale), expected
        )
        torch.testing.assert_close(op(h, a_src, a_dst, rowptr, col, 0.2, mask, scale), expected)


def test_node_without_incoming_edge_gets_zero():
    gen = torch.Generator().manual_seed(3)
    rowptr, col = star_ext.edges_to_csr(torch.tensor([0, 1, 1]), torch.tensor([1, 1, 3]), 4)
    h = torch.randn(2, 4, 1, 5, generator=gen, dtype=torch.float64)
    a = torch.randn(2, 4, 1, generator=gen, dtype=torch.float64)
    out = op(h, a, a, rowptr, col, 0.2, None, 1.0)
    assert torch.all(out[:, 0] == 0) and torch.all(out[:, 2] == 0)
    torch.testing.assert_close(out, per_edge_loop(h, a, a, rowptr, col, 0.2))
    torch.testing.assert_close(out[:, 3], h[:, 1])  # a single incoming edge gets weight 1


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("dropout", [False, True])
def test_matches_reference_forward_and_backward(device, dtype, index_dtype, dropout):
    h, a_src, a_dst, rowptr, col = make_inputs(3, 3, 2, 5, dtype=dtype, device=device, index_dtype=index_dtype)
    keep = None
    if dropout:
        keep = torch.rand(3, col.numel(), 2, generator=torch.Generator().manual_seed(5)) > 0.4
        keep = keep.to(device)
    inputs = [leaf(h), leaf(a_src), leaf(a_dst), rowptr, col]
    assert_matches_reference(op, reference.keypoint_graph_attention, inputs, (0.2, keep, 1.7), dtype=dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_and_empty(device):
    h, a_src, a_dst, rowptr, col = make_inputs(3, 2, 2, 4, device=device)
    h_nc = h.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)
    a_nc = a_src.transpose(0, 1).contiguous().transpose(0, 1)
    assert not h_nc.is_contiguous() and not a_nc.is_contiguous()
    torch.testing.assert_close(
        op(h_nc, a_nc, a_dst, rowptr, col, 0.2, None, 1.0),
        reference.keypoint_graph_attention(h, a_src, a_dst, rowptr, col),
    )
    h0, s0, d0 = (leaf(t[:0]) for t in (h, a_src, a_dst))
    out = op(h0, s0, d0, rowptr, col, 0.2, None, 1.0)
    assert out.shape == (0,) + h.shape[1:]
    out.sum().backward()
    assert h0.grad.shape == h0.shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_low_precision(device, dtype):
    h, a_src, a_dst, rowptr, col = make_inputs(2, 3, 2, 8, device=device)
    out = op(h.to(dtype), a_src.to(dtype), a_dst.to(dtype), rowptr, col, 0.2, None, 1.0)
    assert out.dtype == dtype
    expected = reference.keypoint_graph_attention(h, a_src, a_dst, rowptr, col)
    torch.testing.assert_close(out.double(), expected, **TOLERANCES[dtype])


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(0, 3),
    v=st.integers(1, 12),
    e=st.integers(0, 40),
    heads=st.integers(1, 3),
    d=st.integers(1, 5),
    slope=st.floats(0.0, 1.0),
    dropout=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fuzz_random_graphs_against_reference(b, v, e, heads, d, slope, dropout, seed):
    gen = torch.Generator().manual_seed(seed)
    rowptr, col = random_csr(v, e, gen)
    h = leaf(torch.randn(b, v, heads, d, generator=gen, dtype=torch.float64))
    a_src = leaf(torch.randn(b, v, heads, generator=gen, dtype=torch.float64))
    a_dst = leaf(torch.randn(b, v, heads, generator=gen, dtype=torch.float64))
    keep = torch.rand(b, col.numel(), heads, generator=gen) > 0.5 if dropout else None
    inputs = [h, a_src, a_dst, rowptr, col]
    assert_matches_reference(op, reference.keypoint_graph_attention, inputs, (slope, keep, 2.0))


def _bad_csr_cases():
    ok_rowptr = torch.tensor([0, 1, 3, 4])
    ok_col = torch.tensor([0, 1, 2, 2])
    return [
        (torch.tensor([1, 1, 3, 4]), ok_col, ValueError, r"rowptr\[0\] must be 0"),
        (torch.tensor([0, 2, 1, 4]), ok_col, ValueError, r"rowptr must be non-decreasing, but rowptr\[2\] = 1"),
        (torch.tensor([0, 1, 3, 3]), ok_col, ValueError, r"rowptr\[-1\] must equal the number of edges"),
        (ok_rowptr, torch.tensor([0, 1, 3, 2]), ValueError, r"col\[2\] = 3 is not a node index in \[0, 3\)"),
        (ok_rowptr, torch.tensor([0, -1, 2, 2]), ValueError, r"col\[1\] = -1"),
        (torch.tensor([0, 1, 4]), ok_col, RuntimeError, r"rowptr must have V \+ 1 = 4 entries"),
        (ok_rowptr, ok_col.int(), RuntimeError, r"col must have the dtype of rowptr"),
        (ok_rowptr.float(), ok_col, RuntimeError, r"rowptr must be int64 or int32"),
    ]


@pytest.mark.parametrize("rowptr, col, error, message", _bad_csr_cases())
def test_bad_csr_names_the_problem(rowptr, col, error, message):
    h, a = torch.ones(2, 3, 1, 4), torch.ones(2, 3, 1)
    with pytest.raises(error, match=message):
        op(h, a, a, rowptr, col, 0.2, None, 1.0)
    if error is ValueError:
        with pytest.raises(ValueError, match=message):
            star_ext.validate_csr(rowptr, col, 3)


def test_bad_tensors_name_the_argument():
    h, a_src, a_dst, rowptr, col = make_inputs(2, 2, 2, 3, dtype=torch.float32)
    cases = [
        ((h[0], a_src, a_dst), {}, r"h must be a 4-D tensor \[B, V, heads, D\]"),
        ((h, a_src[:, :-1], a_dst), {}, r"a_src must have shape"),
        ((h, a_src, a_dst[..., :1]), {}, r"a_dst must have shape"),
        ((h, a_src.double(), a_dst), {}, r"a_src must have the dtype of h"),
        (
            (h, a_src, a_dst),
            {"edge_keep": torch.ones(2, 3, 2, dtype=torch.bool)},
            r"edge_keep must have shape \[B, E, heads\]",
        ),
    ]
    for (x, s, d), kwargs, message in cases:
        with pytest.raises(RuntimeError, match=message):
            op(x, s, d, rowptr, col, 0.2, kwargs.get("edge_keep"), 1.0)
    valid = star_ext.validate_csr(rowptr, col, rowptr.numel() - 1)
    assert valid is None


@pytest.mark.parametrize("num_frames", [1, 2, 12])
def test_skeleton_graph_structure(num_frames):
    rowptr, col = star_ext.skeleton_graph(num_frames)
    v = 17 * num_frames
    star_ext.validate_csr(rowptr, col, v)
    dst = torch.repeat_interleave(torch.arange(v), rowptr[1:] - rowptr[:-1])
    edges = set(zip(col.tolist(), dst.tolist(), strict=False))
    assert len(edges) == col.numel()  # no duplicates
    expected = 2 * 19 * num_frames + 2 * 17 * (num_frames - 1) + v
    assert col.numel() == expected  # 1034 at T = 12
    assert all((d, s) in edges for s, d in edges)  # symmetric
    assert all((i, i) in edges for i in range(v))  # self loops
    for t in range(num_frames):  # bones inside every frame, not only the first
        base = 17 * t
        assert all((base + i, base + j) in edges for i, j in star_ext.COCO_BONES)
    for t in range(num_frames - 1):
        assert all((17 * t + j, 17 * (t + 1) + j) in edges for j in range(17))
    assert all(s // 17 == d // 17 or abs(s - d) == 17 for s, d in edges)
    for i in range(v):  # sources sorted within each row
        row = col[rowptr[i] : rowptr[i + 1]]
        assert torch.equal(row, row.sort().values)


def test_skeleton_graph_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        star_ext.skeleton_graph(0)
    with pytest.raises(ValueError, match=r"bone \(3, 17\)"):
        star_ext.skeleton_graph(2, bones=[(3, 17)])
    with pytest.raises(ValueError, match="dst holds a node outside"):
        star_ext.edges_to_csr(torch.tensor([0]), torch.tensor([5]), 3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("keep_dtype", [torch.uint8, torch.float32, torch.int64])
def test_edge_keep_must_be_bool_in_both(device, keep_dtype):
    # Before this check, a uint8 mask holding 2 was read as 1 by the kernels, as 2 by the reference.
    h, a_src, a_dst, rowptr, col = make_inputs(2, 2, 2, 3, device=device)
    keep = torch.full((2, col.numel(), 2), 2, dtype=keep_dtype, device=device)
    message = (
        r"keypoint_graph_attention: edge_keep must be a bool mask \(True keeps the edge\), got .*edge_keep.bool\(\)"
    )
    with pytest.raises(TypeError, match=message):
        op(h, a_src, a_dst, rowptr, col, 0.2, keep, 1.0)
    with pytest.raises(TypeError, match=message):
        reference.keypoint_graph_attention(h, a_src, a_dst, rowptr, col, 0.2, keep, 1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("where", ["h", "a_src", "a_dst"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("dropout", [False, True])
def test_non_finite_inputs_propagate_as_the_reference(device, where, value, dropout):
    h, a_src, a_dst, rowptr, col = make_inputs(2, 2, 2, 3, device=device)
    {"h": h[0, 3, 1], "a_src": a_src[0, 3], "a_dst": a_dst[0, 5]}[where][0] = value
    keep = None
    if dropout:
        keep = (torch.rand(2, col.numel(), 2, generator=torch.Generator().manual_seed(2)) > 0.5).to(device)
    out = op(h, a_src, a_dst, rowptr, col, 0.2, keep, 2.0)
    assert_same_non_finite(out, reference.keypoint_graph_attention(h, a_src, a_dst, rowptr, col, 0.2, keep, 2.0))
    assert torch.isfinite(out[1]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_backward_stays_exact_when_the_template_changes(device):
    # The CUDA backward caches the transposed template: a second template, and
    # the first changed in place, must each get their own.
    h, a_src, a_dst, rowptr, col = make_inputs(2, 2, 2, 3, device=device)
    col = col.clone()  # changed in place below
    gen = torch.Generator().manual_seed(4)
    other_rowptr, other_col = random_csr(rowptr.numel() - 1, col.numel() - 10, gen, empty_rows=False)
    templates = [(rowptr, col), (other_rowptr.to(device), other_col.to(device)), (rowptr, col)]
    for step, (rp, cl) in enumerate(templates):
        if step == 2:
            cl.copy_(cl.flip(0))  # same tensor, new sources: its version changes
        inputs = [leaf(h), leaf(a_src), leaf(a_dst), rp, cl]
        assert_matches_reference(op, reference.keypoint_graph_attention, inputs, (0.2, None, 1.0))
