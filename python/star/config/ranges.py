"""The valid range of every numeric config value, checked when a config is loaded.

``load_config`` builds the dataclasses (types, and the choices of string settings in their
``__post_init__``), then ``check_ranges`` walks the result; it is the one place where
values are checked: every int or float, inside tuples too, must be finite and inside the
range ``FIELD_RANGES`` gives for its field, the loss weights must fit the model
(``loss_terms``), and the ``CROSS_FIELD_RULES`` (settings that only make sense together)
must hold. ``train`` runs it too, for a config built in Python. A violation is one :class:`ConfigError`
naming the dotted key, the value and the valid range. A numeric field missing from
``FIELD_RANGES`` is still checked to be finite (``tests/test_config_ranges.py`` requires
every numeric field to have an entry).

Ranges are declared here, per dataclass and field name, rather than on the fields, so a
section's dataclass stays a plain list of settings; a new numeric field gets its line here.
The synthetic generator's ranges are declared beside it (``star.data.synthetic.SYNTH_RANGES``),
which checks them without a run config; ``Range`` and the per-section check are in
``star.config_tree.ranges``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import star_ext.reference

from ..config_tree import ConfigError
from ..config_tree.ranges import (
    AT_LEAST_1,
    FRACTION_BELOW_1,
    MAX_SEED,
    NON_NEGATIVE,
    POSITIVE,
    Range,
    check_section_ranges,
)
from ..data.synthetic import SYNTH_RANGES, SynthConfig
from ..losses.config import LossConfig
from ..models.config import (
    BackboneConfig,
    FrameCorrectionConfig,
    ModelConfig,
    PoolingConfig,
    SequenceGuidanceConfig,
    StyleConfig,
)
from ..models.guided_pooling import MIN_EXPONENT
from .loss_terms import check_loss_terms
from .schema import DataConfig, EvalConfig, OptimConfig, RunConfig, TrainConfig

__all__ = ["CROSS_FIELD_RULES", "FIELD_RANGES", "Range", "check_ranges", "numeric_fields"]

# guided_gem_pool's supported exponents, and not below the model's clamp of learnable ones
EXPONENTS = Range(
    max(MIN_EXPONENT, star_ext.reference.SUPPORTED_EXPONENTS[0]), star_ext.reference.SUPPORTED_EXPONENTS[1]
)

# (dataclass, field) -> range. For tuple fields the range applies to each element; None
# values (optional fields left unset) are not checked.
FIELD_RANGES: dict[type, dict[str, Range]] = {
    RunConfig: {"seed": Range(0, MAX_SEED)},
    DataConfig: {
        "height": Range(16),
        "width": Range(8),
        "num_ids": Range(2),
        "num_per_modality": AT_LEAST_1,
        "num_workers": NON_NEGATIVE,
        "batches_per_epoch": AT_LEAST_1,
        "eval_batch_size": AT_LEAST_1,
        "max_substituted_fraction": Range(0, 1),
    },
    SynthConfig: SYNTH_RANGES,  # declared beside the generator, which checks them too
    BackboneConfig: {"last_stride": Range(1, 2)},
    StyleConfig: {"scale_range": POSITIVE, "mean": Range(0, 1), "std": POSITIVE},
    FrameCorrectionConfig: {
        "bone_embed_dim": AT_LEAST_1,
        "num_heads": AT_LEAST_1,
        "attention_dropout": FRACTION_BELOW_1,
        "offset": NON_NEGATIVE,
    },
    SequenceGuidanceConfig: {
        "visual_dim": AT_LEAST_1,
        "sigma": POSITIVE,
        "hidden_dim": AT_LEAST_1,
        "hidden_heads": AT_LEAST_1,
        "out_dim": AT_LEAST_1,
        "dropout": FRACTION_BELOW_1,
        "attention_dropout": FRACTION_BELOW_1,
    },
    PoolingConfig: {
        "exponents": EXPONENTS,
        "unguided_exponent": EXPONENTS,
        "eps": Range(0, 1),  # 0: no clamp (the release; then floor > 0, checked by PoolingConfig)
        "floor": Range(0, 1),
    },
    ModelConfig: {"seq_len": AT_LEAST_1},
    LossConfig: {
        "id_weight": NON_NEGATIVE,
        "label_smoothing": FRACTION_BELOW_1,
        "triplet_weight": NON_NEGATIVE,
        "triplet_margin": NON_NEGATIVE,
        "frame_id_weight": NON_NEGATIVE,
        "defence_weight": NON_NEGATIVE,
        "pose_weight": NON_NEGATIVE,
        "consistency_weight": NON_NEGATIVE,
        "consistency_tau": POSITIVE,
    },
    OptimConfig: {
        "lr": POSITIVE,
        "momentum": FRACTION_BELOW_1,
        "weight_decay": NON_NEGATIVE,
        "pretrained_lr_mult": NON_NEGATIVE,
        "epochs": AT_LEAST_1,
        "warmup_epochs": NON_NEGATIVE,
        "warmup_start_factor": Range(0, 1, low_open=True),
        "milestones": AT_LEAST_1,
        "gamma": Range(0, 1, low_open=True),
        "grad_clip": POSITIVE,  # gamma > 1 would raise the lr
    },
    TrainConfig: {"eval_period": NON_NEGATIVE, "checkpoint_period": AT_LEAST_1, "log_period": AT_LEAST_1},
    EvalConfig: {"max_rank": AT_LEAST_1, "visrank_topk": AT_LEAST_1, "visrank_queries": NON_NEGATIVE},
}


def _heads_divide_features(cfg: RunConfig) -> tuple[str, Any, str] | None:
    fc, dim = cfg.model.frame_correction, cfg.model.feature_dim
    if fc.enabled and dim % fc.num_heads:
        return (
            "model.frame_correction.num_heads",
            fc.num_heads,
            f"a divisor of the feature size {dim} of model.backbone.name={cfg.model.backbone.name}",
        )
    return None


def _warmup_within_epochs(cfg: RunConfig) -> tuple[str, Any, str] | None:
    o = cfg.optim
    return (
        ("optim.warmup_epochs", o.warmup_epochs, f"<= optim.epochs = {o.epochs}")
        if o.warmup_epochs > o.epochs
        else None
    )


def _milestones_increasing(cfg: RunConfig) -> tuple[str, Any, str] | None:
    ms = list(cfg.optim.milestones)
    return ("optim.milestones", ms, "increasing") if ms != sorted(ms) else None


def _scale_range_ordered(cfg: RunConfig) -> tuple[str, Any, str] | None:
    lo, hi = cfg.model.style.scale_range
    return ("model.style.scale_range", [lo, hi], "[low, high] with low <= high") if lo > hi else None


def _exponents_given(cfg: RunConfig) -> tuple[str, Any, str] | None:
    return ("model.pooling.exponents", [], "a non-empty list") if not cfg.model.pooling.exponents else None


def _pooling_clamp_or_floor(cfg: RunConfig) -> tuple[str, Any, str] | None:
    p = cfg.model.pooling
    if p.eps == 0 and p.floor == 0:  # the mean of x^p would reach 0, which has no log
        return ("model.pooling.floor", p.floor, "> 0 when model.pooling.eps = 0")
    return None


def _pretrained_source_when_required(cfg: RunConfig) -> tuple[str, Any, str] | None:
    b = cfg.model.backbone
    if b.require_pretrained and b.pretrained is None:
        return ("model.backbone.require_pretrained", True, "false when model.backbone.pretrained is null")
    return None


# Rules over several fields: each returns (dotted key, value, what it must be) when broken.
CROSS_FIELD_RULES: tuple[Callable[[RunConfig], tuple[str, Any, str] | None], ...] = (
    _warmup_within_epochs,
    _milestones_increasing,
    _scale_range_ordered,
    _exponents_given,
    _pooling_clamp_or_floor,
    _pretrained_source_when_required,
    _heads_divide_features,
)


def numeric_fields(cls: type, where: str = "") -> Iterator[tuple[str, type, str]]:
    """(dotted key, owning dataclass, field name) of every int/float field (tuples of them too)
    under dataclass ``cls``, recursing into sections."""
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, dotted = hints[f.name], f"{where}{f.name}"
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from numeric_fields(hint, dotted + ".")
        elif _mentions_number(hint):
            yield dotted, cls, f.name


def _mentions_number(hint: Any) -> bool:
    import typing

    if hint in (int, float):
        return True
    return any(_mentions_number(a) for a in typing.get_args(hint) if a is not Ellipsis)


def check_ranges(config: Any, where: str = "") -> None:
    """Raise :class:`ConfigError` for the first numeric value of dataclass ``config`` (a
    ``RunConfig`` or any section, e.g. a ``SynthConfig``) that is not finite or outside its
    range, then for a loss weight the model cannot serve (``loss_terms``) and the first broken
    cross-field rule (``RunConfig`` only). ``where``
    prefixes the keys named (``"data.synthetic."``)."""
    check_section_ranges(config, FIELD_RANGES.get(type(config), {}), where)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{where}{f.name}.")
    if isinstance(config, RunConfig):
        check_loss_terms(config)
        for rule in CROSS_FIELD_RULES:
            broken = rule(config)
            if broken is not None:
                key, value, must = broken
                raise ConfigError(f"{key} = {value!r} is out of range: it must be {must}")
