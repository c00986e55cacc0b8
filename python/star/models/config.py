"""Configuration of the STAR model as nested dataclasses.

``ModelConfig.from_dict`` turns a plain mapping (a parsed YAML section) into
the dataclasses and rejects unknown keys, naming the valid ones, so a typo in
a config file fails at once instead of silently using a default.
``dataclass_from_dict`` is that check for every config section (``star.config``
builds the whole ``RunConfig`` with it); it lives here, in the lowest layer
that reads config trees, so the models and losses need not import ``star.config``.

The defaults are full STAR as in the paper (ResNet-50, T = 12, frame-level
correction and sequence-level guidance on). The ablation rows switch modules
off: baseline = ``frame_correction.enabled=False`` and
``sequence.enabled=False``; "+frame level" keeps only the frame correction on;
"+sequence level" is both on; "+visual nodes" adds ``sequence.visual_nodes``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar, Union

from ..errors import StarError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Feature dimension C of layer4 for each supported torchvision backbone.
BACKBONE_DIMS: dict[str, int] = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}

# ``BackboneConfig.pretrained`` value meaning "torchvision's ImageNet file in the torch hub cache".
IMAGENET = "imagenet"
NECK_FEATS = ("after", "before")
# The choices of the fidelity switches (first = the authors' release).
AUGMENT_SPACES = ("normalised", "raw")
DRAW_UNITS = ("frame", "tracklet")
ADAIN_STDS = ("unbiased", "biased")
CROSS_SOURCES = ("disturbed", "clean")
BRANCH_BATCHES = ("separate", "joint")
BONE_ANGLES = ("atan2", "cos_sin")
UNDETECTED_BONES = ("keep", "zero")
EDGE_CODES = ("last_output", "final_states")
SPATIAL_EDGES = ("first_frame", "all_frames")
READOUTS = ("avg_pool", "linear")
UNGUIDED_POOLINGS = ("gem", "mean")
NECK_INITS = ("normal", "ones")

D = TypeVar("D")


class ConfigError(StarError, ValueError):
    """A config file, override or mapping is malformed, unknown or invalid (``star.config.ConfigError``)."""


def dataclass_from_dict(
    cls: type[D], data: Mapping[str, Any] | D, where: str = "", origins: Optional[Mapping[str, str]] = None
) -> D:
    """Build dataclass ``cls`` from a (nested) mapping: the one check of config keys and types.

    Recurses into nested dataclass fields (``None`` counts as an empty section). An unknown
    key raises :class:`ConfigError` naming the dotted key, where it was set
    (``origins[dotted] -> "file"`` or ``"override 'k=v'"``, when given) and the valid keys.
    Values are checked against the annotations: ints are accepted for floats, strings such
    as ``1e-3`` (which YAML 1.1 reads as a string) are converted for float fields, numbers
    are accepted for string fields, lists become tuples for tuple fields. The dataclasses
    then validate the values (``__post_init__``, ``ValueError``).
    """
    if isinstance(data, cls):
        return data
    origins = origins or {}
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        source = origins.get(where)
        where_set = f" ({source})" if source else ""
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {data!r}{where_set}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else str(key)
        source = origins.get(dotted)
        where_set = f" ({source})" if source else ""
        if key not in fields:
            raise ConfigError(f"unknown config key {dotted!r}{where_set}; valid keys: {', '.join(fields)}")
        hint = fields[key]
        if _is_section(hint):
            kwargs[key] = dataclass_from_dict(hint, value, dotted, origins)
            continue
        try:
            kwargs[key] = _coerce(value, hint)
        except _TypeMismatch:
            raise ConfigError(f"{dotted} must be {_type_name(hint)}, got {value!r}{where_set}") from None
    return cls(**kwargs)


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    return getattr(hint, "__name__", str(hint))


class _TypeMismatch(Exception):
    pass


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` checked against ``hint`` (tuples for tuple fields), or ``_TypeMismatch``."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except _TypeMismatch:
                pass
        raise _TypeMismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _TypeMismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _TypeMismatch
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _TypeMismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _TypeMismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _TypeMismatch
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _TypeMismatch
    return value  # a type this schema does not use: leave it to the dataclass


def to_plain(value: Any) -> Any:
    """Nested dicts/lists/tuples as plain dicts and lists (YAML/JSON/checkpoint-ready)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{key} must be one of {', '.join(choices)}, got {value!r}")


@dataclass
class BackboneConfig:
    """Two-stream torchvision ResNet.

    ``pretrained``: ``"imagenet"`` (torchvision's ImageNet file in the torch hub
    cache, if present), a path to a state dict, or ``None`` (random init, no
    warning). A missing file warns once and falls back to random init unless
    ``require_pretrained``.
    """

    name: str = "resnet50"
    pretrained: Optional[str] = IMAGENET
    require_pretrained: bool = False
    last_stride: int = 1

    def __post_init__(self) -> None:
        _check(self.name in BACKBONE_DIMS, f"backbone.name must be one of {list(BACKBONE_DIMS)}, got {self.name!r}")
        _check(self.last_stride in (1, 2), f"backbone.last_stride must be 1 or 2, got {self.last_stride}")
        _check(
            not (self.require_pretrained and self.pretrained is None),
            "backbone.require_pretrained is set but backbone.pretrained is None",
        )


