"""The error a training run stops with when its loss or gradient norm becomes NaN/inf, and the
hook that finds it (``DivergenceGuard``) without a host synchronisation per step."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from ..errors import StarError
from . import distributed as dist_utils
from .logs import DeviceMeters
from .loop import HookBase


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
        checkpoint: Optional[Path],
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
    """Every rank: the step's scalars (``trainer.step_scalars``) summed on the device, checked per period.

    After the last step of each logging period and of each epoch, one host copy of the
    window's and the epoch's means (``window``, ``epoch_means``, kept for the logging hook);
    a non-finite loss term, or without AMP a non-finite gradient norm (under AMP the scaler
    skips such steps), raises ``TrainingDiverged`` on every rank together. The steps since
    the previous check may have updated the weights in memory; registered before the
    checkpoint hook, the guard stops the run before any of it is written.
    """

    def __init__(self) -> None:
        self.meters = DeviceMeters()
        self.window: dict[str, float] = {}
        self.window_steps = 0
        self.epoch_means: dict[str, float] = {}

    def before_epoch(self) -> None:
        self.meters.start_epoch()
        self.window, self.window_steps, self.epoch_means = {}, 0, {}

    def after_step(self) -> None:
        t = self.trainer
        self.meters.add(t.step_scalars)
        if log_due(t.step, t.cfg.train.log_period):
            self.check()

    def after_epoch(self) -> None:
        self.check()

    def check(self) -> None:
        t = self.trainer
        self.window_steps = self.meters.window_steps
        self.window, self.epoch_means = self.meters.flush()
        grad_norm_ok = t.amp or math.isfinite(self.window.get("grad_norm", 0.0))
        loss_ok = all(math.isfinite(v) for k, v in self.window.items() if k != "grad_norm")
        if dist_utils.any_true(t.dist, not (loss_ok and grad_norm_ok), t.device):  # every rank stops together
            terms = {} if loss_ok and grad_norm_ok else self.window
            what = "gradient norm" if loss_ok and not grad_norm_ok else "loss"
            raise t.diverged(terms, what, self.window_steps)
