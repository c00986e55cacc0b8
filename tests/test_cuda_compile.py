"""What only a GPU can show: torch.compile and CUDA graphs on CUDA, autocast, a second device,
the transposed-template cache of graph attention hit again and again.

Every test needs a CUDA device and skips cleanly without one (scripts/gpu_check.sh runs
them with ``-m cuda``). Non-finite inputs, unsupported exponents (NaN), double backward
and the non-contiguous and channels_last layouts run on CUDA through the device
parameters of test_op_*.py and test_op_layouts.py.
"""

from __future__ import annotations

import pytest
import torch

import star_ext
from op_cases import TOLERANCES, leaf
from star_ext import reference

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


def op_inputs(name: str, device="cuda", dtype=torch.float32, seed=0):
    """Small inputs of each op at STAR-like proportions, float inputs requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    if name == "keypoint_pool":
        feat = torch.rand(6, 16, 18, 9, generator=gen)
        kpts = torch.rand(6, 17, 3, generator=gen)
        floats, rest = [feat, kpts], (0.1, 1e-6)
    elif name == "guided_gem_pool":
        x = torch.rand(4, 6, 32, generator=gen) + 0.05
        weight = torch.softmax(torch.randn(4, 5, 32, generator=gen), dim=1)
        p = torch.tensor([0.7, 1.0, 3.0, 5.0, 7.0])
        floats, rest = [x, weight, p], (1e-6,)
    else:
        rowptr, col = star_ext.skeleton_graph(3)
        v = rowptr.numel() - 1
        h = torch.randn(4, v, 2, 8, generator=gen)
        floats = [h, torch.randn(4, v, 2, generator=gen), torch.randn(4, v, 2, generator=gen)]
        rest = (rowptr.to(device), col.to(device), 0.2, None, 1.0)
    return [leaf(t.to(device, dtype)) for t in floats], rest


OPS = ["keypoint_pool", "guided_gem_pool", "keypoint_graph_attention"]


def grads_of(out: torch.Tensor, inputs) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(out.shape, generator=gen).to(out.device, out.dtype)
    return list(torch.autograd.grad(out, inputs, weight))


@pytest.mark.parametrize("name", OPS)
def test_each_op_compiles_with_inductor_on_cuda(name):
    """The fakes' strides hold in inductor's generated code (it asserts them), forward and backward."""
    floats, rest = op_inputs(name)
    op = getattr(star_ext, name)
    compiled = torch.compile(lambda *a: torch.relu(op(*a)) * 2, fullgraph=True)
    out, want = compiled(*floats, *rest), torch.relu(op(*floats, *rest)) * 2
    torch.testing.assert_close(out, want)
    for got, expected in zip(grads_of(out, floats), grads_of(want, floats), strict=False):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", OPS)
def test_each_op_compiles_on_channels_last_and_transposed_inputs(name):
    floats, rest = op_inputs(name)
    laid = [
        t.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
        if t.dim() == 4
        else t.detach().transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_()
        if t.dim() > 1
        else t
        for t in floats
    ]
    op = getattr(star_ext, name)
    out = torch.compile(op, fullgraph=True)(*laid, *rest)
    torch.testing.assert_close(out, op(*floats, *rest))
    grads_of(out, [t for t in laid if t.requires_grad])


@pytest.mark.parametrize("name", OPS)
def test_each_reference_compiles_fullgraph_on_cuda(name):
    """No host read in the references: the compiled reference (the benchmarks' 'compiled' column) is one graph."""
    floats, rest = op_inputs(name)
    fn = getattr(reference, name)
    out = torch.compile(fn, fullgraph=True)(*floats, *rest)
    torch.testing.assert_close(out, fn(*floats, *rest), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", OPS)
def test_autocast_runs_each_op_in_the_feature_dtype(name, dtype):
    floats, rest = op_inputs(name)
    with torch.autocast("cuda", dtype=dtype):
        feature = floats[0].to(dtype)  # float16/bfloat16 layer output, float32 steering inputs
        out = getattr(star_ext, name)(feature, *floats[1:], *rest)
    assert out.dtype == dtype
    want = getattr(reference, name)(feature.double(), *(t.double() for t in floats[1:]), *rest)
    tol = TOLERANCES[dtype]
    torch.testing.assert_close(out.double(), want, rtol=tol["rtol"], atol=tol["atol"])
    grads_of(out, [floats[1]])  # gradients reach the float32 inputs through the casts


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second CUDA device")
@pytest.mark.parametrize("name", OPS)
def test_ops_run_on_a_second_device_while_the_first_is_current(name):
    """The kernels guard the device of their inputs: cuda:1 data while cuda:0 is current."""
    on0, rest0 = op_inputs(name, "cuda:0")
    on1, rest1 = op_inputs(name, "cuda:1")
    op = getattr(star_ext, name)
    with torch.cuda.device(0):
        out1 = op(*on1, *rest1)
        g1 = grads_of(out1, on1)
    out0 = op(*on0, *rest0)
    assert out1.device == torch.device("cuda:1")
    torch.testing.assert_close(out1.cpu(), out0.cpu())
    for a, b in zip(g1, grads_of(out0, on0), strict=False):
        assert a.device == torch.device("cuda:1")
        torch.testing.assert_close(a.cpu(), b.cpu())


def test_transposed_template_cache_hits_give_the_computed_gradients():
    """The backward's transposed template is cached per template: repeated backward passes
    (hits) give bitwise the first pass's gradients, and a changed template (a miss) gives
    the new template's gradients, not the cached ones."""
    floats, (rowptr, col, slope, keep, scale) = op_inputs("keypoint_graph_attention")
    op = star_ext.keypoint_graph_attention
    first = grads_of(op(*floats, rowptr, col, slope, keep, scale), floats)
    for _ in range(3):
        again = grads_of(op(*floats, rowptr, col, slope, keep, scale), floats)
        assert all(torch.equal(a, b) for a, b in zip(again, first, strict=False))
    other_rowptr, other_col = star_ext.skeleton_graph(3, self_loops=False)
    other_rowptr, other_col = other_rowptr.cuda(), other_col.cuda()
    got = grads_of(op(*floats, other_rowptr, other_col, slope, keep, scale), floats)
    want = grads_of(reference.keypoint_graph_attention(*floats, other_rowptr, other_col, slope, keep, scale), floats)
    for a, b in zip(got, want, strict=False):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def star_network(training: bool):
    from star.config import load_config
    from star.models import STAR

    cfg = load_config(None, ["model.seq_len=3", "model.backbone.name=resnet18", "model.backbone.pretrained=null"])
    torch.manual_seed(0)
    return STAR(cfg.model, 4).cuda().train(training), cfg


def network_batch():
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(4, 3, 3, 64, 32, generator=gen).cuda()
    keypoints = torch.rand(4, 3, 17, 3, generator=gen).cuda()
    return frames, keypoints, (torch.arange(4) % 2).cuda(), (torch.arange(4) // 2).cuda()


def test_network_compiles_fullgraph_on_cuda():
    model, _ = star_network(training=False)
    frames, keypoints, modality, _ = network_batch()
    with torch.no_grad():
        got = torch.compile(model, fullgraph=True)(frames, keypoints, modality)
        want = model(frames, keypoints, modality)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


def test_training_step_captured_in_cuda_graphs():
    """mode="reduce-overhead": the training forward and backward replay as CUDA graphs,
    graph attention's template cache included; losses match eager steps."""
    from star.losses import StarLoss
    from star.models import CompiledNetwork

    frames, keypoints, modality, pids = network_batch()
    frames, keypoints = frames.double(), keypoints.double()

    def losses(compiled: bool) -> list[float]:
        model, cfg = star_network(training=True)
        model.double()  # float64: float32 rounding grows chaotically over steps on a 4-tracklet batch
        run = CompiledNetwork(model, mode="reduce-overhead") if compiled else model
        criterion = StarLoss(cfg.loss)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        torch.manual_seed(1)
        out = []
        for _ in range(4):  # warm-up, capture, then replays
            loss, _ = criterion(run(frames, keypoints, modality), pids)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            out.append(loss.detach().clone())
        return [float(v) for v in out]

    with torch._inductor.config.patch(fallback_random=True):
        got, want = losses(compiled=True), losses(compiled=False)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0.0)  # float64: 1e-12 on the CPU (test_models_compile)