@dataclass
class StyleConfig:
    """Training-only style perturbations: input augmentation and the SAADG disturbance.

    ``augmentation``: scale infrared frames by one factor and visible channels
    by one factor each, then permute the visible channels. ``disturbance``: the
    AdaIN branch giving ``f_dis``. The remaining fields choose between the
    authors' release and our variants (the defaults); README, "Deviations from
    the authors' release", gives each one's reason and measured effect.

    - ``augment_space``: ``normalised`` scales the normalised input tensor (release);
      ``raw`` applies the gains to the raw intensities (undoing ``mean``/``std``).
    - ``augment_per``: a new draw for every ``frame`` (release) or one per ``tracklet``.
    - ``adain_std``: ``unbiased`` std + 1e-6 (release) or ``biased`` sqrt(var + 1e-5).
    - ``adain_detach_style``: stop gradients into the style partner (release: false).
    - ``partners_per``: AdaIN partners drawn per ``frame`` over all frames of the batch
      (release) or per ``tracklet`` (frame t with the partner's frame t).
    - ``cross_source``: the cross-modality AdaIN takes its style from the partner's
      ``disturbed`` layer3 maps (release) or its ``clean`` ones.
    - ``branch_batches``: the clean and disturbed maps pass layer3/layer4 as ``separate``
      batches (release: each branch's own BatchNorm statistics) or as one ``joint`` batch.
    """

    augmentation: bool = True
    disturbance: bool = True
    scale_range: tuple[float, float] = (0.5, 1.5)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    augment_space: str = "raw"
    augment_per: str = "tracklet"
    adain_std: str = "biased"
    adain_detach_style: bool = True
    partners_per: str = "tracklet"
    cross_source: str = "clean"
    branch_batches: str = "joint"

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        _check(0 < lo <= hi, f"style.scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        _check(len(self.mean) == 3 and len(self.std) == 3, "style.mean and style.std need 3 entries")
        _check(all(s > 0 for s in self.std), f"style.std must be positive, got {self.std}")
        _choice("style.augment_space", self.augment_space, AUGMENT_SPACES)
        _choice("style.augment_per", self.augment_per, DRAW_UNITS)
        _choice("style.adain_std", self.adain_std, ADAIN_STDS)
        _choice("style.partners_per", self.partners_per, DRAW_UNITS)
        _choice("style.cross_source", self.cross_source, CROSS_SOURCES)
        _choice("style.branch_batches", self.branch_batches, BRANCH_BATCHES)


@dataclass
class SkeletonCodeConfig:
    """Bone geometry e(t) and the edge-based code h_T, shared by both skeleton levels.

    - ``angle``: each bone as (length, ``atan2`` angle), 2 numbers (release), or
      (length, ``cos_sin`` of the angle), 3 numbers: no jump at the +-pi cut.
    - ``undetected``: bones with an undetected end (confidence 0): ``keep`` their
      geometry as stored (release) or ``zero`` them.
    - ``aspect_scale``: scale x by the frame's W/H so angles and lengths are those of
      the image (release: false, the stored normalised coordinates).
    - ``edge_code``: h_T as the BiLSTM's ``last_output`` (both directions' outputs at
      frame T; the backward one has seen frame T only: release) or its
      ``final_states`` (forward after frame T, backward after frame 1).
    """

    angle: str = "cos_sin"
    undetected: str = "zero"
    aspect_scale: bool = True
    edge_code: str = "final_states"

    def __post_init__(self) -> None:
        _choice("skeleton.angle", self.angle, BONE_ANGLES)
        _choice("skeleton.undetected", self.undetected, UNDETECTED_BONES)
        _choice("skeleton.edge_code", self.edge_code, EDGE_CODES)


@dataclass
class FrameCorrectionConfig:
    """Frame level (docs/method.md): bone-geometry BiLSTM and two-way cross-attention."""

    enabled: bool = True
    bone_embed_dim: int = 64
    num_heads: int = 4
    attention_dropout: float = 0.0
    # F' = FFN([E_o; E_s]) + F + offset; the release adds 1e-3, our default 0.
    offset: float = 0.0

    def __post_init__(self) -> None:
        _check(self.bone_embed_dim >= 1, "frame_correction.bone_embed_dim must be >= 1")
        _check(math.isfinite(self.offset) and self.offset >= 0, f"frame_correction.offset must be >= 0, got {self.offset}")
        _check(self.num_heads >= 1, "frame_correction.num_heads must be >= 1")
        _check(0 <= self.attention_dropout < 1, "frame_correction.attention_dropout must be in [0, 1)")


@dataclass
class SequenceGuidanceConfig:
    """Sequence level (docs/method.md): keypoint graph, guide vector, guided pooling.

    The options below ``enabled`` only matter when it is on. ``dropout`` is the
    feature dropout after the first graph layer, ``attention_dropout`` the
    GAT attention-coefficient dropout of both layers (release: 0.3 and 0.6).
    ``sigma`` is the width of ``keypoint_pool``'s Gaussian (normalised frame
    units) for visual nodes.

    - ``spatial_edges``: the bones connect the joints of ``all_frames`` (ours: the
      release's graph has bones only among the ``first_frame``'s joints, a bug that
      the release preset reproduces).
    - ``readout``: the V x out_dim node codes to g by ``avg_pool``, a parameter-free
      adaptive average pool to C (release), or by a learned ``linear`` map.
    - ``pose_classifier_bias``: the pose-ID classifier has a bias (release).
    """

    enabled: bool = True
    pose_classifier: bool = True
    visual_nodes: bool = False
    visual_dim: int = 16
    sigma: float = 0.1
    hidden_dim: int = 16
    hidden_heads: int = 2
    out_dim: int = 12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    spatial_edges: str = "all_frames"
    readout: str = "linear"
    pose_classifier_bias: bool = False

    def __post_init__(self) -> None:
        _choice("sequence.spatial_edges", self.spatial_edges, SPATIAL_EDGES)
        _choice("sequence.readout", self.readout, READOUTS)
        for name in ("visual_dim", "hidden_dim", "hidden_heads", "out_dim"):
            _check(getattr(self, name) >= 1, f"sequence.{name} must be >= 1, got {getattr(self, name)}")
        _check(math.isfinite(self.sigma) and self.sigma > 0, f"sequence.sigma must be > 0, got {self.sigma}")
        _check(0 <= self.dropout < 1, f"sequence.dropout must be in [0, 1), got {self.dropout}")
        _check(
            0 <= self.attention_dropout < 1,
            f"sequence.attention_dropout must be in [0, 1), got {self.attention_dropout}",
        )


@dataclass
class PoolingConfig:
    """Temporal pooling of the frame features.

    With sequence guidance: the guided mixture of generalized means over
    ``exponents``. Without it (the baseline): ``unguided`` = ``gem`` with
    ``unguided_exponent`` (release: p = 3) or ``mean`` (average over frames).
    Every generalized mean is (mean_t max(x, eps)^p + floor)^(1/p): the release
    has ``eps = 0`` and ``floor = 1e-12``; ``eps > 0`` clamps small values instead.
    """

    exponents: tuple[float, ...] = (0.7, 1.0, 3.0, 5.0, 7.0)
    learnable: bool = False
    eps: float = 1e-6
    floor: float = 0.0
    unguided: str = "mean"
    unguided_exponent: float = 3.0

    def __post_init__(self) -> None:
        _check(len(self.exponents) >= 1, "pooling.exponents must not be empty")
        _check(
            all(math.isfinite(p) and p > 0 for p in self.exponents),
            f"pooling.exponents must be finite and positive, got {self.exponents}",
        )
        _check(math.isfinite(self.eps) and self.eps >= 0, f"pooling.eps must be >= 0, got {self.eps}")
        _check(math.isfinite(self.floor) and self.floor >= 0, f"pooling.floor must be >= 0, got {self.floor}")
        _check(self.eps > 0 or self.floor > 0, "pooling.eps and pooling.floor cannot both be 0 (x = 0 has no log)")
        _choice("pooling.unguided", self.unguided, UNGUIDED_POOLINGS)
        _check(
            math.isfinite(self.unguided_exponent) and self.unguided_exponent > 0,
            f"pooling.unguided_exponent must be finite and positive, got {self.unguided_exponent}",
        )


@dataclass
class ModelConfig:
    """The architecture. The number of identities is not part of it: it comes from the
    training data, ``STAR(model_cfg, num_classes)``."""

    seq_len: int = 12
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    style: StyleConfig = field(default_factory=StyleConfig)
    skeleton: SkeletonCodeConfig = field(default_factory=SkeletonCodeConfig)
    frame_correction: FrameCorrectionConfig = field(default_factory=FrameCorrectionConfig)
    sequence: SequenceGuidanceConfig = field(default_factory=SequenceGuidanceConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    use_fused_ops: bool = True
    # Test embedding: "after" the BN neck (the paper: BN(z)) or "before" it (z), as
    # fast-reid's NECK_FEAT; L2-normalised either way.
    neck_feat: str = "after"
    # BN-neck weights at init: ``normal`` ~ N(1, 0.01) (release) or ``ones`` (torch's default).
    neck_init: str = "ones"

    def __post_init__(self) -> None:
        _check(self.neck_feat in NECK_FEATS, f"neck_feat must be one of {', '.join(NECK_FEATS)}, got {self.neck_feat!r}")
        _choice("neck_init", self.neck_init, NECK_INITS)
        _check(self.seq_len >= 1, f"seq_len must be >= 1, got {self.seq_len}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        """Build from a (nested) mapping; unknown keys raise ``ConfigError`` listing the valid ones."""
        return dataclass_from_dict(cls, data)

    @property
    def feature_dim(self) -> int:
        """C: the frame/sequence feature dimension of the chosen backbone."""
        return BACKBONE_DIMS[self.backbone.name]
