"""Training-step time (forward + losses + backward) of full STAR vs the baseline network.

    pytest benchmarks/bench_model.py --benchmark-only --benchmark-json=model.json

The baseline is the same network with the skeleton modules off (no frame-level
correction, no sequence-level guidance: frames averaged over time); both keep
the two-stream backbone and the style disturbance. Settings:

- cpu: a reduced setting a 2-core machine can run, ResNet-50, 2 ids x 1
  tracklet x 2 modalities (B = 4), T = 12, frames 144x72 (half the paper's
  side), float32.
- cuda: the paper's shapes, ResNet-50, 8 ids x 2 tracklets x 2 modalities
  (B = 32), T = 12, frames 288x144, AMP (float16 autocast, GradScaler);
  skipped without a GPU.

STAR_BENCH_SMALL=1 shrinks both to ResNet-18, B = 4, T = 3, 32x16 (the CI
smoke run, with --benchmark-disable).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch

from star.losses import LossConfig, compute_losses
from star.models import build_model

SMALL = os.environ.get("STAR_BENCH_SMALL", "") == "1"
HAS_CUDA = torch.cuda.is_available()
ROUNDS = 1 if SMALL else 3


@dataclass(frozen=True)
class Setting:
    backbone: str
    ids: int
    tracklets: int  # per id and modality
    frames: int
    height: int
    width: int
    amp: bool

    @property
    def batch(self) -> int:
        return self.ids * self.tracklets * 2


SETTINGS = {
    "cpu": Setting("resnet50", 2, 1, 12, 144, 72, amp=False),
    "cuda": Setting("resnet50", 8, 2, 12, 288, 144, amp=True),
}
if SMALL:
    SETTINGS = {device: Setting("resnet18", 2, 1, 3, 32, 16, amp=device == "cuda") for device in SETTINGS}

# model overrides, loss overrides
NETWORKS = {
    "baseline": (
        {"frame_correction": {"enabled": False}, "sequence": {"enabled": False}},
        {"pose_weight": 0.0, "consistency_weight": 0.0},
    ),
    "star": ({}, {}),
}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device"))]


def inputs(s: Setting, device: str):
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(s.batch, s.frames, 3, s.height, s.width, generator=gen)
    keypoints = torch.rand(s.batch, s.frames, 17, 3, generator=gen)
    # Tracklets ordered (id, modality, tracklet): each id has both modalities.
    modality = torch.arange(s.batch).div(s.tracklets, rounding_mode="floor") % 2
    pids = torch.arange(s.batch).div(2 * s.tracklets, rounding_mode="floor")
    return [t.to(device) for t in (frames, keypoints, modality, pids)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("network", list(NETWORKS))
def test_train_step(benchmark, network, device):
    s = SETTINGS[device]
    model_overrides, loss_overrides = NETWORKS[network]
    torch.manual_seed(0)
    cfg = {
        "seq_len": s.frames,
        "backbone": {"name": s.backbone, "pretrained": None},
        **model_overrides,
    }
    model = build_model(cfg, s.ids).to(device).train()
    loss_cfg = LossConfig(**loss_overrides)
    frames, keypoints, modality, pids = inputs(s, device)
    scaler = torch.amp.GradScaler(device, enabled=s.amp)

    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.float16, enabled=s.amp):
            total, _ = compute_losses(model(frames, keypoints, modality), pids, loss_cfg)
        scaler.scale(total).backward()
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.group = f"train step {device}"
    benchmark.extra_info.update(
        network=network,
        device=device,
        backbone=s.backbone,
        batch=s.batch,
        frames=s.frames,
        size=f"{s.height}x{s.width}",
        amp=s.amp,
        threads=torch.get_num_threads(),
    )
    step()  # warm-up: allocator, oneDNN/cuDNN algorithm choice
    benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=1)
