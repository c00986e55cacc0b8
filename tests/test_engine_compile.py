"""``train.compile``: training, evaluation and extraction through torch.compile.

The backend is swapped for aot_eager (dynamo and AOT autograd, no C++ code generation),
so the wiring is tested in seconds; inductor itself is compared with eager in
tests/test_models_compile.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import star.models.compiled as compiled_module
from star.config import RunConfig
from star.data import SynthConfig, generate_synthetic
from star.engine import Trainer
from star.engine.checkpoint import load_checkpoint
from star.engine.inference import evaluate_checkpoint, extract_checkpoint_features
from star.models import STAR, CompiledNetwork
from tiny_run import SYNTH, config

pytestmark = pytest.mark.slow  # a training run, an evaluation and an extraction through dynamo


@pytest.fixture()
def counted_compiles(monkeypatch):
    """aot_eager as the backend; counts the compiled calls."""
    calls = []
    original = CompiledNetwork.forward

    def forward(self, *args):
        calls.append(self.network.training)
        return original(self, *args)

    monkeypatch.setattr(compiled_module, "BACKEND", "aot_eager")
    torch._dynamo.reset()  # below the recompile limit (past it dynamo runs the code eagerly)
    monkeypatch.setattr(CompiledNetwork, "forward", forward)
    return calls


def test_training_evaluation_and_extraction_run_compiled(tmp_path, counted_compiles):
    root = tmp_path / "synthetic"
    generate_synthetic(root, SynthConfig(**SYNTH))
    cfg = RunConfig.from_dict(config(root, tmp_path / "run", train={"compile": True}))
    summary = Trainer(cfg).run()
    assert summary["epoch"] == 2 and summary["step"] == 4
    # 4 training steps, then the evaluation's batches in eval mode
    assert counted_compiles[:4] == [True] * 4 and len(counted_compiles) > 4 and not any(counted_compiles[4:])

    # the checkpoint holds the plain network's state
    state = load_checkpoint(Path(cfg.output_dir) / "last.pt")["model"]
    assert set(state) == set(STAR(cfg.model, 2).state_dict())

    counted_compiles.clear()
    result = evaluate_checkpoint(cfg, Path(cfg.output_dir) / "last.pt")
    assert counted_compiles and result.table
    counted_compiles.clear()
    features = extract_checkpoint_features(cfg, Path(cfg.output_dir) / "last.pt", tmp_path / "f.npz")
    assert counted_compiles and torch.isfinite(features["query"].feats).all()
