"""The error a training run stops with when its loss or gradient norm becomes NaN/inf."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import StarError


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
