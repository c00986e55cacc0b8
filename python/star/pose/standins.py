"""Stand-ins with the compute of the real pose models, random weights, for benchmarks.

:mod:`star.pose.testing`'s tiny models have the real signatures but almost no arithmetic:
they measure the pipeline only. These have the real models' signatures *and* their cost,
built with PyTorch and exported with ``torch.onnx`` (nothing is downloaded):

- :func:`make_rtmpose_m_standin`: CSPNeXt-like backbone (stem, four stride-2 stages of
  3x3 convs and 5x5 depthwise blocks) + RTMCC-like head (7x7 conv to 17 maps, flatten,
  linear, SimCC linears): input ``input`` [N, 3, 256, 192], outputs ``simcc_x`` [N, 17, 384]
  and ``simcc_y`` [N, 17, 512], dynamic batch; about 1.9 GMACs per crop like RTMPose-m.
- :func:`make_yolox_standin`: YOLOX-like backbone + per-level heads at strides 8/16/32 on a
  640 x 640 letterbox: raw output [N, 8400, 6] (box, objectness, person), sigmoid scores;
  about 37 GMACs like YOLOX-m. A fixed bias makes one anchor a person box, so the
  detect-then-estimate loop runs its pose step on every frame.

Batch-norm statistics are calibrated on random input before export, so the activations stay
in the normal float range (random weights would otherwise shrink them into denormals, which
are far slower on the CPU and would make the measurement meaningless). :func:`count_macs`
counts the multiply-accumulates of convolutions and linear layers.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from .runtime import NUM_COCO_KEYPOINTS, YOLOX_STRIDES

POSE_HW = (256, 192)
DET_HW = (640, 640)


def _conv(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class _CSPStage(nn.Module):
    """Stride-2 3x3 conv, then a CSP block: half the channels through ``depth`` (3x3, 5x5 depthwise + 1x1) blocks."""

    def __init__(self, cin: int, cout: int, depth: int):
        super().__init__()
        mid = cout // 2
        self.down = _conv(cin, cout, 3, 2)
        self.main_in = _conv(cout, mid, 1)
        self.short = _conv(cout, mid, 1)
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(_conv(mid, mid, 3), _conv(mid, mid, 5, groups=mid), _conv(mid, mid, 1))
                for _ in range(depth)
            ]
        )
        self.out = _conv(2 * mid, cout, 1)

    def forward(self, x):
        x = self.down(x)
        return self.out(torch.cat([self.blocks(self.main_in(x)), self.short(x)], 1))


class RTMPoseStandin(nn.Module):
    """RTMPose-m's signature and about its compute (widths 48-96-192-384-768, depths 2-4-5-2: 1.91 GMACs)."""

    def __init__(self, widths=(48, 96, 192, 384, 768), depths=(2, 4, 5, 2), hidden: int = 256):
        super().__init__()
        h, w = POSE_HW
        self.stem = nn.Sequential(
            _conv(3, widths[0] // 2, 3, 2), _conv(widths[0] // 2, widths[0] // 2), _conv(widths[0] // 2, widths[0])
        )
        self.stages = nn.Sequential(
            *[_CSPStage(a, b, d) for a, b, d in zip(widths[:-1], widths[1:], depths, strict=False)]
        )
        self.final = nn.Conv2d(widths[-1], NUM_COCO_KEYPOINTS, 7, 1, 3)
        cells = (h // 32) * (w // 32)
        self.mlp = nn.Sequential(nn.Linear(cells, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.simcc_x = nn.Linear(hidden, 2 * w)
        self.simcc_y = nn.Linear(hidden, 2 * h)

    def forward(self, x):
        f = self.final(self.stages(self.stem(x))).flatten(2)  # [N, 17, 48]
        f = self.mlp(f)
        return self.simcc_x(f), self.simcc_y(f)


def person_bias(h: int, w: int) -> torch.Tensor:
    """[1, anchors, 6] raw-output bias: one stride-32 anchor holds a 128 x 256 px person box with
    objectness and person logits +8; every other anchor -8 (scores ~0 after the sigmoids)."""
    cells = [(h // s) * (w // s) for s in YOLOX_STRIDES]
    base = torch.zeros(1, sum(cells), 6)
    base[..., 4:] = -8.0
    base[0, cells[0] + cells[1] + 6 * (w // 32) + 5] = torch.tensor([0.5, 0.5, math.log(4.0), math.log(8.0), 8.0, 8.0])
    return base


class YOLOXStandin(nn.Module):
    """YOLOX-m-like compute at 640 x 640 (36.3 GMACs): raw predictions [N, anchors, 4 + 1 + 1] on the 8/16/32 grids."""

    base: torch.Tensor  # a buffer (register_buffer below)

    def __init__(self, widths=(48, 96, 192, 384, 768), depths=(2, 6, 6, 2), head: int = 256):
        super().__init__()
        self.stem = _conv(3, widths[0], 3, 2)
        self.stages = nn.ModuleList(
            [_CSPStage(a, b, d) for a, b, d in zip(widths[:-1], widths[1:], depths, strict=False)]
        )
        self.heads = nn.ModuleList(
            [
                nn.Sequential(
                    _conv(c, head, 1),
                    _conv(head, head),
                    _conv(head, head),
                    _conv(head, head),
                    _conv(head, head),
                    nn.Conv2d(head, 6, 1),
                )
                for c in widths[2:]
            ]
        )
        self.register_buffer("base", person_bias(*DET_HW))

    def forward(self, x):
        x = self.stem(x)
        levels = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 1:
                levels.append(x)
        raw = torch.cat([head(f).flatten(2).transpose(1, 2) for head, f in zip(self.heads, levels, strict=False)], 1)
        raw = 0.01 * raw + self.base  # random weights: small offsets around the fixed person box
        return torch.cat([raw[..., :4], torch.sigmoid(raw[..., 4:])], -1)


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of the Conv2d and Linear layers for input ``x``, per sample.

    Works on the ``meta`` device (model and ``x`` built there): shapes only, no arithmetic.
    """
    total = [0]

    def conv(m, _inp, out):
        total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, _inp, out):
        total[0] += out.numel() * m.in_features

    hooks = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return total[0] // x.shape[0]


def _calibrate_and_export(model: nn.Module, hw: tuple[int, int], path, outputs: list[str], scale: float) -> str:
    """Batch-norm statistics from one batch of inputs in the model's range (``scale`` x uniform [0, 1)), then export."""
    model.train()
    with torch.no_grad():
        model(scale * torch.rand(2, 3, *hw))
    model.eval()
    path = os.fspath(path)
    torch.onnx.export(
        model,
        (torch.randn(1, 3, *hw),),
        path,
        input_names=["input"],
        output_names=outputs,
        opset_version=17,
        dynamic_axes={name: {0: "batch"} for name in ["input", *outputs]},
        dynamo=False,
    )
    return path


def make_rtmpose_m_standin(path, seed: int = 0) -> str:
    """Write the RTMPose-m-sized stand-in (dynamic batch) to ``path``."""
    torch.manual_seed(seed)
    return _calibrate_and_export(RTMPoseStandin(), POSE_HW, path, ["simcc_x", "simcc_y"], 4.0)  # mean/std-normalised


def make_yolox_standin(path, seed: int = 0) -> str:
    """Write the YOLOX-m-sized stand-in (dynamic batch, raw output) to ``path``."""
    torch.manual_seed(seed)
    return _calibrate_and_export(YOLOXStandin(), DET_HW, path, ["output"], 255.0)  # unnormalised BGR
