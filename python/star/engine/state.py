"""What the parts of a training run share: :class:`TrainingState` (owned by the loop, read and
written by the hooks) and :class:`TrainingParts` (what a step changes and ``last.pt`` holds).

The hooks of ``star.engine.hooks`` get the state, the parts and whatever else they need
in their constructors and talk to each other only through the fields declared here
(the idea of fast-reid's ``EventStorage``), so the fields below are the whole contract
between the loop, the trainer and the hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ..data.substitution import FrameSubstitutions


class EpochSampler(Protocol):
    """The training loader's batch sampler (``star.data.CrossModalIdentitySampler``): seeded per
    epoch, its position checkpointed."""

    @property
    def batch_size(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LossMeans:
    """The host copies of the step meters, refreshed at each check of ``DivergenceGuard``
    (once per ``train.log_period`` steps and at each epoch's end)."""

    window: dict[str, float] = field(default_factory=dict)  # means over the steps since the previous check
    window_steps: int = 0  # how many steps ``window`` covers
    epoch: dict[str, float] = field(default_factory=dict)  # means over the epoch so far
    epoch_steps: int = 0


@dataclass
class LogRecords:
    """What ``TrainRecordHook`` measured for the hooks that write it (``star.engine.log_hooks``)."""

    train: dict[str, Any] | None = None  # this step's ``train`` record on a logging step, else None
    epoch: dict[str, Any] | None = None  # the finished epoch's ``epoch`` record (after the epoch)
    eta_seconds: float = 0.0  # the run's time left, as of the latest ``train`` record


@dataclass
class ResumePoint:
    """Where a resumed run picked up (``log.jsonl``'s ``resumed`` record)."""

    step: int
    epoch: int
    eval_pending: bool

    def to_record(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "eval_pending": self.eval_pending}


@dataclass
class TrainingState:
    """Counters and results of one run. Epochs and iterations are 0-based here (1-based in
    everything printed or logged); ``step`` counts the optimiser steps taken."""

    max_epochs: int
    start_epoch: int = 0  # the first epoch this process trains (moved by a resume)
    epoch: int = 0  # the epoch being trained
    iter: int = 0  # the iteration inside it
    step: int = 0
    step_scalars: dict[str, torch.Tensor] = field(default_factory=dict)  # the last step's loss terms (device)
    step_lr: float = 0.0  # the lr the last step was taken with
    losses: LossMeans = field(default_factory=LossMeans)
    records: LogRecords = field(default_factory=LogRecords)
    substitutions: FrameSubstitutions | None = None  # the current epoch's substituted frames
    best_map: float | None = None  # best mean mAP so far and the epochs done when it was measured
    best_epoch: int | None = None
    last_summary: dict[str, Any] | None = None  # the latest evaluation's summary (the run's result)
    eval_pending: bool = False  # last.pt was written for an evaluation whose result is not in it yet
    resumed_from: ResumePoint | None = None

    @property
    def best(self) -> dict[str, Any]:
        """The best result as a checkpoint records it."""
        return {"mAP": self.best_map, "epoch": self.best_epoch}


@dataclass(frozen=True)
class TrainingParts:
    """What the optimisation steps change, built once per run (``Trainer.build``).

    ``model`` is the unwrapped model (a DDP wrapper, if any, is the trainer's own);
    ``sampler`` and ``loader_generator`` are the training loader's, checkpointed so that a
    resumed run draws the same batches; ``amp``: float16 autocast with ``scaler`` enabled.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    sampler: EpochSampler
    loader_generator: torch.Generator | None
    amp: bool
