"""Undecodable frames: counted, reported at the end of each epoch and evaluation, and a stop past the limit."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from star.cli import main
from star.config import RunConfig
from star.data import SynthConfig, generate_synthetic, load_dataset, open_keypoint_store
from star.data.substitution import FrameSubstitutions, TooManySubstitutedFramesError
from star.engine import evaluate
from star.models import build_model
from tiny_run import EVAL_SYNTH, quick_train_argv

T, H, W = 4, 32, 16


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synth") / "ds", SynthConfig(**EVAL_SYNTH))


@pytest.fixture
def root(master, tmp_path):
    return shutil.copytree(master, tmp_path / "ds")


def _garble(root, fraction: float = 1.0) -> list[str]:
    frames = sorted(root.glob("[0-9]*/*/*/*.jpg"))
    spoiled = frames[: max(1, int(len(frames) * fraction))]
    for path in spoiled:
        path.write_bytes(b"not a jpeg")
    return [str(p) for p in spoiled]


def _cfg(root, **data) -> RunConfig:
    return RunConfig.from_dict(
        {
            "data": {
                "dataset": "synthetic",
                "root": str(root),
                "height": H,
                "width": W,
                "num_workers": 0,
                "eval_batch_size": 3,
                **data,
            },
            "model": {"seq_len": T, "backbone": {"name": "resnet18", "pretrained": None}},
        }
    )


def _evaluate(root, **data):
    cfg = _cfg(root, **data)
    ds = load_dataset("synthetic", root, verbose=False)
    torch.manual_seed(0)
    model = build_model(cfg.model, ds.num_train_pids)
    return evaluate(model, ds, open_keypoint_store(ds), cfg)


def test_evaluation_of_garbage_frames_stops_naming_count_and_files(root):
    spoiled = _garble(root)
    with pytest.raises(TooManySubstitutedFramesError) as err:
        _evaluate(root)
    message = str(err.value)
    assert message.startswith("evaluation: ") and "could not be decoded and were substituted" in message
    assert "data.max_substituted_fraction is 1.00%" in message
    named = message.split("first unreadable files: ")[1].split(";")[0].split(", ")
    assert 1 <= len(named) <= 5 and set(named) <= set(spoiled)


def test_evaluation_reports_the_count_and_allows_up_to_the_limit(root):
    clean = _evaluate(root)
    assert clean.substituted_frames == 0 and "frames: no frame substituted (of " in clean.table
    ds = load_dataset("synthetic", root, verbose=False)
    for t in ds.query[:2]:  # the first frame is always sampled at test time
        with open(t.paths[0], "wb") as f:
            f.write(b"garbage")
    result = _evaluate(root, max_substituted_fraction=0.5)
    n = result.substituted_frames
    assert n > 0 and f"frames: {n} of " in result.table and "unreadable: " in result.table


def test_counter_stops_early_once_the_whole_allowance_is_spent():
    counter = FrameSubstitutions("epoch 1", 0.01, expected_frames=1000)
    batch = {"frames": torch.zeros(2, 4, 1), "substituted": torch.tensor([4, 4]), "substituted_files": ["a\nb", "c"]}
    counter.add(batch)  # 8 of an allowance of 10
    with pytest.raises(
        TooManySubstitutedFramesError, match=r"epoch 1: 16 frames .* among 16 of the 1000 frames read so far.*a, b, c"
    ):
        counter.add(batch)
    small = FrameSubstitutions("evaluation", 0.01)
    small.add({"frames": torch.zeros(1, 4, 1), "substituted": torch.tensor([1]), "substituted_files": ["a"]})
    with pytest.raises(TooManySubstitutedFramesError, match="among the 4 frames read"):
        small.check()


def test_training_on_garbage_frames_stops_with_one_error(root, tmp_path, capsys):
    _garble(root)
    rc = main(
        quick_train_argv(
            root,
            tmp_path / "O",
            f"data.height={H}",
            f"data.width={W}",
            f"model.seq_len={T}",
            "train.progress=false",
            "train.tensorboard=false",
        )
    )
    err = capsys.readouterr().err
    assert rc == 1
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "error: epoch 1: " in error_lines[0] and "were substituted" in error_lines[0]
    assert not (tmp_path / "O" / "metrics.json").exists()


def test_dataset_items_carry_the_substitution_count(root):
    from star.data import TrackletDataset

    ds = load_dataset("synthetic", root, verbose=False)
    t = ds.query[0]
    bad = t.paths[0]
    with open(bad, "wb") as f:
        f.write(b"garbage")
    item = TrackletDataset([t], train=False, num_frames=T)[0]
    assert item["substituted"] == 1 and item["substituted_files"] == bad
    assert np.asarray(item["frames"]).shape[0] == T
