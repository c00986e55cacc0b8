"""Training throughput of the real trainer, data loading included (docs/results.md, performance targets).

    cd benchmarks && python -m pytest bench_train.py --benchmark-only -s

Each case writes a synthetic dataset (``star.data.generate_synthetic``, the HITSZ-VCM
layout, JPEG frames at the setting's size), then runs ``star.train`` for two epochs of
``iters`` iterations each: the first warms up (allocator, cuDNN autotuning, DataLoader
workers), the second is measured from the run's own ``log.jsonl`` (one ``train`` record
per epoch: ``log_period = iters``). Reported in ``extra_info`` and printed:

- ``s_per_iter`` (wall time per iteration, data wait included), ``it_per_s``;
- ``s_per_hitsz_epoch``: ``s_per_iter`` x 268, the iterations of one HITSZ-VCM epoch at
  8 ids x 2 tracklets x 2 modalities (9,751 training tracklets);
- ``data_wait``: the fraction of the iteration the loop waited for the next batch;
- ``loader_frames_per_s``: frames consumed per second (batch x T / s_per_iter);
- ``peak_memory_mb``: peak CUDA memory allocated (CPU: process RSS);
- ``warmup_extra_s``: how much longer the first (warm-up) epoch took than the measured one,
  ``iters`` x the difference of their ``s_per_iter``: with ``train.compile`` mostly the
  compilation of the training graph (the eval graph compiles during the final evaluation,
  which is in pytest-benchmark's time only).

Each network runs eager and compiled (``train.compile=true``, torch.compile with inductor);
the compiled cases are skipped with STAR_BENCH_SMALL=1 (compiling takes minutes on a CPU).

The time pytest-benchmark reports is the whole call (dataset read, model build, both
epochs, the final evaluation); the figures above are the ones to compare.

Settings:

- cuda: the paper's shapes: full STAR (or the baseline network), ResNet-50 (random init:
  no downloads), 8 ids x 2 tracklets x 2 modalities x 12 frames of 288x144, AMP, 8
  loader workers, 40 measured iterations; skipped without a GPU.
- cpu: ResNet-18, 2 ids x 1 tracklet x 2 modalities x 6 frames of 64x32, 2 workers, 4
  measured iterations (what a 2-core machine can run).

STAR_BENCH_SMALL=1 (the CI smoke run): ResNet-18, 2 x 1 x 2 x 3 frames of 32x16, 2
iterations. ``STAR_BENCH_TRAIN_OVERRIDES`` adds ``key=value`` config overrides to every
case (separated by spaces), to measure one lever at a time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest
import torch

from star import train
from star.config import load_config
from star.data import SynthConfig, generate_synthetic

SMALL = os.environ.get("STAR_BENCH_SMALL", "") == "1"
HAS_CUDA = torch.cuda.is_available()
HITSZ_VCM_ITERS_PER_EPOCH = 268  # 9,751 training tracklets at 8 ids x 2 tracklets x 2 modalities
CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "hitsz_vcm", "star.yaml")
EXTRA_OVERRIDES = os.environ.get("STAR_BENCH_TRAIN_OVERRIDES", "").split()


@dataclass(frozen=True)
class Setting:
    backbone: str
    ids: int  # per batch
    tracklets: int  # per id and modality
    frames: int
    height: int
    width: int
    amp: bool
    workers: int
    iters: int  # measured iterations (and as many warm-up ones)

    @property
    def batch(self) -> int:
        return self.ids * self.tracklets * 2


SETTINGS = {
    "cuda": Setting("resnet50", 8, 2, 12, 288, 144, amp=True, workers=8, iters=40),
    "cpu": Setting("resnet18", 2, 1, 6, 64, 32, amp=False, workers=2, iters=4),
}
if SMALL:
    SETTINGS = {d: Setting("resnet18", 2, 1, 3, 32, 16, amp=d == "cuda", workers=1, iters=2) for d in SETTINGS}

# the skeleton modules and their loss terms off: the baseline network of the paper's ablation
NETWORKS = {
    "star": [],
    "baseline": [
        "model.frame_correction.enabled=false",
        "model.sequence.enabled=false",
        "loss.pose_weight=0.0",
        "loss.consistency_weight=0.0",
    ],
}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device"))]
COMPILE = [
    pytest.param(False, id="eager"),
    pytest.param(True, id="compiled", marks=pytest.mark.skipif(SMALL, reason="compiling takes minutes")),
]


def synth_config(height: int, width: int) -> SynthConfig:
    # 2x the batch's ids for training (the other half is the test split), 3 tracklets per
    # modality so that 2 can be drawn per batch
    return SynthConfig(ids=24, tracklets=3, cameras=3, height=height, width=width)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """One synthetic dataset per frame size, written once per module."""
    made: dict[tuple[int, int], str] = {}

    def get(height: int, width: int) -> str:
        if (height, width) not in made:
            root = tmp_path_factory.mktemp(f"synthetic_{height}x{width}") / "data"
            generate_synthetic(root, synth_config(height, width))
            made[(height, width)] = str(root)
        return made[(height, width)]

    return get


def run_config(s: Setting, device: str, network: str, data_root: str, out: str, compiled: bool = False):
    synth = synth_config(s.height, s.width)
    overrides = [
        f"output_dir={out}",
        "data.dataset=synthetic",
        f"data.root={data_root}",
        *(f"data.synthetic.{k}={getattr(synth, k)}" for k in ("ids", "tracklets", "cameras", "height", "width")),
        f"data.height={s.height}",
        f"data.width={s.width}",
        f"data.num_ids={s.ids}",
        f"data.num_per_modality={s.tracklets}",
        f"data.num_workers={s.workers}",
        f"data.batches_per_epoch={s.iters}",
        f"model.seq_len={s.frames}",
        f"model.backbone.name={s.backbone}",
        "model.backbone.pretrained=null",
        "optim.epochs=2",
        "optim.warmup_epochs=1",
        "optim.milestones=[]",
        f"train.device={device}",
        f"train.amp={str(s.amp).lower()}",
        "train.eval_period=0",
        f"train.log_period={s.iters}",
        "train.tensorboard=false",
        "train.progress=false",
        "eval.visrank_queries=0",
        f"train.compile={str(compiled).lower()}",
        *NETWORKS[network],
        *EXTRA_OVERRIDES,
    ]
    return load_config(CONFIG, overrides)


def measured_epoch(out: str, epoch: int) -> dict:
    with open(os.path.join(out, "log.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    train_records = [r for r in records if r.get("type") == "train" and r.get("epoch") == epoch]
    assert len(train_records) == 1, f"expected one train record for epoch {epoch}, got {train_records}"
    return train_records[0]


@pytest.mark.parametrize("compiled", COMPILE)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("network", list(NETWORKS))
def test_train_throughput(benchmark, datasets, tmp_path, network, device, compiled):
    s = SETTINGS[device]
    data_root = datasets(s.height, s.width)
    runs = iter(range(1000))

    def run_once() -> str:
        out = str(tmp_path / f"run{next(runs)}")
        train(run_config(s, device, network, data_root, out, compiled))
        return out

    benchmark.group = f"train throughput {device}"
    out = benchmark.pedantic(run_once, rounds=1, iterations=1)
    record = measured_epoch(out, epoch=2)
    s_per_iter = record["time_per_iter"]
    warmup = measured_epoch(out, epoch=1)
    figures = {
        "s_per_iter": s_per_iter,
        "it_per_s": 1.0 / s_per_iter,
        "s_per_hitsz_epoch": s_per_iter * HITSZ_VCM_ITERS_PER_EPOCH,
        "data_wait": record["data_time"] / s_per_iter,
        "loader_frames_per_s": s.batch * s.frames / s_per_iter,
        "peak_memory_mb": record["memory_mb"],
        "warmup_extra_s": s.iters * (warmup["time_per_iter"] - s_per_iter),
    }
    benchmark.extra_info.update(
        network=network,
        device=device,
        compiled=compiled,
        backbone=s.backbone,
        batch=s.batch,
        frames=s.frames,
        size=f"{s.height}x{s.width}",
        amp=s.amp,
        workers=s.workers,
        measured_iters=s.iters,
        overrides=" ".join(EXTRA_OVERRIDES),
        **figures,
    )
    mode = "compiled" if compiled else "eager"
    print(f"\n[{device} {network} {mode}] " + ", ".join(f"{k} {v:.4g}" for k, v in figures.items()))
    assert record["iter"] == s.iters and s_per_iter > 0 and 0 <= figures["data_wait"] <= 1
