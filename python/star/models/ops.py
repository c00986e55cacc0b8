"""Choice between the fused ops of ``star_ext`` and their pure-PyTorch references."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import star_ext
from star_ext import reference


class Ops(NamedTuple):
    """The three op functions a model uses; both implementations share signatures."""

    keypoint_pool: Callable
    guided_gem_pool: Callable
    keypoint_graph_attention: Callable


FUSED = Ops(star_ext.keypoint_pool, star_ext.guided_gem_pool, star_ext.keypoint_graph_attention)
REFERENCE = Ops(reference.keypoint_pool, reference.guided_gem_pool, reference.keypoint_graph_attention)


def select_ops(use_fused_ops: bool) -> Ops:
    """``star_ext``'s registered ops (C++/CUDA kernels) or the eager references."""
    return FUSED if use_fused_ops else REFERENCE
