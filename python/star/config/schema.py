"""The run configuration: every setting of ``star train`` / ``star eval`` / ``star demo``.

One ``RunConfig`` holds the data, model, loss, optimisation, training-loop and
evaluation settings as nested dataclasses. YAML files map onto it section by
section (``star.config.load_config`` adds ``_base_`` inheritance and
``key=value`` overrides); unknown keys are errors listing the valid ones.

The ``model`` section is the ``ModelConfig`` (the architecture; the number of
training identities comes from the dataset: ``STAR(cfg.model, num_classes)``),
the ``data.synthetic`` section the ``star.data.SynthConfig`` of the generator.

Defaults are the STAR recipe on HITSZ-VCM (docs/method.md, training recipe).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config_tree import Kind, dataclass_from_dict, require_choice, setting, to_plain
from ..data.registry import DATASET_NAMES
from ..data.synthetic import SynthConfig
from ..losses.config import LossConfig
from ..metrics.protocols import PROTOCOL_CHOICES
from ..models.compiled import DEFAULT_BACKEND
from ..models.config import ModelConfig


@dataclass
class DataConfig:
    """Where the tracklets and keypoints are and how batches are drawn (docs/protocols.md)."""

    dataset: str = setting(Kind.DATA, "hitsz-vcm")
    root: str = setting(Kind.LOCATION, "data/HITSZ-VCM")
    # keypoint store directory; None = the dataset's default (<root>/keypoints)
    keypoints: str | None = setting(Kind.LOCATION, None)
    height: int = setting(Kind.DATA, 288)
    width: int = setting(Kind.DATA, 144)
    num_ids: int = setting(Kind.TRAINING, 8)  # P identities per batch
    num_per_modality: int = setting(Kind.TRAINING, 2)  # K tracklets of each modality per identity
    num_workers: int = setting(Kind.RUNTIME, 4)
    batches_per_epoch: int | None = setting(Kind.TRAINING, None)  # None = the sampler's natural epoch length
    eval_batch_size: int = setting(Kind.RUNTIME, 32)
    # Frames that cannot be decoded are substituted (a warning each); above this fraction of an
    # epoch's or an evaluation's frames the run stops (star.data.substitution).
    max_substituted_fraction: float = setting(Kind.DATA, 0.01)
    # Used when dataset is synthetic and root holds none yet: the dataset is generated there first.
    synthetic: SynthConfig = setting(Kind.DATA_GENERATION, default_factory=SynthConfig)

    def __post_init__(self) -> None:
        require_choice("data.dataset", self.dataset, tuple(DATASET_NAMES))


OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass
class OptimConfig:
    """SGD (or Adam) with linear warm-up and step decay (docs/method.md, training recipe). Epoch-based schedule."""

    # sgd (the STAR recipe), adam (L2 in the gradient) or adamw (decoupled decay)
    name: str = setting(Kind.TRAINING, "sgd")
    lr: float = setting(Kind.TRAINING, 0.1)
    momentum: float = setting(Kind.TRAINING, 0.9)
    weight_decay: float = setting(Kind.TRAINING, 5e-4)
    nesterov: bool = setting(Kind.TRAINING, True)
    pretrained_lr_mult: float = setting(Kind.TRAINING, 0.1)  # lr factor of the ImageNet-initialised backbone layers
    epochs: int = setting(Kind.TRAINING_LENGTH, 200)
    warmup_epochs: int = setting(Kind.TRAINING, 10)
    warmup_start_factor: float = setting(Kind.TRAINING, 0.01)
    milestones: tuple[int, ...] = setting(Kind.TRAINING, (60, 120))
    gamma: float = setting(Kind.TRAINING, 0.1)
    grad_clip: float | None = setting(Kind.TRAINING, None)  # max total gradient norm; None = no clipping

    def __post_init__(self) -> None:
        require_choice("optim.name", self.name, OPTIMIZERS)


@dataclass
class TrainConfig:
    """The training loop: precision, checkpoints, logs, evaluation cadence."""

    device: str = setting(Kind.RUNTIME, "auto")  # auto = cuda when available, else cpu
    amp: bool = setting(Kind.NUMERICS, True)  # mixed precision on CUDA (ignored on CPU)
    # torch.compile the network (train, eval, extract); slower on a CPU: benchmarks/README.md
    compile: bool = setting(Kind.NUMERICS, False)
    # torch.compile's backend with train.compile: inductor (generated C++ / Triton code), or any
    # other registered backend, e.g. aot_eager (traces without generating code: quick to check)
    compile_backend: str = setting(Kind.NUMERICS, DEFAULT_BACKEND)
    # evaluate every N epochs and after the last one; 0 = only after the last
    eval_period: int = setting(Kind.OUTPUT, 10)
    checkpoint_period: int = setting(Kind.OUTPUT, 1)  # write last.pt every N epochs (always after the last one)
    log_period: int = setting(Kind.OUTPUT, 20)  # iterations between JSONL / TensorBoard records
    tensorboard: bool = setting(Kind.OUTPUT, True)
    progress: bool = setting(Kind.OUTPUT, True)  # progress bar on a terminal (plain lines per log_period elsewhere)
    resume: bool = setting(Kind.RUNTIME, True)  # continue from <output_dir>/last.pt when present


@dataclass
class EvalConfig:
    """Evaluation protocol and outputs (docs/protocols.md)."""

    protocol: str = setting(Kind.EVALUATION, "auto")  # auto: hitsz-vcm for hitsz-vcm/synthetic/list, bupt for bupt
    same_modality: bool = setting(Kind.EVALUATION, False)  # BUPTCampus: also IR->IR and RGB->RGB
    rerank: bool = setting(Kind.EVALUATION, False)
    max_rank: int = setting(Kind.EVALUATION, 20)
    visrank_topk: int = setting(Kind.OUTPUT, 10)
    visrank_queries: int = setting(Kind.OUTPUT, 8)  # rank-list pictures written after evaluation (0 = none)

    def __post_init__(self) -> None:
        require_choice("eval.protocol", self.protocol, tuple(PROTOCOL_CHOICES))


@dataclass
class RunConfig:
    """Everything one run needs; see the module docstring."""

    output_dir: str = setting(Kind.LOCATION, "runs/star")
    seed: int = setting(Kind.TRAINING, 0)
    deterministic: bool = setting(Kind.NUMERICS, False)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Build from a nested mapping; unknown keys raise ``ConfigError`` listing the valid ones."""
        return dataclass_from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), suitable for YAML/JSON."""
        return to_plain(self)
