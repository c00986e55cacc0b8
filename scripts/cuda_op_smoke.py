#!/usr/bin/env python3
"""Smoke test of the CUDA kernels of star_ext, small enough to run under compute-sanitizer.

Runs forward + backward of every fused op on CUDA in float64, float32, float16
and bfloat16 at small odd shapes (partial tiles, several keypoint groups and
cell chunks, frames beyond the register cache, rows with more edges than lanes,
dropout masks, int32 and int64 templates, non-contiguous inputs, empty
batches), and compares outputs and gradients with star_ext.reference evaluated
in float64 on the same (rounded) inputs. Graph attention also runs on a CSR
with out-of-range col entries (must equal the template without those edges)
and on a malformed rowptr (must not fail: compute-sanitizer checks that nothing
is read or written out of bounds), and its backward and the grad_p of
guided_gem_pool must be bitwise reproducible.

    python scripts/cuda_op_smoke.py [--ops keypoint_pool,guided_gem_pool,keypoint_graph_attention,extras]
                                    [--dtypes float32,float16] [--quick]

``extras`` (CUDA only) adds the checks of cuda_op_extras.py: non-finite inputs, an
unsupported exponent, autocast, double backward, channels_last and transposed inputs,
a second device, transposed-template cache hits.

Prints PASS/FAIL per case and exits 1 if any case failed (2 without a GPU).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable

import cuda_op_extras
import torch

import star_ext
from star_ext import reference
from star_ext.graph import edges_to_csr, skeleton_graph

DEVICE = "cuda"
DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
# Tolerances against the float64 reference; atol is relative to the largest
# reference magnitude of the compared tensor (at least 1).
TOLERANCES = {
    torch.float64: dict(rtol=1e-9, atol=1e-9),
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.float16: dict(rtol=2e-2, atol=2e-2),
    torch.bfloat16: dict(rtol=5e-2, atol=5e-2),
}
OPS = ("keypoint_pool", "guided_gem_pool", "keypoint_graph_attention")


class Failure(AssertionError):
    pass


def synchronize() -> None:
    """Waits for the device, so an asynchronous kernel error surfaces in the case that caused it."""
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def randn(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=dtype)


def rand(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen, dtype=dtype)


def on_device(t: torch.Tensor, dtype: torch.dtype, requires_grad: bool = True) -> torch.Tensor:
    return t.to(DEVICE, dtype).detach().requires_grad_(requires_grad)


def as64(t: torch.Tensor) -> torch.Tensor:
    """The same (rounded) values in float64, as a fresh leaf."""
    return t.detach().to(torch.float64).requires_grad_(t.requires_grad)


def compare(what: str, got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    if got.device.type != DEVICE:
        raise Failure(f"{what}: on {got.device}, expected {DEVICE}")
    if tuple(got.shape) != tuple(want.shape):
        raise Failure(f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    got = got.detach().to("cpu", torch.float64)
    want = want.detach().to("cpu", torch.float64)
    if want.numel() == 0:
        return
    tol = TOLERANCES[dtype]
    scale = max(1.0, float(want.abs().max()))
    atol = tol["atol"] * scale
    if not torch.isfinite(got).all():
        raise Failure(f"{what}: non-finite values")
    if not torch.allclose(got, want, rtol=tol["rtol"], atol=atol):
        err = (got - want).abs()
        worst = int(err.argmax())
        raise Failure(
            f"{what}: max |err| {float(err.max()):.3e} at flat index {worst} (got {float(got.flatten()[worst]):.6g}, "
            f"want {float(want.flatten()[worst]):.6g}; rtol {tol['rtol']}, atol {atol:.2e})"
        )


def fused_and_reference(
    fused: Callable, ref: Callable, inputs: list[torch.Tensor], others: tuple, kwargs: dict, seed: int
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    """Output and input gradients of the fused op on CUDA and of the reference in float64."""
    out = fused(*inputs, *others, **kwargs)
    grad_out = randn(tuple(out.shape), seed).to(DEVICE, out.dtype)
    # Also for empty outputs, so the backward ops see empty problems too.
    grads = torch.autograd.grad(out, inputs, grad_out, allow_unused=True, materialize_grads=True)
    inputs64 = [as64(t) for t in inputs]
    out64 = ref(*inputs64, *others, **kwargs)
    grads64 = torch.autograd.grad(
        out64, inputs64, grad_out.to(torch.float64), allow_unused=True, materialize_grads=True
    )
    synchronize()
    return out, list(grads), out64, list(grads64)


def coarser(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """The dtype of the two with the larger tolerance."""
    return a if TOLERANCES[a]["rtol"] >= TOLERANCES[b]["rtol"] else b


def check_all(name: str, dtype: torch.dtype, names: list[str], got, want) -> None:
    out, grads = got
    out64, grads64 = want
    if out.dtype != dtype:
        raise Failure(f"{name}: output dtype {out.dtype}, expected {dtype}")
    compare(f"{name} out", out, out64, dtype)
    for arg, g, g64 in zip(names, grads, grads64, strict=False):
        # A gradient comes back in its input's dtype: compare at the coarser of the two.
        compare(f"{name} grad_{arg}", g, g64, coarser(dtype, g.dtype))


# ---------------------------------------------------------------- keypoint_pool


def keypoint_pool_case(dtype, N, C, H, W, K, sigma=0.15, seed=0, noncontiguous=False):
    feat = randn((N, C, H, W), seed)
    kpts = rand((N, K, 3), seed + 1)
    kpts[..., :2] = kpts[..., :2] * 1.2 - 0.1  # some keypoints slightly outside the frame
    feat_d = on_device(feat, dtype)
    kpts_d = on_device(kpts, dtype)
    if noncontiguous:
        feat_d = feat_d.detach().to(memory_format=torch.channels_last).requires_grad_()
        kpts_d = on_device(kpts.transpose(0, 1).contiguous(), dtype).transpose(0, 1).detach().requires_grad_()
        assert not feat_d.is_contiguous() and not kpts_d.is_contiguous()
    out, grads, out64, grads64 = fused_and_reference(
        star_ext.keypoint_pool, reference.keypoint_pool, [feat_d, kpts_d], (sigma,), {}, seed + 2
    )
    check_all("keypoint_pool", dtype, ["feat", "kpts"], (out, grads), (out64, grads64))
    # Each gradient alone (output_mask with one entry set).
    for keep in (0, 1):
        if out.numel() == 0:
            break
        needed = [feat_d, kpts_d][keep]
        out1 = star_ext.keypoint_pool(
            feat_d if keep == 0 else feat_d.detach(), kpts_d if keep == 1 else kpts_d.detach(), sigma
        )
        (g,) = torch.autograd.grad(out1, [needed], randn(tuple(out1.shape), seed + 2).to(DEVICE, dtype))
        compare(f"keypoint_pool grad_{['feat', 'kpts'][keep]} alone", g, grads64[keep], dtype)


def keypoint_pool_cases(quick: bool):
    cases = [
        ("N=3 C=67 H=5 W=7 K=17", dict(N=3, C=67, H=5, W=7, K=17)),
        ("N=2 C=130 H=9 W=5 K=3 non-contiguous", dict(N=2, C=130, H=9, W=5, K=3, noncontiguous=True)),
        ("N=2 C=300 H=23 W=29 K=29 (2 keypoint groups, cell chunks)", dict(N=2, C=300, H=23, W=29, K=29)),
        ("N=1 C=5 H=1 W=1 K=1", dict(N=1, C=5, H=1, W=1, K=1)),
        ("empty batch N=0", dict(N=0, C=8, H=3, W=3, K=17)),
        ("no keypoints K=0", dict(N=2, C=8, H=3, W=3, K=0)),
    ]
    if not quick:
        cases.append(("N=5 C=200 H=18 W=9 K=17 (STAR cells)", dict(N=5, C=200, H=18, W=9, K=17)))
        cases.append(("N=1 C=70 H=40 W=33 K=49 (3 groups, 3 chunks)", dict(N=1, C=70, H=40, W=33, K=49)))
    return [(label, lambda dtype, kw=kw: keypoint_pool_case(dtype, **kw)) for label, kw in cases]


# ---------------------------------------------------------------- guided_gem_pool


def guided_gem_pool_case(
    dtype, B, T, C, p_values, p_dtype=torch.float32, seed=10, noncontiguous=False, eps=1e-6, floor=0.0
):
    P = len(p_values)
    x = rand((B, T, C), seed) * 3.0 + 0.05
    if x.numel():
        x.view(-1)[::7] = 0.0  # clamped to eps (with eps = 0: frames at 0): no gradient there
        x.view(-1)[3::11] = -1.0
        if eps == 0:
            x[0, :, 0] = 0.0  # a column of zeros: z = floor^(1/p) for p > 0
    weight = torch.softmax(randn((B, P, C), seed + 1), dim=1)
    x_d = on_device(x, dtype)
    w_d = on_device(weight, dtype)
    p_d = torch.tensor(p_values, dtype=p_dtype, device=DEVICE, requires_grad=True)
    if noncontiguous:
        x_d = on_device(x.transpose(1, 2).contiguous(), dtype).transpose(1, 2).detach().requires_grad_()
        assert not x_d.is_contiguous()
    out, grads, out64, grads64 = fused_and_reference(
        star_ext.guided_gem_pool, reference.guided_gem_pool, [x_d, w_d, p_d], (), dict(eps=eps, floor=floor), seed + 2
    )
    if grads[2].dtype != p_dtype:
        raise Failure(f"guided_gem_pool: grad_p has dtype {grads[2].dtype}, expected p's dtype {p_dtype}")
    # grad_p is a sum over B * C columns: compare it at the precision of x.
    check_all("guided_gem_pool", dtype, ["x", "weight", "p"], (out, grads), (out64, grads64))
    if out.numel():
        again = torch.autograd.grad(
            star_ext.guided_gem_pool(x_d, w_d, p_d, eps, floor),
            [p_d],
            randn(tuple(out.shape), seed + 2).to(DEVICE, dtype),
        )[0]
        if not torch.equal(again, grads[2]):
            raise Failure("guided_gem_pool: grad_p differs between two identical runs")


def guided_gem_pool_cases(quick: bool):
    star_p = (0.7, 1.0, 3.0, 5.0, 7.0)
    cases = [
        ("B=3 T=12 C=67 P=5", dict(B=3, T=12, C=67, p_values=star_p)),
        (
            "B=2 T=21 C=33 P=3 (frames beyond the cache), p float64",
            dict(B=2, T=21, C=33, p_values=(0.5, 2.0, 9.0), p_dtype=torch.float64),
        ),
        ("B=2 T=3 C=300 P=2 non-contiguous", dict(B=2, T=3, C=300, p_values=(1.0, -2.0), noncontiguous=True)),
        ("empty batch B=0", dict(B=0, T=12, C=16, p_values=star_p)),
        ("no exponents P=0", dict(B=2, T=4, C=5, p_values=())),
        (
            "B=3 T=12 C=67 P=5 eps=0 floor=1e-12 (released STAR)",
            dict(B=3, T=12, C=67, p_values=star_p, eps=0.0, floor=1e-12),
        ),
        (
            "B=2 T=21 C=33 P=3 eps=0 floor=1e-3, p < 0",
            dict(B=2, T=21, C=33, p_values=(-1.0, 0.5, 2.0), eps=0.0, floor=1e-3),
        ),
    ]
    if not quick:
        cases.append(("B=4 T=12 C=2100 P=5 (several blocks)", dict(B=4, T=12, C=2100, p_values=star_p)))
        cases.append(("B=1 T=40 C=7 P=5 (3 frame chunks)", dict(B=1, T=40, C=7, p_values=star_p)))
    return [(label, lambda dtype, kw=kw: guided_gem_pool_case(dtype, **kw)) for label, kw in cases]


# ---------------------------------------------------------------- keypoint_graph_attention


def hub_graph(num_nodes: int, index_dtype=torch.int64):
    """Node 0 receives an edge from every node; node 1 receives none; the rest have self loops and a ring edge."""
    src, dst = [], []
    for j in range(num_nodes):
        src.append(j)
        dst.append(0)
    for i in range(2, num_nodes):
        src += [i, (i + 1) % num_nodes]
        dst += [i, i]
    return edges_to_csr(torch.tensor(src), torch.tensor(dst), num_nodes, index_dtype)


def graph_inputs(dtype, B, V, heads, D, seed):
    h = on_device(randn((B, V, heads, D), seed), dtype)
    a_src = on_device(randn((B, V, heads), seed + 1), dtype)
    a_dst = on_device(randn((B, V, heads), seed + 2), dtype)
    return h, a_src, a_dst


def keep_mask(B, E, heads, seed, kind):
    if kind is None:
        return None
    return (rand((B, E, heads), seed) > 0.3).to(DEVICE)  # edge_keep is bool only


def graph_case(dtype, B, heads, D, graph, keep=None, seed=20, noncontiguous=False, slope=0.2):
    rowptr, col = graph
    V = rowptr.numel() - 1
    h, a_src, a_dst = graph_inputs(dtype, B, V, heads, D, seed)
    if noncontiguous:
        h = (
            on_device(randn((B, V, heads, D), seed).transpose(0, 1).contiguous(), dtype)
            .transpose(0, 1)
            .detach()
            .requires_grad_()
        )
        assert not h.is_contiguous()
    edge_keep = keep_mask(B, col.numel(), heads, seed + 3, keep)
    keep_scale = 1.0 / 0.7 if keep else 1.0
    rowptr_d, col_d = rowptr.to(DEVICE), col.to(DEVICE)
    kwargs = dict(negative_slope=slope, edge_keep=edge_keep, keep_scale=keep_scale)
    out, grads, out64, grads64 = fused_and_reference(
        star_ext.keypoint_graph_attention,
        reference.keypoint_graph_attention,
        [h, a_src, a_dst],
        (rowptr_d, col_d),
        kwargs,
        seed + 4,
    )
    check_all("keypoint_graph_attention", dtype, ["h", "a_src", "a_dst"], (out, grads), (out64, grads64))
    if out.numel():
        grad_out = randn(tuple(out.shape), seed + 4).to(DEVICE, dtype)
        again = torch.autograd.grad(
            star_ext.keypoint_graph_attention(h, a_src, a_dst, rowptr_d, col_d, **kwargs), [h, a_src, a_dst], grad_out
        )
        for name, g1, g2 in zip(["h", "a_src", "a_dst"], grads, again, strict=False):
            if not torch.equal(g1, g2):
                raise Failure(f"keypoint_graph_attention: grad_{name} differs between two identical runs")
        # Only grad_a_dst (no pass over sources), and only grad_h.
        for idx in (2, 0):
            inputs = [t if i == idx else t.detach() for i, t in enumerate([h, a_src, a_dst])]
            out1 = star_ext.keypoint_graph_attention(*inputs, rowptr_d, col_d, **kwargs)
            (g,) = torch.autograd.grad(out1, [inputs[idx]], grad_out)
            compare(f"keypoint_graph_attention grad_{['h', 'a_src', 'a_dst'][idx]} alone", g, grads64[idx], dtype)


def out_of_range_case(dtype, B=2, heads=2, D=16, seed=30, keep="bool"):
    """col entries outside [0, V) are absent: same result as the template without them."""
    rowptr, col = skeleton_graph(2)
    V = rowptr.numel() - 1
    bad = torch.zeros(col.numel(), dtype=torch.bool)
    bad[[3, 17, col.numel() - 1]] = True
    col_bad = col.clone()
    col_bad[3] = V + 5
    col_bad[17] = -2
    col_bad[col.numel() - 1] = 10**9
    counts = rowptr[1:] - rowptr[:-1]
    dst = torch.repeat_interleave(torch.arange(V), counts)
    clean_counts = torch.bincount(dst[~bad], minlength=V)
    rowptr_clean = torch.zeros(V + 1, dtype=torch.int64)
    rowptr_clean[1:] = torch.cumsum(clean_counts, 0)
    col_clean = col[~bad]
    h, a_src, a_dst = graph_inputs(dtype, B, V, heads, D, seed)
    edge_keep = keep_mask(B, col.numel(), heads, seed + 3, keep)
    keep_clean = edge_keep[:, ~bad.to(DEVICE)] if edge_keep is not None else None
    out = star_ext.keypoint_graph_attention(h, a_src, a_dst, rowptr.to(DEVICE), col_bad.to(DEVICE), 0.2, edge_keep, 1.5)
    grad_out = randn(tuple(out.shape), seed + 4).to(DEVICE, dtype)
    grads = torch.autograd.grad(out, [h, a_src, a_dst], grad_out)
    inputs64 = [as64(t) for t in (h, a_src, a_dst)]
    out64 = reference.keypoint_graph_attention(
        *inputs64, rowptr_clean.to(DEVICE), col_clean.to(DEVICE), 0.2, keep_clean, 1.5
    )
    grads64 = torch.autograd.grad(out64, inputs64, grad_out.to(torch.float64))
    synchronize()
    check_all(
        "keypoint_graph_attention (out-of-range col)", dtype, ["h", "a_src", "a_dst"], (out, grads), (out64, grads64)
    )


def malformed_rowptr_case(dtype, B=2, heads=2, D=16, seed=40):
    """rowptr out of [0, E], decreasing, not ending at E: wrong numbers allowed, no failure, no out-of-bounds access."""
    rowptr, col = skeleton_graph(2)
    V, E = rowptr.numel() - 1, col.numel()
    for index_dtype in (torch.int64, torch.int32):
        bad = rowptr.clone()
        bad[2] = E + 100
        bad[3] = -7
        bad[5] = bad[4] - 3
        bad[V] = E - 5
        bad[V - 1] = 2**31 - 1 if index_dtype == torch.int32 else 2**40
        col_bad = col.clone()
        col_bad[0] = -(2**31) if index_dtype == torch.int32 else -(2**40)
        h, a_src, a_dst = graph_inputs(dtype, B, V, heads, D, seed)
        edge_keep = keep_mask(B, E, heads, seed + 3, "bool")
        out = star_ext.keypoint_graph_attention(
            h, a_src, a_dst, bad.to(DEVICE, index_dtype), col_bad.to(DEVICE, index_dtype), 0.2, edge_keep, 1.0
        )
        grads = torch.autograd.grad(out, [h, a_src, a_dst], torch.ones_like(out))
        synchronize()
        if tuple(out.shape) != (B, V, heads, D) or tuple(grads[0].shape) != (B, V, heads, D):
            raise Failure("keypoint_graph_attention (malformed rowptr): wrong output shape")


def graph_cases(quick: bool):
    star_graph = skeleton_graph(2)
    star_graph32 = skeleton_graph(3, dtype=torch.int32)
    hub = hub_graph(45)
    empty_edges = (torch.zeros(6, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    cases = [
        ("skeleton T=2 B=3 heads=2 D=16", dict(B=3, heads=2, D=16, graph=star_graph)),
        ("skeleton T=3 int32 B=2 heads=1 D=12 bool dropout", dict(B=2, heads=1, D=12, graph=star_graph32, keep="bool")),
        ("hub (45 in-edges, empty row) B=2 heads=3 D=5 bool dropout", dict(B=2, heads=3, D=5, graph=hub, keep="bool")),
        (
            "hub B=2 heads=2 D=40 slope 0.01 non-contiguous",
            dict(B=2, heads=2, D=40, graph=hub, slope=0.01, noncontiguous=True),
        ),
        ("no edges E=0", dict(B=2, heads=2, D=4, graph=empty_edges)),
        ("empty batch B=0", dict(B=0, heads=2, D=16, graph=star_graph)),
        ("no features D=0", dict(B=2, heads=2, D=0, graph=star_graph)),
    ]
    if not quick:
        cases.append(
            (
                "skeleton T=12 B=4 heads=2 D=16 bool dropout",
                dict(B=4, heads=2, D=16, graph=skeleton_graph(12), keep="bool"),
            )
        )
    out = [(label, lambda dtype, kw=kw: graph_case(dtype, **kw)) for label, kw in cases]
    if DEVICE == "cuda":  # the CPU kernels reject these templates (they validate the CSR)
        out.append(("out-of-range col entries are absent", lambda dtype: out_of_range_case(dtype)))
        out.append(("malformed rowptr: no failure", lambda dtype: malformed_rowptr_case(dtype)))
    return out


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", default=",".join((*OPS, "extras")), help="comma-separated ops to check, and extras")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated dtypes to check")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller cases (for racecheck)")
    parser.add_argument(
        "--device",
        default="cuda",
        help="device to check (cpu only tests this script: it skips the malformed-CSR cases)",
    )
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 2
    info = star_ext.build_info()
    print(f"star_ext from {star_ext.__file__}; extension loaded: {info['extension_loaded']}")
    missing = [op for op, dev in info["kernels"].items() if not dev[DEVICE]]
    if not info["extension_loaded"] or missing:
        print(f"FAIL star_ext has no CUDA kernel for: {missing or list(OPS)} ({info['fallback_reason']})")
        return 1
    builders = {
        "keypoint_pool": keypoint_pool_cases,
        "guided_gem_pool": guided_gem_pool_cases,
        "keypoint_graph_attention": graph_cases,
    }
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    dtypes = [DTYPES[name.strip()] for name in args.dtypes.split(",") if name.strip()]
    failures = 0
    total = 0
    start = time.perf_counter()
    cases = [
        (f"{op} [{str(dtype).replace('torch.', '')}] {label}", lambda run=run, dtype=dtype: run(dtype))
        for op in ops
        if op != "extras"
        for label, run in builders[op](args.quick)
        for dtype in dtypes
    ]
    if "extras" in ops and DEVICE == "cuda":
        cases += [(f"extras: {label}", lambda check=check: check(DEVICE)) for label, check in cuda_op_extras.CHECKS]
    for name, run in cases:
        total += 1
        try:
            run()
            synchronize()
        except Exception as exc:  # noqa: BLE001 (report every failure, go on)
            failures += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
            if not isinstance(exc, (Failure, cuda_op_extras.Failure)):
                traceback.print_exc()
        else:
            print(f"PASS {name}")
        sys.stdout.flush()
    elapsed = time.perf_counter() - start
    print(f"\n{total - failures}/{total} cases passed in {elapsed:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
