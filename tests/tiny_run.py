"""The tiny synthetic dataset and training run the end-to-end tests share (engine, CLI, export).

32x16 frames, 12 identities of 2 tracklets on 2 cameras, 12-13 frames each: seconds to
generate, enough for 2-identity batches of 4-frame tracklets; EVAL_SYNTH, the evaluation tests'
set. Tests that need another size build their own SynthConfig, explicitly.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

SYNTH = {"ids": 12, "tracklets": 2, "cameras": 2, "min_frames": 12, "max_frames": 13, "height": 32, "width": 16}

# The evaluation tests' dataset (test_engine_eval.py, test_frame_substitution.py): 8 identities,
# 4 of them in the test split, on 3 cameras, 12-14 frames a tracklet, no short tracklets.
EVAL_SYNTH = {
    "ids": 8,
    "test_ids": 4,
    "tracklets": 2,
    "cameras": 3,
    "min_frames": 12,
    "max_frames": 14,
    "short_fraction": 0.0,
    "height": 32,
    "width": 16,
    "seed": 3,
}


def deep_update(base: dict, over: dict) -> dict:
    """A copy of ``base`` with ``over``'s values, nested dicts merged key by key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config(root: Path, out: Path, **over) -> dict:
    """A run config dict: resnet18 without pretrained weights, 4-frame tracklets, 2 epochs of
    2 iterations on the synthetic dataset at ``root``, writing to ``out``; ``over`` merged in."""
    base = {
        "output_dir": str(out),
        "seed": 0,
        "deterministic": True,
        "data": {
            "dataset": "synthetic",
            "root": str(root),
            "height": 32,
            "width": 16,
            "num_ids": 2,
            "num_per_modality": 1,
            "num_workers": 0,
            "batches_per_epoch": 2,
            "eval_batch_size": 32,
            "synthetic": SYNTH,
        },
        "model": {"seq_len": 4, "backbone": {"name": "resnet18", "pretrained": None}},
        "optim": {"epochs": 2, "warmup_epochs": 1, "milestones": [1], "lr": 0.01},
        "train": {"eval_period": 0, "log_period": 1, "progress": False, "tensorboard": False},
        "eval": {"visrank_queries": 0},
    }
    return deep_update(base, over)


REPO_SYNTHETIC_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "synthetic.yaml"


def quick_train_argv(root: Path, out: Path, *overrides: str) -> list[str]:
    """``star train`` argv: the repo's configs/synthetic.yaml on the dataset at ``root``, writing to
    ``out``, cut to one epoch of 2 iterations of 2-identity batches without warm-up or loader
    workers; ``overrides`` appended."""
    return [
        "train",
        "--config",
        str(REPO_SYNTHETIC_CONFIG),
        f"data.root={root}",
        f"output_dir={out}",
        "optim.epochs=1",
        "optim.warmup_epochs=0",
        "optim.milestones=[]",
        "data.batches_per_epoch=2",
        "data.num_ids=2",
        "data.num_workers=0",
        *overrides,
    ]


def subprocess_env(**extra: str) -> dict:
    """The environment of a child process running star: one thread each for OpenMP and MKL
    (the machine's cores are shared), no inherited torch.distributed variables."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env
