"""``train.compile``: training, evaluation and extraction through torch.compile.

The backend (``train.compile_backend``) is a registered one that counts the compiled
graph's calls around aot_eager (dynamo and AOT autograd, no C++ code generation), so the
wiring is tested in seconds; inductor itself is compared with eager in
tests/test_models_compile.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from star.config import RunConfig
from star.data import SynthConfig, generate_synthetic
from star.engine import Trainer
from star.engine.checkpoint import load_checkpoint
from star.engine.inference import evaluate_checkpoint, extract_checkpoint_features
from star.models import STAR, CompiledNetwork
from tiny_run import SYNTH, config

pytestmark = pytest.mark.slow  # a training run, an evaluation and an extraction through dynamo


COUNTING_BACKEND = "star_test_counting"
# Per call of a compiled graph: whether gradients were on (training steps) or off (evaluation).
GRAPH_CALLS: list[bool] = []


@torch._dynamo.register_backend(name=COUNTING_BACKEND)
def _counting_backend(graph, example_inputs):
    run = torch._dynamo.lookup_backend("aot_eager")(graph, example_inputs)

    def counted(*args):
        GRAPH_CALLS.append(torch.is_grad_enabled())
        return run(*args)

    return counted


@pytest.fixture()
def counted_compiles():
    """The counting backend's record, empty at the start of the test."""
    torch._dynamo.reset()  # below the recompile limit (past it dynamo runs the code eagerly)
    GRAPH_CALLS.clear()
    return GRAPH_CALLS


def test_training_evaluation_and_extraction_run_compiled(tmp_path, counted_compiles):
    root = tmp_path / "synthetic"
    generate_synthetic(root, SynthConfig(**SYNTH))
    compiled = {"compile": True, "compile_backend": COUNTING_BACKEND}
    cfg = RunConfig.from_dict(config(root, tmp_path / "run", train=compiled))
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


def test_an_unknown_backend_is_one_config_error_naming_the_key():
    from star.config import ConfigError

    with pytest.raises(ConfigError, match=r"train.compile_backend: unknown backend 'inductr'.*inductor"):
        CompiledNetwork(torch.nn.Linear(2, 2), backend="inductr")
