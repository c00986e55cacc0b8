"""Two-stream torchvision ResNet: one stem per modality, shared residual stages."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import cast

import torch
import torchvision
from torch import nn

from .config import BACKBONE_DIMS
from .masked_norm import masked_batch_norm

# Names of the two stems in the state dict; ``pretrained`` copies conv1/bn1 into both.
STEM_NAMES: tuple[str, str] = ("visible_stem", "infrared_stem")


def _stem(net: torchvision.models.ResNet) -> nn.Sequential:
    # Keep torchvision's names so checkpoint keys map one to one (conv1.* -> <stem>.conv1.*).
    return nn.Sequential(OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool))


class TwoStreamResNet(nn.Module):
    """ResNet-18/34/50 with modality-specific stems and shared layer1-4.

    Visible frames go through ``visible_stem``, infrared ones through
    ``infrared_stem`` (conv1+bn1+relu+maxpool each, so each stem's BatchNorm
    sees one modality), then all frames share ``layer1``..``layer4``. With
    ``last_stride=1`` layer4 keeps the resolution of layer3 (18x9 maps for
    288x144 frames), the usual re-ID choice.
    """

    def __init__(self, name: str = "resnet50", last_stride: int = 1):
        super().__init__()
        if name not in BACKBONE_DIMS:
            raise ValueError(f"unsupported backbone {name!r}; choose one of {list(BACKBONE_DIMS)}")
        net = getattr(torchvision.models, name)(weights=None)
        self.name = name
        self.feature_dim = BACKBONE_DIMS[name]
        self.visible_stem = _stem(net)
        self.infrared_stem = copy.deepcopy(self.visible_stem)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if last_stride == 1:
            # The first block of layer4 downsamples in one 3x3/1x1 conv and its shortcut.
            for module in self.layer4[0].modules():
                if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                    module.stride = (1, 1)

    def stem(self, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Apply the stem of each frame's modality. x [N, 3, H, W], visible bool [N]."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            # A trace (the ONNX export) would freeze the data-dependent branches below to the
            # example batch's modalities, and torch.compile would break its graph at nonzero:
            # run both stems on every frame and select per frame instead.
            return torch.where(
                visible.view(-1, 1, 1, 1),
                _masked_stem(self.visible_stem, x, visible),
                _masked_stem(self.infrared_stem, x, ~visible),
            )
        vis = visible.nonzero().squeeze(1)
        ir = (~visible).nonzero().squeeze(1)
        if ir.numel() == 0:
            return self.visible_stem(x)
        if vis.numel() == 0:
            return self.infrared_stem(x)
        out_vis = self.visible_stem(x.index_select(0, vis))
        out_ir = self.infrared_stem(x.index_select(0, ir))
        out = out_vis.new_zeros((x.shape[0], *out_vis.shape[1:]))
        return out.index_copy(0, vis, out_vis).index_copy(0, ir, out_ir)


def _masked_stem(stem: nn.Sequential, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """stem(x) for the frames where mask is True, its BatchNorm's statistics (in training)
    taken over those frames only, as when they alone go through it."""
    conv1, bn1 = cast(nn.Conv2d, stem.conv1), cast(nn.BatchNorm2d, stem.bn1)
    relu, maxpool = cast(nn.Module, stem.relu), cast(nn.Module, stem.maxpool)
    return maxpool(relu(masked_batch_norm(bn1, conv1(x), mask)))
