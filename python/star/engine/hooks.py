"""The hooks of a STAR training run (``star.engine.loop``): checkpoints, evaluation, logs
(and, from ``diverged.py``, the divergence guard).

Each hook gets what it needs in its constructor: the run's :class:`TrainingState` (the
only thing hooks share; see ``state.py`` for its fields), the :class:`TrainingParts`, the
settings, and the services it writes through (the run's ``Checkpointer``, ``RunLog``).
No hook refers to another. ``Trainer.build_hooks`` registers them in this order, so that
after each epoch the meters are checked, then the epoch is checkpointed, logged and
evaluated:

- :class:`DivergenceGuard`: every rank's loss meters on the device (no host copy per
  step); once per ``train.log_period`` and at each epoch's end it copies them to the host
  (one transfer, into ``state.losses``) and raises ``TrainingDiverged`` when one is
  non-finite, before the checkpoint hook writes anything of that state.
- :class:`CheckpointHook`: resumes ``last.pt`` before the run; writes it atomically every
  ``train.checkpoint_period`` epochs and after every epoch that is evaluated, then marked
  "evaluation pending" (``state.eval_pending``) until the evaluation's result is in it
  (a kill during an evaluation repeats only the evaluation).
- :class:`LoggingHook`: ``config.yaml``, header, progress bar (on a terminal) or one line per
  logging period, ``train`` and ``epoch`` records in ``log.jsonl`` and TensorBoard (it opens
  the ``RunLog``); the losses are the guard's host copies in ``state.losses``.
- :class:`EvalHook`: evaluates when ``state.eval_pending`` (every ``train.eval_period``
  epochs, after the last one, and a pending evaluation of a resumed run), keeps ``best.pt``
  for the best mean mAP, logs the ``eval`` record.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

from ..config import RunConfig, save_run_info
from ..progress import format_duration, on_terminal
from . import distributed as dist_utils
from .checkpoint import LAST, preserved_rng
from .checkpointer import Checkpointer
from .distributed import DistInfo
from .diverged import log_due
from .loop import HookBase
from .logs import RunLog, memory_mb
from .state import TrainingParts, TrainingState

if TYPE_CHECKING:  # evaluation pulls in the metrics stack; the trainer imports it lazily
    from .evaluator import EvalResult


def evaluation_due(epochs_done: int, epochs: int, eval_period: int) -> bool:
    """Whether the run evaluates after ``epochs_done`` epochs (always after the last one)."""
    return epochs_done == epochs or (eval_period > 0 and epochs_done % eval_period == 0)


def improves(value: float, best: Optional[float]) -> bool:
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
        evaluate: Callable[[bool], "EvalResult"],
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
            print(f"training already finished ({s.start_epoch}/{s.max_epochs} epochs); final metrics from {self.out / LAST}")

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
        print(f"evaluating after epoch {epochs_done}/{self.state.max_epochs} ...", flush=True)
        start = time.perf_counter()
        with preserved_rng():  # evaluation must not shift the training's random streams
            result = self.evaluate(final)
        self.model.train()
        print(result.table, flush=True)
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


def _loss_key(term: str) -> str:  # the log.jsonl name of a meter
    return {"total": "loss", "grad_norm": "grad_norm"}.get(term, f"loss_{term}")


class LoggingHook(HookBase):
    """Rank 0: config.yaml, header, progress, ``train`` and ``epoch`` records.

    The loss means are ``state.losses`` (the divergence guard's host copies, one per
    logging period). A tqdm bar when ``train.progress`` and stderr is a terminal; otherwise
    (a batch job's log) one plain line per logging period: epoch, iteration, losses, lr,
    it/s, ETA, memory.

    ``log.jsonl`` records: ``train`` (means over the last ``train.log_period`` steps),
    ``epoch``, and ``resumed`` (``step``, ``epoch``, ``eval_pending``) written before the
    first record of a resumed run: it supersedes the earlier records of the steps and
    epochs it redoes (``logs.drop_superseded`` applies the rule).
    """

    def __init__(
        self,
        state: TrainingState,
        parts: TrainingParts,
        run_log: RunLog,
        cfg: RunConfig,
        dist: DistInfo,
        device: torch.device,
        num_classes: int,
        iters_per_epoch: int,
    ) -> None:
        self.state, self.parts, self.run_log, self.cfg = state, parts, run_log, cfg
        self.dist, self.device = dist, device
        self.num_classes, self.iters_per_epoch = num_classes, iters_per_epoch
        self.active = dist.is_main  # rank 0 logs alone
        self.bar: Any = None  # the epoch's tqdm bar, on a terminal
        self.run_start = self.epoch_start = self.t_window = self.t_prev = 0.0  # time.perf_counter() marks
        self.n_window = 0  # steps in the current logging period
        self.data_time = 0.0  # their time waiting for batches

    def before_train(self) -> None:
        s, p, cfg = self.state, self.parts, self.cfg
        if not self.active:
            return
        save_run_info(cfg, self.run_log.out)
        self.run_log.open(s.step, s.resumed_from.to_record() if s.resumed_from is not None else None)
        self.run_start = time.perf_counter()
        n_params = sum(q.numel() for q in p.model.parameters())
        groups = ", ".join(
            f"{g.get('name', f'group {i}')} {len(g['params'])} tensors @ lr {g['lr']:.2e}"
            for i, g in enumerate(p.optimizer.param_groups)
        )
        print(
            f"training {cfg.data.dataset} ({self.num_classes} ids) on {self.device}"
            f"{f' x {self.dist.world_size} processes' if self.dist.enabled else ''}: "
            f"{n_params / 1e6:.1f}M parameters, {self.iters_per_epoch} iterations/epoch, "
            f"{s.max_epochs} epochs, AMP {'on' if p.amp else 'off'}, "
            f"deterministic {'on' if cfg.deterministic else 'off'}; param groups: {groups}; "
            f"output {self.run_log.out}",
            flush=True,
        )

    def after_train(self) -> None:
        self.run_log.close()

    def before_epoch(self) -> None:
        if not self.active:
            return
        s = self.state
        self.bar = None
        if self.cfg.train.progress and on_terminal():
            from tqdm.auto import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

            self.bar = tqdm(
                total=self.iters_per_epoch, desc=f"epoch {s.epoch + 1}/{s.max_epochs}", dynamic_ncols=True, leave=False
            )
        self.n_window = 0
        self.data_time = 0.0
        self.epoch_start = self.t_window = self.t_prev = time.perf_counter()

    def before_step(self) -> None:
        if self.active:
            self.data_time += time.perf_counter() - self.t_prev

    def after_step(self) -> None:
        if not self.active:
            return
        self.n_window += 1
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(1)
        if log_due(self.state.step, self.cfg.train.log_period):
            self._log_train(now, self.state.step_lr)
        self.t_prev = time.perf_counter()

    def _eta(self, now: float) -> float:
        """Seconds left in the run, from this run's mean time per iteration so far."""
        s, ipe = self.state, self.iters_per_epoch
        left = (s.max_epochs - s.epoch) * ipe - s.iter - 1
        return (now - self.run_start) / ((s.epoch - s.start_epoch) * ipe + s.iter + 1) * left

    def _log_train(self, now: float, lr: float) -> None:
        s, p, n = self.state, self.parts, self.n_window
        record: dict[str, Any] = {
            "type": "train",
            "epoch": s.epoch + 1,
            "iter": s.iter + 1,
            "iters": self.iters_per_epoch,
            "step": s.step,
            "lr": lr,
            **{_loss_key(k): v for k, v in s.losses.window.items()},
            "time_per_iter": (now - self.t_window) / n,
            "data_time": self.data_time / n,
            "memory_mb": memory_mb(self.device),
        }
        if len(p.optimizer.param_groups) > 1:
            record["lr_pretrained"] = p.optimizer.param_groups[1]["lr"]
        if p.amp:
            record["amp_scale"] = float(p.scaler.get_scale())
        self.run_log.log(record)
        eta = format_duration(self._eta(now))
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{record.get('loss', float('nan')):.3f}", lr=f"{lr:.2e}", eta=eta,
                mem=f"{record['memory_mb']:.0f}M", refresh=False,
            )
        else:
            losses = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k.startswith("loss"))
            print(
                f"[epoch {record['epoch']} iter {record['iter']}/{record['iters']}] {losses} "
                f"lr={record['lr']:.2e} {1 / record['time_per_iter']:.2f} it/s ETA {eta} "
                f"mem={record['memory_mb']:.0f}M",
                flush=True,
            )
        for k, v in record.items():
            if k not in ("type", "epoch", "iter", "iters", "step") and isinstance(v, (int, float)):
                self.run_log.add_scalar(f"train/{k}", v, s.step)
        self.n_window, self.data_time, self.t_window = 0, 0.0, now

    def after_epoch(self) -> None:
        if not self.active:
            return
        s, subs = self.state, self.state.substitutions
        assert subs is not None, "the trainer counts each epoch's substituted frames"
        if self.bar is not None:
            self.bar.close()
        record: dict[str, Any] = {
            "type": "epoch",
            "epoch": s.epoch + 1,
            "step": s.step,
            "iters": s.losses.epoch_steps,
            "epoch_time": time.perf_counter() - self.epoch_start,
            **{_loss_key(k): v for k, v in s.losses.epoch.items() if k != "grad_norm"},
            "lr": self.parts.optimizer.param_groups[0]["lr"],
            "memory_mb": memory_mb(self.device),
            "substituted_frames": subs.substituted,
        }
        self.run_log.log(record)
        print(
            f"epoch {s.epoch + 1}/{s.max_epochs}: loss {record.get('loss', float('nan')):.4f}, "
            f"{record['epoch_time']:.1f}s, lr {record['lr']:.2e}, mem {record['memory_mb']:.0f}M, "
            f"{subs.summary()}",
            flush=True,
        )
