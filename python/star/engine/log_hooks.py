"""The logging hooks of a STAR training run (rank 0 only), one output each.

``Trainer.build_hooks`` registers them, in this order, between the checkpoint and the
evaluation hooks (``star.engine.hooks``) on rank 0:

- :class:`TrainRecordHook` measures: at each logging step (``train.log_period``) it
  builds the ``train`` record (means over the steps since the previous one: losses, lr,
  time per iteration, data time, memory) and after each epoch the ``epoch`` record, into
  ``state.records``; it writes nothing. The hooks below only read what it measured.
- :class:`ConfigFileHook`: ``config.yaml`` (the resolved config) before the run.
- :class:`RunLogHook`: the records in ``log.jsonl`` and TensorBoard (it opens and closes
  the run's ``RunLog``, which the evaluation hook writes its records through as well).
- :class:`ConsoleLogHook`: the header, one line per logging step (only without a
  progress bar: a batch job's log) and one line per epoch (the ``star`` logger, on stdout).
- :class:`ProgressBarHook`: a tqdm bar per epoch, on a terminal with ``train.progress``.

The loss means are ``state.losses`` (the divergence guard's host copies, one per logging
period), so no logging hook copies anything from the device itself.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig, save_run_info
from ..progress import format_duration
from .diverged import log_due
from .logs import RunLog, memory_mb
from .loop import HookBase
from .state import TrainingParts, TrainingState

logger = logging.getLogger(__name__)

__all__ = [
    "ConfigFileHook",
    "ConsoleLogHook",
    "ProgressBarHook",
    "RunLogHook",
    "TrainRecordHook",
    "run_header",
]

# Keys of a record that are its position, not a measurement (no TensorBoard scalar).
_POSITION_KEYS = ("type", "epoch", "iter", "iters", "step")


def _loss_key(term: str) -> str:  # the log.jsonl name of a meter
    return {"total": "loss", "grad_norm": "grad_norm"}.get(term, f"loss_{term}")


def run_header(
    cfg: RunConfig,
    parts: TrainingParts,
    state: TrainingState,
    *,
    device: torch.device,
    world_size: int,
    num_classes: int,
    iters_per_epoch: int,
    out: Path,
) -> str:
    """The line that opens a run's console output: data, device, model size, schedule, output."""
    n_params = sum(q.numel() for q in parts.model.parameters())
    groups = ", ".join(
        f"{g.get('name', f'group {i}')} {len(g['params'])} tensors @ lr {g['lr']:.2e}"
        for i, g in enumerate(parts.optimizer.param_groups)
    )
    return (
        f"training {cfg.data.dataset} ({num_classes} ids) on {device}"
        f"{f' x {world_size} processes' if world_size > 1 else ''}: "
        f"{n_params / 1e6:.1f}M parameters, {iters_per_epoch} iterations/epoch, "
        f"{state.max_epochs} epochs, AMP {'on' if parts.amp else 'off'}, "
        f"deterministic {'on' if cfg.deterministic else 'off'}; param groups: {groups}; "
        f"output {out}"
    )


class TrainRecordHook(HookBase):
    """Measures the ``train`` and ``epoch`` records into ``state.records`` (see the module docstring)."""

    def __init__(
        self, state: TrainingState, parts: TrainingParts, device: torch.device, iters_per_epoch: int, log_period: int
    ) -> None:
        self.state, self.parts, self.device = state, parts, device
        self.iters_per_epoch, self.log_period = iters_per_epoch, log_period
        self.run_start = self.epoch_start = self.t_window = self.t_prev = 0.0  # time.perf_counter() marks
        self.n_window = 0  # steps in the current logging period
        self.data_time = 0.0  # their time waiting for batches

    def before_train(self) -> None:
        self.run_start = time.perf_counter()

    def before_epoch(self) -> None:
        self.n_window, self.data_time = 0, 0.0
        self.epoch_start = self.t_window = self.t_prev = time.perf_counter()
        self.state.records.epoch = None

    def before_step(self) -> None:
        self.data_time += time.perf_counter() - self.t_prev
        self.state.records.train = None

    def after_step(self) -> None:
        self.n_window += 1
        if log_due(self.state.step, self.log_period):
            now = time.perf_counter()
            self.state.records.train = self._train_record(now)
            self.state.records.eta_seconds = self._eta(now)
            self.n_window, self.data_time, self.t_window = 0, 0.0, now
        self.t_prev = time.perf_counter()

    def _eta(self, now: float) -> float:
        """Seconds left in the run, from this run's mean time per iteration so far."""
        s, ipe = self.state, self.iters_per_epoch
        left = (s.max_epochs - s.epoch) * ipe - s.iter - 1
        return (now - self.run_start) / ((s.epoch - s.start_epoch) * ipe + s.iter + 1) * left

    def _train_record(self, now: float) -> dict[str, Any]:
        s, p, n = self.state, self.parts, self.n_window
        record: dict[str, Any] = {
            "type": "train",
            "epoch": s.epoch + 1,
            "iter": s.iter + 1,
            "iters": self.iters_per_epoch,
            "step": s.step,
            "lr": s.step_lr,
            **{_loss_key(k): v for k, v in s.losses.window.items()},
            "time_per_iter": (now - self.t_window) / n,
            "data_time": self.data_time / n,
            "memory_mb": memory_mb(self.device),
        }
        if len(p.optimizer.param_groups) > 1:
            record["lr_pretrained"] = p.optimizer.param_groups[1]["lr"]
        if p.amp:
            record["amp_scale"] = float(p.scaler.get_scale())
        return record

    def after_epoch(self) -> None:
        s = self.state
        assert s.substitutions is not None, "the trainer counts each epoch's substituted frames"
        s.records.epoch = {
            "type": "epoch",
            "epoch": s.epoch + 1,
            "step": s.step,
            "iters": s.losses.epoch_steps,
            "epoch_time": time.perf_counter() - self.epoch_start,
            **{_loss_key(k): v for k, v in s.losses.epoch.items() if k != "grad_norm"},
            "lr": self.parts.optimizer.param_groups[0]["lr"],
            "memory_mb": memory_mb(self.device),
            "substituted_frames": s.substitutions.substituted,
        }


