"""Fixtures shared by the test modules (settings and helpers without fixtures: tiny_run.py,
op_cases.py, data_fixtures.py, pose_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from star.data import SynthConfig, generate_synthetic
from tiny_run import SYNTH

# Module fixtures that train a model (seconds each even on the tiny dataset): every test that
# uses one is marked slow, so ``pytest -m "not slow"`` never builds them.
TRAINED_RUN_FIXTURES = {"run", "finished_run", "trained", "exported"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TRAINED_RUN_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests and module fixtures (the machine's cores are shared);
    a module asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``, which sets
    it up before the module's other module-scoped fixtures."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """The tiny synthetic dataset (tiny_run.SYNTH), generated once per module."""
    root = tmp_path_factory.mktemp("synth") / "synthetic"
    generate_synthetic(root, SynthConfig(**SYNTH))
    return root
