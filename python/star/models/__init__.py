"""STAR model: two-stream backbone, frame-level correction, keypoint graph, guided pooling.

``build_model(cfg, num_classes)`` is the entry point; ``cfg`` is a :class:`ModelConfig`
or a mapping of the same shape, ``num_classes`` the number of training identities.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .backbone import TwoStreamResNet
from .compiled import CompiledNetwork
from .config import (
    BackboneConfig,
    FrameCorrectionConfig,
    ModelConfig,
    PoolingConfig,
    SequenceGuidanceConfig,
    StyleConfig,
)
from .graph_attention import KeypointGraphAttention
from .pretrained import LoadReport, init_pretrained, load_backbone_weights
from .star import STAR, StarOutput, absent_outputs


def build_network(
    cfg: ModelConfig | Mapping[str, Any], num_classes: int, *, pretrained: bool = True
) -> tuple[STAR, frozenset[str]]:
    """The one place a STAR network is built: for ``cfg`` and ``num_classes`` identities, with
    (``pretrained``) its backbone initialised from ``cfg.backbone.pretrained``; returns it and
    the names of its parameters really loaded from that file (empty without one).

    ``pretrained=False`` when trained weights are loaded next (a checkpoint): no pretrained
    file is looked for. A mapping is converted with ``ModelConfig.from_dict`` (unknown keys,
    wrong types and choices raise ``ConfigError``, a ``ValueError``; value ranges are checked
    with a whole run config, ``star.config.check_ranges``). Pretrained weights missing -> one warning and
    random init, or ``FileNotFoundError`` with ``backbone.require_pretrained``.
    """
    if not isinstance(cfg, ModelConfig):
        cfg = ModelConfig.from_dict(cfg)
    model = STAR(cfg, num_classes)
    if not pretrained:
        return model, frozenset()
    report = init_pretrained(model.backbone, cfg.backbone.pretrained, cfg.backbone.require_pretrained)
    params = dict(model.named_parameters())
    loaded = (f"backbone.{k}" for k in report.loaded) if report is not None else ()
    return model, frozenset(name for name in loaded if name in params)


def build_model(cfg: ModelConfig | Mapping[str, Any], num_classes: int) -> STAR:
    """A STAR network for ``cfg`` and ``num_classes`` identities, its backbone initialised
    from ``cfg.backbone.pretrained`` (``build_network`` without the loaded names)."""
    return build_network(cfg, num_classes)[0]


__all__ = [
    "build_model",
    "build_network",
    "STAR",
    "StarOutput",
    "absent_outputs",
    "CompiledNetwork",
    "ModelConfig",
    "BackboneConfig",
    "StyleConfig",
    "FrameCorrectionConfig",
    "SequenceGuidanceConfig",
    "PoolingConfig",
    "KeypointGraphAttention",
    "TwoStreamResNet",
    "LoadReport",
    "init_pretrained",
    "load_backbone_weights",
]
