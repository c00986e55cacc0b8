"""Configuration of the STAR model as nested dataclasses.

``ModelConfig.from_dict`` turns a plain mapping (a parsed YAML section) into
the dataclasses and rejects unknown keys, naming the valid ones, so a typo in
a config file fails at once instead of silently using a default
(``star.config_tree.dataclass_from_dict``, the check of every config section).

The defaults are full STAR as in the paper (ResNet-50, T = 12, frame-level
correction and sequence-level guidance on). The ablation rows switch modules
off: baseline = ``frame_correction.enabled=False`` and
``sequence.enabled=False``; "+frame level" keeps only the frame correction on;
"+sequence level" is both on; "+visual nodes" adds ``sequence.visual_nodes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config_tree import Kind, dataclass_from_dict, require_choice, setting
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

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


@dataclass
class BackboneConfig:
    """Two-stream torchvision ResNet.

    ``pretrained``: ``"imagenet"`` (torchvision's ImageNet file in the torch hub
    cache, if present), a path to a state dict, or ``None`` (random init, no
    warning). A missing file warns once and falls back to random init unless
    ``require_pretrained``.
    """

    name: str = setting(Kind.ARCHITECTURE, "resnet50")
    pretrained: str | None = setting(Kind.TRAINING, IMAGENET)
    require_pretrained: bool = setting(Kind.TRAINING, False)
    last_stride: int = setting(Kind.ARCHITECTURE, 1)

    def __post_init__(self) -> None:
        require_choice("backbone.name", self.name, tuple(BACKBONE_DIMS))


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

    augmentation: bool = setting(Kind.TRAINING, True)
    disturbance: bool = setting(Kind.TRAINING, True)
    scale_range: tuple[float, float] = setting(Kind.TRAINING, (0.5, 1.5))
    mean: tuple[float, float, float] = setting(Kind.TRAINING, IMAGENET_MEAN)
    std: tuple[float, float, float] = setting(Kind.TRAINING, IMAGENET_STD)
    augment_space: str = setting(Kind.TRAINING, "raw")
    augment_per: str = setting(Kind.TRAINING, "tracklet")
    adain_std: str = setting(Kind.TRAINING, "biased")
    adain_detach_style: bool = setting(Kind.TRAINING, True)
    partners_per: str = setting(Kind.TRAINING, "tracklet")
    cross_source: str = setting(Kind.TRAINING, "clean")
    branch_batches: str = setting(Kind.TRAINING, "joint")

    def __post_init__(self) -> None:
        require_choice("style.augment_space", self.augment_space, AUGMENT_SPACES)
        require_choice("style.augment_per", self.augment_per, DRAW_UNITS)
        require_choice("style.adain_std", self.adain_std, ADAIN_STDS)
        require_choice("style.partners_per", self.partners_per, DRAW_UNITS)
        require_choice("style.cross_source", self.cross_source, CROSS_SOURCES)
        require_choice("style.branch_batches", self.branch_batches, BRANCH_BATCHES)


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

    angle: str = setting(Kind.ARCHITECTURE, "cos_sin")
    undetected: str = setting(Kind.ARCHITECTURE, "zero")
    aspect_scale: bool = setting(Kind.ARCHITECTURE, True)
    edge_code: str = setting(Kind.ARCHITECTURE, "final_states")

    def __post_init__(self) -> None:
        require_choice("skeleton.angle", self.angle, BONE_ANGLES)
        require_choice("skeleton.undetected", self.undetected, UNDETECTED_BONES)
        require_choice("skeleton.edge_code", self.edge_code, EDGE_CODES)


@dataclass
class FrameCorrectionConfig:
    """Frame level (docs/method.md): bone-geometry BiLSTM and two-way cross-attention."""

    enabled: bool = setting(Kind.ARCHITECTURE, True)
    bone_embed_dim: int = setting(Kind.ARCHITECTURE, 64)
    num_heads: int = setting(Kind.ARCHITECTURE, 4)
    attention_dropout: float = setting(Kind.TRAINING, 0.0)
    # F' = FFN([E_o; E_s]) + F + offset; the release adds 1e-3 (the default), 0 drops it.
    offset: float = setting(Kind.ARCHITECTURE, 1e-3)


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

    enabled: bool = setting(Kind.ARCHITECTURE, True)
    pose_classifier: bool = setting(Kind.ARCHITECTURE, True)
    visual_nodes: bool = setting(Kind.ARCHITECTURE, False)
    visual_dim: int = setting(Kind.ARCHITECTURE, 16)
    sigma: float = setting(Kind.ARCHITECTURE, 0.1)
    hidden_dim: int = setting(Kind.ARCHITECTURE, 16)
    hidden_heads: int = setting(Kind.ARCHITECTURE, 2)
    out_dim: int = setting(Kind.ARCHITECTURE, 12)
    dropout: float = setting(Kind.TRAINING, 0.3)
    attention_dropout: float = setting(Kind.TRAINING, 0.6)
    spatial_edges: str = setting(Kind.ARCHITECTURE, "all_frames")
    readout: str = setting(Kind.ARCHITECTURE, "avg_pool")
    pose_classifier_bias: bool = setting(Kind.ARCHITECTURE, True)

    def __post_init__(self) -> None:
        require_choice("sequence.spatial_edges", self.spatial_edges, SPATIAL_EDGES)
        require_choice("sequence.readout", self.readout, READOUTS)


@dataclass
class PoolingConfig:
    """Temporal pooling of the frame features.

    With sequence guidance: the guided mixture of generalized means over
    ``exponents``. Without it (the baseline): ``unguided`` = ``gem`` with
    ``unguided_exponent`` (release: p = 3) or ``mean`` (average over frames).
    Every generalized mean is (mean_t max(x, eps)^p + floor)^(1/p): the release
    has ``eps = 0`` and ``floor = 1e-12``; ``eps > 0`` clamps small values instead.
    """

    exponents: tuple[float, ...] = setting(Kind.ARCHITECTURE, (0.7, 1.0, 3.0, 5.0, 7.0))
    learnable: bool = setting(Kind.ARCHITECTURE, False)
    eps: float = setting(Kind.ARCHITECTURE, 0.0)
    floor: float = setting(Kind.ARCHITECTURE, 1e-12)
    unguided: str = setting(Kind.ARCHITECTURE, "mean")
    unguided_exponent: float = setting(Kind.ARCHITECTURE, 3.0)

    def __post_init__(self) -> None:
        require_choice("pooling.unguided", self.unguided, UNGUIDED_POOLINGS)


@dataclass
class ModelConfig:
    """The architecture. The number of identities is not part of it: it comes from the
    training data, ``STAR(model_cfg, num_classes)``."""

    seq_len: int = setting(Kind.ARCHITECTURE, 12)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    style: StyleConfig = field(default_factory=StyleConfig)
    skeleton: SkeletonCodeConfig = field(default_factory=SkeletonCodeConfig)
    frame_correction: FrameCorrectionConfig = field(default_factory=FrameCorrectionConfig)
    sequence: SequenceGuidanceConfig = field(default_factory=SequenceGuidanceConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    use_fused_ops: bool = setting(Kind.NUMERICS, True)
    # Test embedding: "after" the BN neck (the paper: BN(z)) or "before" it (z), as
    # fast-reid's NECK_FEAT; L2-normalised either way.
    neck_feat: str = setting(Kind.EVALUATION, "after")
    # BN-neck weights at init: ``normal`` ~ N(1, 0.01) (release) or ``ones`` (torch's default).
    neck_init: str = setting(Kind.TRAINING, "normal")

    def __post_init__(self) -> None:
        require_choice("neck_feat", self.neck_feat, NECK_FEATS)
        require_choice("neck_init", self.neck_init, NECK_INITS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build from a (nested) mapping; unknown keys raise ``ConfigError`` listing the valid ones."""
        return dataclass_from_dict(cls, data)

    @property
    def feature_dim(self) -> int:
        """C: the frame/sequence feature dimension of the chosen backbone."""
        return BACKBONE_DIMS[self.backbone.name]
