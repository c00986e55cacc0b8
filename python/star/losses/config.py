"""Weights and settings of the STAR loss terms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config_tree import Kind, dataclass_from_dict, setting


@dataclass
class LossConfig:
    """L = w_id CE(z) + w_tri Triplet(z) + w_frame [CE(f) + CE(f_dis)] + w_def L_def
    + w_pose CE(s) + w_sc L_sc (docs/method.md, losses).

    A weight of 0 switches its term off (it is not computed). The defaults are
    full STAR; the baseline and "+frame level" rows set ``pose_weight`` and
    ``consistency_weight`` to 0 (their models have no guide vector), "+sequence
    level" sets ``consistency_weight`` to 0. ``label_smoothing`` applies to
    every cross-entropy term.
    """

    id_weight: float = setting(Kind.TRAINING, 1.0)
    label_smoothing: float = setting(Kind.TRAINING, 0.0)
    triplet_weight: float = setting(Kind.TRAINING, 1.0)
    triplet_margin: float = setting(Kind.TRAINING, 0.3)
    frame_id_weight: float = setting(Kind.TRAINING, 1.0)
    defence_weight: float = setting(Kind.TRAINING, 1.0)
    pose_weight: float = setting(Kind.TRAINING, 1.0)
    consistency_weight: float = setting(Kind.TRAINING, 1.0)
    consistency_tau: float = setting(Kind.TRAINING, 1.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossConfig:
        """Build from a mapping; unknown keys raise ``ValueError`` listing the valid ones."""
        return dataclass_from_dict(cls, data)
