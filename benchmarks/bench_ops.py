"""Fused ops vs their pure-PyTorch references, forward and forward+backward.

    pytest benchmarks/bench_ops.py --benchmark-only --benchmark-json=ops.json
    python benchmarks/report.py ops.json

On CUDA the reference compiled with torch.compile, and graph attention in
torch_geometric's GATConv (when installed), are measured in the same run. CUDA
rows also record the compulsory bytes of the pass and the device's measured
copy bandwidth, from which report.py prints the achieved fraction.
"""

from __future__ import annotations

import pytest
import torch

import star_ext
from bench_inputs import GEM_RELEASE_SETTING, INPUTS, SMALL
from star_ext import reference

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device"))]
IMPLS = ["fused", "reference", pytest.param("compiled", marks=pytest.mark.skipif(not HAS_CUDA, reason="CUDA only"))]
ROUNDS = 1 if SMALL else 5

_compiled: dict[str, object] = {}


def implementation(op: str, impl: str):
    if impl == "fused":
        return getattr(star_ext, op)
    if impl == "reference":
        return getattr(reference, op)
    if op not in _compiled:
        _compiled[op] = torch.compile(getattr(reference, op))
    return _compiled[op]


def step(fn, args, kwargs, backward: bool, device: str):
    def run():
        for t in args:
            t.grad = None
        out = fn(*args, **kwargs)
        if backward:
            out.backward(torch.ones_like(out))
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def compulsory_bytes(args, out_bytes: int, backward: bool) -> int:
    """Bytes a pass must move at least: inputs read and output written once;
    the backward reads the output gradient and the inputs again and writes one
    gradient per input that requires one."""
    tensors = [t for t in args if isinstance(t, torch.Tensor)]
    inputs = sum(t.nbytes for t in tensors)
    total = inputs + out_bytes
    if backward:
        total += out_bytes + inputs + sum(t.nbytes for t in tensors if t.requires_grad)
    return total


_copy_gbps: list[float] = []


def copy_bandwidth_gbps() -> float:
    """Device-to-device copy of 1 GiB, bytes read + written per second (median of 10): the practical peak."""
    if not _copy_gbps:
        src = torch.empty(2**28, device="cuda").uniform_()
        dst = torch.empty_like(src)
        dst.copy_(src)
        times = []
        for _ in range(10):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        times.sort()
        _copy_gbps.append(2 * src.nbytes / times[len(times) // 2] / 1e9)
        del src, dst
    return _copy_gbps[0]


def measure(benchmark, run, device):
    run()  # warm-up, and compilation for torch.compile
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        benchmark.extra_info["peak_extra_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward_backward"])
@pytest.mark.parametrize("op", list(INPUTS))
def test_op(benchmark, op, backward, impl, device):
    assert star_ext.HAS_C, star_ext.FALLBACK_REASON
    args, kwargs = INPUTS[op](device)
    pass_name = "forward_backward" if backward else "forward"
    benchmark.group = f"{op} {pass_name} {device}"
    benchmark.extra_info.update(op=op, pass_=pass_name, impl=impl, device=device)
    fn = implementation(op, impl)
    measure(benchmark, step(fn, args, kwargs, backward, device), device)
    if device == "cuda":
        with torch.no_grad():
            out_bytes = fn(*args, **kwargs).nbytes
        benchmark.extra_info["bytes"] = compulsory_bytes(args, out_bytes, backward)
        benchmark.extra_info["copy_gbps"] = copy_bandwidth_gbps()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward_backward"])
def test_guided_gem_pool_release_setting(benchmark, backward, impl, device):
    """guided_gem_pool on the same inputs with eps = 0 and floor = 1e-12 (frames at 0, the floor term)."""
    assert star_ext.HAS_C, star_ext.FALLBACK_REASON
    args, _ = INPUTS["guided_gem_pool"](device)
    pass_name = "forward_backward" if backward else "forward"
    benchmark.group = f"guided_gem_pool {pass_name} {device}"
    benchmark.extra_info.update(op="guided_gem_pool eps=0 floor=1e-12", pass_=pass_name, impl=impl, device=device)
    measure(
        benchmark, step(implementation("guided_gem_pool", impl), args, GEM_RELEASE_SETTING, backward, device), device
    )


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward_backward"])
def test_pyg_gatconv(benchmark, backward):
    """The same message passing in PyG's GATConv: the graph batched as disjoint copies of the template."""
    if not HAS_CUDA:
        pytest.skip("CUDA only")
    pyg = pytest.importorskip("torch_geometric.utils")
    (h, a_src, a_dst, rowptr, col), _ = INPUTS["keypoint_graph_attention"]("cuda")
    b, v, heads, d = h.shape
    dst = star_ext.graph.csr_destinations(rowptr)
    offsets = (torch.arange(b, device="cuda") * v).view(-1, 1)
    edge_index = torch.stack([(col + offsets).flatten(), (dst + offsets).flatten()])
    conv = _gat_message_passing(pyg)

    def fn(x, s, t):
        return conv(x.reshape(b * v, heads, d), s.reshape(b * v, heads), t.reshape(b * v, heads), edge_index)

    pass_name = "forward_backward" if backward else "forward"
    benchmark.group = f"keypoint_graph_attention {pass_name} cuda"
    benchmark.extra_info.update(op="keypoint_graph_attention", pass_=pass_name, impl="pyg_gatconv", device="cuda")
    measure(benchmark, step(fn, (h, a_src, a_dst), {}, backward, "cuda"), "cuda")


def _gat_message_passing(pyg_utils):
    """GATConv's attention and aggregation (projection excluded, as in our op) on precomputed logits."""
    import torch_geometric.nn as pyg_nn

    class Attention(pyg_nn.MessagePassing):
        def __init__(self):
            super().__init__(aggr="add", node_dim=0)

        def forward(self, x, alpha_src, alpha_dst, edge_index):
            return self.propagate(edge_index, x=x, alpha=(alpha_src, alpha_dst))

        def message(self, x_j, alpha_j, alpha_i, index, ptr, size_i):
            alpha = torch.nn.functional.leaky_relu(alpha_j + alpha_i, 0.2)
            alpha = pyg_utils.softmax(alpha, index, ptr, size_i)
            return alpha.unsqueeze(-1) * x_j

    return Attention()
