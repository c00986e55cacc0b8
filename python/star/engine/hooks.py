"""The hooks of a STAR training run (``star.engine.loop``): checkpoints and evaluation (the
divergence guard is in ``diverged.py``, the logging hooks, one per output, in ``log_hooks.py``).

Each hook gets what it needs in its constructor: the run's :class:`TrainingState` (the
only thing hooks share; see ``state.py`` for its fields), the :class:`TrainingParts`, the
settings, and the services it writes through (the run's ``Checkpointer``, ``RunLog``).
No hook refers to another. ``Trainer.build_hooks`` registers them in this order, so that
after each epoch the meters are checked, then the epoch is checkpointed, logged (rank 0) and
evaluated:

- :class:`DivergenceGuard`: every rank's loss meters on the device (no host copy per
  step); once per ``train.log_period`` and at each epoch's end it copies them to the host
  (one transfer, into ``state.losses``) and raises ``TrainingDiverged`` when one is
  non-finite, before the checkpoint hook writes anything of that state.
- :class:`CheckpointHook`: resumes ``last.pt`` before the run; writes it atomically every
  ``train.checkpoint_period`` epochs and after every epoch that is evaluated, then marked
  "evaluation pending" (``state.eval_pending``) until the evaluation's result is in it
  (a kill during an evaluation repeats only the evaluation).
- the logging hooks of ``log_hooks.py`` (rank 0): ``config.yaml``, ``log.jsonl`` and
  TensorBoard (they open the ``RunLog``), the console, the progress bar.
- :class:`EvalHook`: evaluates when ``state.eval_pending`` (every ``train.eval_period``
  epochs, after the last one, and a pending evaluation of a resumed run), keeps ``best.pt``
  for the best mean mAP, logs the ``eval`` record.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import distributed as dist_utils
from .checkpoint import LAST, preserved_rng
from .checkpointer import Checkpointer
from .distributed import DistInfo
from .logs import RunLog
from .loop import HookBase
from .state import TrainingState

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # evaluation pulls in the metrics stack; the trainer imports it lazily
    from .evaluator import EvalResult


def evaluation_due(epochs_done: int, epochs: int, eval_period: int) -> bool:
    """Whether the run evaluates after ``epochs_done`` epochs (always after the last one)."""
    return epochs_done == epochs or (eval_period > 0 and epochs_done % eval_period == 0)


def improves(value: float, best: float | None) -> bool:
    """Whether mean mAP ``value`` beats ``best`` (a NaN never wins, and is always beaten)."""
    if best is None or math.isnan(best):
        return best is None or not math.isnan(value)
    return not math.isnan(value) and value > best


class CheckpointHook(HookBase):
    """Resumes ``last.pt`` before the run (redoing a pending evaluation's write) and writes it
    after each epoch that is due (``checkpoint_period``) or evaluated (``eval_period``)."""

    def __init__(
        self, state: TrainingState, checkpointer: Checkpointer, checkpoint_period: int, eval_period: int
    ) -> None:
        self.state, self.checkpointer = state, checkpointer
        self.checkpoint_period, self.eval_period = checkpoint_period, eval_period

    def before_train(self) -> None:
        self.checkpointer.resume_or_start()
        resumed = self.state.resumed_from
        if resumed is not None and resumed.eval_pending:  # killed during the evaluation after it: redo it
            self.checkpointer.save_last(self.state.start_epoch, eval_pending=True)

    def after_epoch(self) -> None:
        s = self.state
        done = s.epoch + 1
        due = evaluation_due(done, s.max_epochs, self.eval_period)
        if due or done % self.checkpoint_period == 0:
            self.checkpointer.save_last(done, eval_pending=due)


class EvalHook(HookBase):
    """Runs the evaluation ``state.eval_pending`` asks for on rank 0 (the other ranks wait),
    records it in the state, ``best.pt``, ``last.pt`` and the log.

    ``evaluate(final)``: the evaluation of the current model (``final``: after the last epoch).
    """

    def __init__(
        self,
        state: TrainingState,
        model: torch.nn.Module,
        evaluate: Callable[[bool], EvalResult],
        checkpointer: Checkpointer,
        run_log: RunLog,
        dist: DistInfo,
        out: Path,
    ) -> None:
        self.state, self.model, self.evaluate = state, model, evaluate
        self.checkpointer, self.run_log, self.dist, self.out = checkpointer, run_log, dist, out

    def before_train(self) -> None:
        s = self.state
        if s.eval_pending:
            self._evaluate(s.start_epoch)
        elif s.start_epoch >= s.max_epochs and self.dist.is_main:
            logger.info(
                "training already finished (%d/%d epochs); final metrics from %s",
                s.start_epoch,
                s.max_epochs,
                self.out / LAST,
            )

    def after_epoch(self) -> None:
        if self.state.eval_pending:  # the checkpoint hook wrote last.pt for this evaluation
            self._evaluate(self.state.epoch + 1)

    def _evaluate(self, epochs_done: int) -> None:
        s = self.state
        if self.dist.is_main:
            summary = self._summary(epochs_done, final=epochs_done == s.max_epochs)
            improved = improves(summary["mAP"], s.best_map)
            if improved:
                s.best_map, s.best_epoch = summary["mAP"], epochs_done
            summary.update(best_mAP=s.best_map, best_epoch=s.best_epoch)
            s.last_summary = summary
            if improved:
                self.checkpointer.write_best(epochs_done, summary)
            self._log(summary)
        self.checkpointer.evaluation_done()
        dist_utils.barrier(self.dist)

    def _summary(self, epochs_done: int, final: bool) -> dict[str, Any]:
        logger.info("evaluating after epoch %d/%d ...", epochs_done, self.state.max_epochs)
        start = time.perf_counter()
        with preserved_rng():  # evaluation must not shift the training's random streams
            result = self.evaluate(final)
        self.model.train()
        logger.info("%s", result.table)
        modes = {
            mode: {k: v for k, v in metrics.items() if k != "cmc"}
            for mode, metrics in result.to_dict()["modes"].items()
        }
        maps = [float(m["mAP"]) for m in modes.values()]
        return {
            "epoch": epochs_done,
            "step": self.state.step,
            "mAP": float(np.mean(maps)) if maps else float("nan"),
            "modes": modes,
            "output_dir": str(self.out),
            "eval_time": time.perf_counter() - start,
        }

    def _log(self, summary: dict[str, Any]) -> None:
        self.run_log.log({"type": "eval", **{k: v for k, v in summary.items() if k != "output_dir"}})
        self.run_log.add_scalar("eval/mAP", summary["mAP"], summary["step"])
        for mode, metrics in summary["modes"].items():
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k != "num_valid":
                    self.run_log.add_scalar(f"eval/{mode}/{k}", v, summary["step"])
        self.run_log.flush_scalars()
