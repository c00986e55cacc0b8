"""The error a training run stops with when its loss or gradient norm becomes NaN/inf."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import StarError


class TrainingDiverged(StarError, RuntimeError):
    """A loss (or gradient norm) became NaN/inf; raised before the optimiser step.

    ``epoch`` and ``iteration`` are 1-based, ``step`` the optimiser steps taken so far,
    ``terms`` the loss terms of the offending iteration (this rank's), ``checkpoint`` the
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
    ):
        self.epoch, self.iteration, self.step = epoch, iteration, step
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
            f"steps); loss terms: {shown}. Stopped before the optimiser step; {where}. "
            "Try a lower optim.lr, optim.grad_clip, or check the data."
        )
