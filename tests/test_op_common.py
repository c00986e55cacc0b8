"""The checks every fused op gets, once for each op of op_cases.OP_CASES: gradcheck, torch.library
opcheck, torch.compile(fullgraph) against eager, and double backward rejected by name.

Op-specific behaviour (references, bad input, non-finite values) is tested in test_op_<name>.py.
"""

from __future__ import annotations

import pytest
import torch

from op_cases import (
    DEVICES,
    OP_CASES,
    OpCase,
    assert_compiled_matches_eager,
    assert_double_backward_rejected,
    leaf,
    opcheck_with_and_without_grad,
)

CASES = [pytest.param(case, id=case.id) for case in OP_CASES]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES)
def test_gradcheck(case: OpCase, device):
    floats, rest = case.inputs(device, torch.float64)
    assert torch.autograd.gradcheck(lambda *f: case.op(*f, *rest), [leaf(t) for t in floats])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES)
def test_opcheck(case: OpCase, device):
    floats, rest = case.inputs(device, torch.float32)
    opcheck_with_and_without_grad(case.op, floats, rest)


@pytest.mark.slow  # torch.compile: seconds each with a cold compile cache
@pytest.mark.parametrize("case", CASES)
def test_torch_compile_fullgraph(case: OpCase):
    floats, rest = case.inputs("cpu", torch.float32)
    assert_compiled_matches_eager(case.in_graph, floats[:1], *floats[1:], *rest)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES)
def test_double_backward_is_rejected(case: OpCase, device):
    floats, rest = case.inputs(device, torch.float64)
    inputs = [leaf(t) for t in floats]
    assert_double_backward_rejected(case.name, case.op(*inputs, *rest), inputs)