class ConfigFileHook(HookBase):
    """Writes the resolved config (``config.yaml``, ``star.config.save_run_info``) into ``out`` before the run."""

    def __init__(self, cfg: RunConfig, out: Path) -> None:
        self.cfg, self.out = cfg, out

    def before_train(self) -> None:
        save_run_info(self.cfg, self.out)


class RunLogHook(HookBase):
    """Opens the run's ``RunLog`` before the run (with the ``resumed`` record of a resumed run,
    see ``logs.py``), writes the ``train`` and ``epoch`` records to it (``log.jsonl``, and their
    numbers as TensorBoard scalars of ``train/``), closes it after the run."""

    def __init__(self, state: TrainingState, run_log: RunLog) -> None:
        self.state, self.run_log = state, run_log

    def before_train(self) -> None:
        s = self.state
        self.run_log.open(s.step, s.resumed_from.to_record() if s.resumed_from is not None else None)

    def after_train(self) -> None:
        self.run_log.close()

    def after_step(self) -> None:
        record = self.state.records.train
        if record is None:
            return
        self.run_log.log(record)
        for k, v in record.items():
            if k not in _POSITION_KEYS and isinstance(v, (int, float)):
                self.run_log.add_scalar(f"train/{k}", v, record["step"])

    def after_epoch(self) -> None:
        if self.state.records.epoch is not None:
            self.run_log.log(self.state.records.epoch)


class ConsoleLogHook(HookBase):
    """Prints ``header`` before the run, a line per ``train`` record when ``step_lines`` (no
    progress bar shows the run's progress) and a line per ``epoch`` record."""

    def __init__(self, state: TrainingState, header: str, step_lines: bool) -> None:
        self.state, self.header, self.step_lines = state, header, step_lines

    def before_train(self) -> None:
        logger.info("%s", self.header)

    def after_step(self) -> None:
        record = self.state.records.train
        if record is None or not self.step_lines:
            return
        losses = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k.startswith("loss"))
        logger.info(
            "[epoch %d iter %d/%d] %s lr=%.2e %.2f it/s ETA %s mem=%.0fM",
            record["epoch"],
            record["iter"],
            record["iters"],
            losses,
            record["lr"],
            1 / record["time_per_iter"],
            format_duration(self.state.records.eta_seconds),
            record["memory_mb"],
        )

    def after_epoch(self) -> None:
        s, record = self.state, self.state.records.epoch
        if record is None:
            return
        assert s.substitutions is not None, "the trainer counts each epoch's substituted frames"
        logger.info(
            "epoch %d/%d: loss %.4f, %.1fs, lr %.2e, mem %.0fM, %s",
            record["epoch"],
            s.max_epochs,
            record.get("loss", float("nan")),
            record["epoch_time"],
            record["lr"],
            record["memory_mb"],
            s.substitutions.summary(),
        )


class ProgressBarHook(HookBase):
    """A tqdm bar per epoch (on stderr), its postfix refreshed from each ``train`` record."""

    def __init__(self, state: TrainingState, iters_per_epoch: int) -> None:
        self.state, self.iters_per_epoch = state, iters_per_epoch
        self.bar: Any = None

    def before_epoch(self) -> None:
        from tqdm.auto import tqdm

        s = self.state
        self.bar = tqdm(
            total=self.iters_per_epoch, desc=f"epoch {s.epoch + 1}/{s.max_epochs}", dynamic_ncols=True, leave=False
        )

    def after_step(self) -> None:
        self.bar.update(1)
        record = self.state.records.train
        if record is not None:
            self.bar.set_postfix(
                loss=f"{record.get('loss', float('nan')):.3f}",
                lr=f"{record['lr']:.2e}",
                eta=format_duration(self.state.records.eta_seconds),
                mem=f"{record['memory_mb']:.0f}M",
                refresh=False,
            )

    def after_epoch(self) -> None:
        self.bar.close()
        self.bar = None
