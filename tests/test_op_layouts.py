"""The fake kernels against the real ones on every input layout, and the references under torch.compile.

torch.library.opcheck runs each op (forward and backward ops) for real and under
FakeTensorMode and compares the outputs' shape, dtype, device and strides: the fakes
must describe the contiguous tensors the kernels return, whatever the layout of the
inputs (contiguous, transposed, sliced, channels_last).
"""

from __future__ import annotations

import pytest
import torch

import star_ext
from op_cases import DEVICES, leaf
from star_ext import reference

# The half-precision cases repeat every layout through the same kernels: in the slow set only,
# which keeps the quick subset (pytest -m "not slow") under a minute.
DTYPES = [
    torch.float32,
    torch.float64,
    pytest.param(torch.float16, marks=pytest.mark.slow),
    pytest.param(torch.bfloat16, marks=pytest.mark.slow),
]
LAYOUTS = ["contiguous", "transposed", "sliced", "channels_last"]


def laid_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """t's values in another memory layout (same shape, dtype and device)."""
    if layout == "transposed" and t.dim() >= 2:  # the last two dimensions stored swapped
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "sliced":  # every other element of a twice as long last dimension
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        wide[..., ::2] = t
        return wide[..., ::2]
    if layout == "channels_last" and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


def random(gen, *shape, positive=False):
    t = torch.rand(*shape, generator=gen, dtype=torch.float64)
    return t + 0.1 if positive else t * 2 - 1


def keypoint_pool_inputs(gen):
    feat = random(gen, 2, 3, 4, 5)
    kpts = torch.rand(2, 4, 3, generator=gen, dtype=torch.float64)
    return [feat, kpts], [random(gen, 2, 4, 3)], (0.3, 1e-6)


def guided_gem_pool_inputs(gen):
    x = random(gen, 2, 4, 3, positive=True)
    weight = torch.softmax(random(gen, 2, 2, 3), dim=1)
    p = torch.tensor([1.0, 3.0], dtype=torch.float64)
    return [x, weight, p], [random(gen, 2, 3)], (1e-6, 1e-3)  # eps, floor


GRAPH = star_ext.skeleton_graph(2)


def keypoint_graph_attention_inputs(gen):
    rowptr, col = GRAPH
    v = rowptr.numel() - 1
    h = random(gen, 2, v, 2, 3)
    a_src, a_dst = random(gen, 2, v, 2), random(gen, 2, v, 2)
    keep = torch.rand(2, col.numel(), 2, generator=gen) > 0.3
    return [h, a_src, a_dst], [random(gen, 2, v, 2, 3)], (rowptr, col, 0.2, keep, 1.4)


# op name -> inputs(gen): (float inputs, [grad_out], the other arguments)
CASES = {
    "keypoint_pool": keypoint_pool_inputs,
    "guided_gem_pool": guided_gem_pool_inputs,
    "keypoint_graph_attention": keypoint_graph_attention_inputs,
}


def case(name, dtype, layout, device):
    gen = torch.Generator().manual_seed(0)
    floats, grad_out, rest = CASES[name](gen)
    move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
    floats = [laid_out(t.to(device, dtype), layout) for t in floats]
    grad_out = [laid_out(t.to(device, dtype), layout) for t in grad_out]
    return floats, grad_out, tuple(move(t) for t in rest)


def layout_params(name):
    # guided_gem_pool has no 4-D input: channels_last would repeat the contiguous case
    return [layout for layout in LAYOUTS if not (layout == "channels_last" and name == "guided_gem_pool")]


ALL_CASES = [(name, layout) for name in CASES for layout in layout_params(name)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,layout", ALL_CASES)
def test_opcheck_forward_op_on_every_layout(name, layout, dtype, device):
    floats, _, rest = case(name, dtype, layout, device)
    assert all(t.is_contiguous() for t in floats) == (layout == "contiguous")
    op = getattr(torch.ops.star, name)
    torch.library.opcheck(op, (*floats, *rest))
    # with gradients: the autograd registration and the backward op under AOT tracing
    torch.library.opcheck(op, (*(t.detach().requires_grad_() for t in floats), *rest))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,layout", ALL_CASES)
def test_opcheck_backward_op_on_every_layout(name, layout, dtype, device):
    floats, (grad_out,), rest = case(name, dtype, layout, device)
    op = getattr(torch.ops.star, f"{name}_backward")
    n = len(floats)
    # every gradient, and each one alone (the others come back as empty tensors)
    masks = [[True] * n] + [[i == j for j in range(n)] for i in range(n)]
    for mask in masks:
        torch.library.opcheck(op, (grad_out, *floats, *rest, mask))


@pytest.mark.slow  # torch.compile: 4-5 s each with a cold compile cache
@pytest.mark.parametrize("name", list(CASES))
def test_reference_compiles_in_one_graph(name):
    """Each reference under torch.compile(fullgraph=True) (inductor): no host read breaks
    its graph, and the compiled forward and gradients equal the eager ones."""
    floats, _, rest = case(name, torch.float32, "contiguous", "cpu")
    fn = getattr(reference, name)
    compiled = torch.compile(fn, fullgraph=True)
    a, b = [leaf(t) for t in floats], [leaf(t) for t in floats]
    out, want = compiled(*a, *rest), fn(*b, *rest)
    torch.testing.assert_close(out, want)
    out.square().sum().backward()
    want.square().sum().backward()
    for x, y in zip(a, b, strict=False):
        torch.testing.assert_close(x.grad, y.grad)


@pytest.mark.slow  # torch.compile: 4-5 s each with a cold compile cache
def test_compiled_reference_gives_nan_for_an_unsupported_exponent():
    """Where checking p would read the device (here: under torch.compile) the reference
    gives NaN, as the CUDA kernel does; eager on the CPU it raises."""
    (x, weight, _), _, (eps, floor) = case("guided_gem_pool", torch.float32, "contiguous", "cpu")
    p = torch.tensor([1.0, 1e-8])
    with pytest.raises(ValueError, match=r"p\[1\] = .* is outside the supported range"):
        reference.guided_gem_pool(x, weight, p, eps, floor)
    out = torch.compile(reference.guided_gem_pool, fullgraph=True, backend="aot_eager")(x, weight, p, eps, floor)
    assert torch.isnan(out).all()
