"""The error a training run stops with when its loss or gradient norm becomes NaN/inf, and the
hook that finds it (``DivergenceGuard``) without a host synchronisation per step."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import StarError
from . import distributed as dist_utils
from .distributed import DistInfo
from .logs import DeviceMeters
from .loop import HookBase
from .state import LossMeans, TrainingState


class TrainingDiverged(StarError, RuntimeError):
    """A loss (or gradient norm) became NaN/inf; raised before a checkpoint of that state is written.

    The trainer checks its meters once per logging period and at each epoch's end (a check
    per step would synchronise the host with the device every step), so the optimiser may
    have stepped on the non-finite values in memory; nothing of it reaches a checkpoint.
    ``epoch`` and ``iteration`` (1-based) are where the check found it, ``iterations`` how
    many iterations that check covered (up to ``train.log_period``), ``step`` the optimiser
    steps taken so far, ``terms`` their mean loss terms (this rank's), ``checkpoint`` the
    last good checkpoint (None if none was written yet).
    """

    def __init__(
        self,
        epoch: int,
        iteration: int,
        step: int,
        terms: dict[str, float],
        checkpoint: Path | None,
        what: str = "loss",
        iterations: int = 1,
    ):
        self.epoch, self.iteration, self.step, self.iterations = epoch, iteration, step, iterations
        self.terms = dict(terms)
        self.checkpoint = checkpoint
        shown = ", ".join(f"{k}={v:.6g}" for k, v in self.terms.items()) or "(finite here; non-finite on another rank)"
        where = (
            f"the last good checkpoint {checkpoint} is intact"
            if checkpoint is not None
            else "no checkpoint had been written yet"
        )
        super().__init__(
            f"training diverged: non-finite {what} at epoch {epoch}, iteration {iteration} (after {step} optimiser "
            f"steps; checked over the last {iterations} iteration(s)); loss terms: {shown}. "
            f"Stopped before a checkpoint of it was written; {where}. "
            "Try a lower optim.lr, optim.grad_clip, or check the data."
        )


def log_due(step: int, log_period: int) -> bool:
    """Whether optimiser step ``step`` ends a logging period (the meters are copied and checked)."""
    return step % log_period == 0


class DivergenceGuard(HookBase):
    """Every rank: the step's scalars (``state.step_scalars``) summed on the device, checked per period.

    After the last step of each logging period and of each epoch, one host copy of the
    window's and the epoch's means into ``state.losses`` (which the logging hook logs); a
    non-finite loss term, or without AMP a non-finite gradient norm (under AMP the scaler
    skips such steps), raises ``TrainingDiverged`` on every rank together. The steps since
    the previous check may have updated the weights in memory; registered before the
    checkpoint hook, the guard stops the run before any of it is written (``last_checkpoint``
    is the file the error names as the last good one, when it exists).
    """

    def __init__(
        self,
        state: TrainingState,
        log_period: int,
        amp: bool,
        dist: DistInfo,
        device: torch.device,
        last_checkpoint: Path,
    ) -> None:
        self.state, self.log_period, self.amp = state, log_period, amp
        self.dist, self.device, self.last_checkpoint = dist, device, last_checkpoint
        self.meters = DeviceMeters()

    def before_epoch(self) -> None:
        self.meters.start_epoch()
        self.state.losses = LossMeans()

    def after_step(self) -> None:
        self.meters.add(self.state.step_scalars)
        if log_due(self.state.step, self.log_period):
            self.check()

    def after_epoch(self) -> None:
        self.check()

    def check(self) -> None:
        s = self.state
        window_steps, epoch_steps = self.meters.window_steps, self.meters.epoch_steps
        window, epoch = self.meters.flush()
        s.losses = LossMeans(window, window_steps, epoch, epoch_steps)
        grad_norm_ok = self.amp or math.isfinite(window.get("grad_norm", 0.0))
        loss_ok = all(math.isfinite(v) for k, v in window.items() if k != "grad_norm")
        if dist_utils.any_true(self.dist, not (loss_ok and grad_norm_ok), self.device):  # every rank stops together
            terms = {} if loss_ok and grad_norm_ok else window
            what = "gradient norm" if loss_ok and not grad_norm_ok else "loss"
            last = self.last_checkpoint if self.last_checkpoint.is_file() else None
            raise TrainingDiverged(s.epoch + 1, s.iter + 1, s.step, terms, last, what, window_steps)
