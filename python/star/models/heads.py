"""Classification heads."""

from __future__ import annotations

import torch
from torch import nn


class BNNeck(nn.Module):
    """feature -> BatchNorm1d (bias frozen at 0) -> Linear (no bias) -> logits.

    The BN output is the retrieval embedding; the frozen bias keeps it centred,
    as in the BNNeck of "Bag of Tricks" re-ID baselines. ``normal_init``: BN
    weights ~ N(1, 0.01) as in the authors' release, else torch's ones.
    """

    def __init__(self, dim: int, num_classes: int, normal_init: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        if normal_init:
            nn.init.normal_(self.bn.weight, 1.0, 0.01)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, dim] -> (BN(x) [N, dim], logits [N, num_classes])."""
        feat = self.bn(x)
        return feat, self.classifier(feat)
