"""The hooks of a STAR training run (``star.engine.loop``): checkpoints, evaluation, logs
(and, from ``diverged.py``, the divergence guard).

Registered in this order by ``Trainer.build_hooks``, so that after each epoch the meters
are checked, then the epoch is checkpointed, logged and evaluated:

- :class:`DivergenceGuard`: every rank's loss meters on the device (no host copy per
  step); once per ``train.log_period`` and at each epoch's end it copies them to the host
  (one transfer) and raises ``TrainingDiverged`` when one is non-finite, before the
  checkpoint hook writes anything of that state.
- :class:`CheckpointHook`: resumes ``last.pt`` before the run; writes it atomically every
  ``train.checkpoint_period`` epochs and after every epoch that is evaluated, then marked
  "evaluation pending" until the evaluation's result is in it (a kill during an
  evaluation repeats only the evaluation); all checkpoint writes go through ``write``.
- :class:`LoggingHook`: ``config.yaml``, header, progress bar (on a terminal) or one line per
  logging period, ``log.jsonl``, TensorBoard; it logs the guard's host copies.
- :class:`EvalHook`: evaluates every ``train.eval_period`` epochs and after the last one
  (and a pending evaluation of a resumed run), keeps ``best.pt`` for the best mean mAP.

The hooks read the trainer's state (``cfg``, ``out``, ``dist``, ``model``, ``step``, ...).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config import save_run_info
from . import distributed as dist_utils
from .checkpoint import BEST, LAST, best_state, capture_rng_state, check_resumable, load_checkpoint
from .checkpoint import preserved_rng, restore_rng_state, save_checkpoint, training_state
from ..progress import format_duration, on_terminal
from .diverged import DivergenceGuard, log_due
from .logs import LOG_FILE, TB_DIR, JsonlLog, memory_mb, open_tensorboard
from .loop import HookBase
from .runtime import seed_everything


def evaluation_due(epochs_done: int, epochs: int, eval_period: int) -> bool:
    """Whether the run evaluates after ``epochs_done`` epochs (always after the last one)."""
    return epochs_done == epochs or (eval_period > 0 and epochs_done % eval_period == 0)


def improves(value: float, best: Optional[float]) -> bool:
    """Whether mean mAP ``value`` beats ``best`` (a NaN never wins, and is always beaten)."""
    if best is None or math.isnan(best):
        return best is None or not math.isnan(value)
    return not math.isnan(value) and value > best


class CheckpointHook(HookBase):
    """``last.pt``: resume, periodic and pre-evaluation writes, the evaluation-pending mark."""

    def __init__(self) -> None:
        self.eval_pending = False  # the last write awaits its evaluation's result
        self._pending_state: Optional[dict[str, Any]] = None  # that write's content (rank 0)

    def write(self, state: dict[str, Any], path: Path) -> None:
        """Every checkpoint of the run (``last.pt`` and ``best.pt``) is written here."""
        save_checkpoint(state, path)

    def before_train(self) -> None:
        t = self.trainer
        ckpt = self._resume_or_start()
        t.resumed_from = None
        if ckpt is not None:
            t.resumed_from = {"step": t.step, "epoch": t.start_epoch, "eval_pending": bool(ckpt.get("eval_pending"))}
            if ckpt.get("eval_pending"):  # killed during the evaluation after this checkpoint: redo it
                self.save_last(t.start_epoch, eval_pending=True)

    def after_epoch(self) -> None:
        t = self.trainer
        done = t.epoch + 1
        due = evaluation_due(done, t.max_epochs, t.cfg.train.eval_period)
        if due or done % t.cfg.train.checkpoint_period == 0:
            self.save_last(done, eval_pending=due)

    def save_last(self, epochs_done: int, eval_pending: bool) -> None:
        """Write ``last.pt`` (a collective under DDP: every rank's RNG states go in)."""
        t = self.trainer
        gen = t.loader.generator
        mine = {"rng": capture_rng_state(), "generator": gen.get_state() if gen is not None else None}
        everyone = dist_utils.all_gather_object(t.dist, mine)
        self.eval_pending = eval_pending
        if not t.dist.is_main:
            return
        state = training_state(
            epoch=epochs_done, step=t.step, model=t.model.state_dict(), optimizer=t.optimizer.state_dict(),
            scheduler=t.scheduler.state_dict(), scaler=t.scaler.state_dict(), sampler=t.sampler.state_dict(),
            rng=[e["rng"] for e in everyone], loader_generator=[e["generator"] for e in everyone],
            num_classes=t.num_classes, config=t.resolved_config,
            best={"mAP": t.best_map, "epoch": t.best_epoch}, last_metrics=t.last_summary, eval_pending=eval_pending,
        )
        self.write(state, t.out / LAST)
        self._pending_state = state if eval_pending else None

    def evaluation_done(self) -> None:
        """After the evaluation of the pending ``last.pt`` (every rank): rank 0 rewrites it with the result."""
        t = self.trainer
        state, self._pending_state, self.eval_pending = self._pending_state, None, False
        if t.dist.is_main:
            best = {"mAP": t.best_map, "epoch": t.best_epoch}
            state.update(eval_pending=False, best=best, last_metrics=t.last_summary)
            self.write(state, t.out / LAST)

    def write_best(self, epochs_done: int, summary: dict[str, Any]) -> None:
        t = self.trainer
        state = best_state(
            epoch=epochs_done, step=t.step, model=t.model.state_dict(), num_classes=t.num_classes,
            config=t.resolved_config, metrics=summary,
        )
        self.write(state, t.out / BEST)

    def _resume_or_start(self) -> Optional[dict[str, Any]]:
        t = self.trainer
        cfg, last = t.cfg, t.out / LAST
        exists = last.is_file()
        resuming = cfg.train.resume and exists
        if t.dist.enabled:
            views = dist_utils.all_gather_object(t.dist, resuming)
            if len(set(views)) != 1:
                raise RuntimeError(f"ranks disagree on whether {last} exists (is output_dir on a shared filesystem?)")
        if not resuming:
            if exists and t.dist.is_main:
                warnings.warn(f"train.resume is false: starting over, {last} will be overwritten", stacklevel=4)
            seed_everything(cfg.seed + 1 + t.dist.rank)  # per-rank streams for augmentation
            return None
        ckpt = load_checkpoint(last)
        check_resumable(ckpt, last, t.resolved_config, t.num_classes, t.max_epochs)
        epochs = t.max_epochs
        t.model.load_state_dict(ckpt["model"])
        t.optimizer.load_state_dict(ckpt["optimizer"])
        t.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            t.scaler.load_state_dict(ckpt["scaler"])
        t.sampler.load_state_dict(ckpt["sampler"])
        t.start_epoch, t.step = int(ckpt["epoch"]), int(ckpt["step"])
        best = ckpt.get("best") or {}
        t.best_map, t.best_epoch = best.get("mAP"), best.get("epoch")
        t.last_summary = ckpt.get("last_metrics")
        rng, gens = ckpt.get("rng") or [], ckpt.get("loader_generator") or []
        if len(rng) == t.dist.world_size:
            restore_rng_state(rng[t.dist.rank])
            if gens and gens[t.dist.rank] is not None and t.loader.generator is not None:
                t.loader.generator.set_state(gens[t.dist.rank])
        else:
            warnings.warn(
                f"{last} was written by {len(rng)} process(es), this run has {t.dist.world_size}: "
                "random states not restored (the run continues, but not bit-identically)",
                stacklevel=4,
            )
            seed_everything(cfg.seed + 1 + t.dist.rank + 1000 * t.start_epoch)
        if t.dist.is_main:
            best_s = f"{t.best_map:.2%} (epoch {t.best_epoch})" if t.best_map is not None else "none yet"
            print(
                f"resumed from {last}: {t.start_epoch}/{epochs} epochs done, step {t.step}, best mAP {best_s}",
                flush=True,
            )
        return ckpt


class EvalHook(HookBase):
    """Periodic and final evaluation on rank 0 (the other ranks wait), ``best.pt``."""

    def __init__(self, checkpointer: CheckpointHook, logger: "LoggingHook") -> None:
        self.checkpointer, self.logger = checkpointer, logger

    def before_train(self) -> None:
        t = self.trainer
        if self.checkpointer.eval_pending:
            self._evaluate(t.start_epoch)
        elif t.start_epoch >= t.max_epochs and t.dist.is_main:
            print(
                f"training already finished ({t.start_epoch}/{t.max_epochs} epochs); "
                f"final metrics from {t.out / LAST}"
            )

    def after_epoch(self) -> None:
        if self.checkpointer.eval_pending:  # the checkpoint hook wrote last.pt for this evaluation
            self._evaluate(self.trainer.epoch + 1)

    def _evaluate(self, epochs_done: int) -> None:
        t = self.trainer
        if t.dist.is_main:
            summary = self._summary(epochs_done, final=epochs_done == t.max_epochs)
            improved = improves(summary["mAP"], t.best_map)
            if improved:
                t.best_map, t.best_epoch = summary["mAP"], epochs_done
            summary.update(best_mAP=t.best_map, best_epoch=t.best_epoch)
            t.last_summary = summary
            if improved:
                self.checkpointer.write_best(epochs_done, summary)
            self.logger.log_eval(summary)
        self.checkpointer.evaluation_done()
        dist_utils.barrier(t.dist)

    def _summary(self, epochs_done: int, final: bool) -> dict[str, Any]:
        t = self.trainer
        print(f"evaluating after epoch {epochs_done}/{t.max_epochs} ...", flush=True)
        start = time.perf_counter()
        with preserved_rng():  # evaluation must not shift the training's random streams
            result = t.evaluate(final)
        t.model.train()
        print(result.table, flush=True)
        modes = {
            mode: {k: v for k, v in metrics.items() if k != "cmc"}
            for mode, metrics in result.to_dict()["modes"].items()
        }
        maps = [float(m["mAP"]) for m in modes.values()]
        return {
            "epoch": epochs_done,
            "step": t.step,
            "mAP": float(np.mean(maps)) if maps else float("nan"),
            "modes": modes,
            "output_dir": str(t.out),
            "eval_time": time.perf_counter() - start,
        }


def _loss_key(term: str) -> str:  # the log.jsonl name of a meter
    return {"total": "loss", "grad_norm": "grad_norm"}.get(term, f"loss_{term}")


class LoggingHook(HookBase):
    """Rank 0: config.yaml, header, progress, log.jsonl and TensorBoard records.

    The loss means come from ``guard`` (its host copies, one per logging period). A tqdm
    bar when ``train.progress`` and stderr is a terminal; otherwise (a batch job's log)
    one plain line per logging period: epoch, iteration, losses, lr, it/s, ETA, memory.

    ``log.jsonl`` records: ``train`` (means over the last ``train.log_period`` steps),
    ``epoch``, ``eval``, and ``resumed`` (``step``, ``epoch``, ``eval_pending``) written
    before the first record of a resumed run: it supersedes the earlier records of the
    steps and epochs it redoes (``logs.drop_superseded`` applies the rule).
    """

    def __init__(self, guard: DivergenceGuard) -> None:
        self.guard = guard
        self.jsonl: Optional[JsonlLog] = None
        self.tb = None
        self._resumed: Optional[dict[str, Any]] = None

    @property
    def active(self) -> bool:  # rank 0 logs alone
        return self.trainer.dist.is_main

    def before_train(self) -> None:
        t = self.trainer
        if not self.active:
            return
        save_run_info(t.cfg, t.out)
        self.jsonl = JsonlLog(t.out / LOG_FILE)
        if t.cfg.train.tensorboard:
            self.tb = open_tensorboard(t.out / TB_DIR, purge_step=t.step if t.step else None)
        self.run_start = time.perf_counter()
        self._resumed = t.resumed_from  # logged with the first record: a finished rerun logs nothing
        n_params = sum(p.numel() for p in t.model.parameters())
        groups = ", ".join(
            f"{g['name']} {len(g['params'])} tensors @ lr {g['lr']:.2e}" for g in t.optimizer.param_groups
        )
        print(
            f"training {t.cfg.data.dataset} ({t.num_classes} ids) on {t.device}"
            f"{f' x {t.dist.world_size} processes' if t.dist.enabled else ''}: "
            f"{n_params / 1e6:.1f}M parameters, {t.iters_per_epoch} iterations/epoch, "
            f"{t.max_epochs} epochs, AMP {'on' if t.amp else 'off'}, "
            f"deterministic {'on' if t.cfg.deterministic else 'off'}; param groups: {groups}; output {t.out}",
            flush=True,
        )

    def after_train(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
            self.jsonl = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def before_epoch(self) -> None:
        if not self.active:
            return
        t = self.trainer
        self.bar = None
        if t.cfg.train.progress and on_terminal():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=t.iters_per_epoch, desc=f"epoch {t.epoch + 1}/{t.max_epochs}", dynamic_ncols=True, leave=False
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
        t = self.trainer
        self.n_window += 1
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(1)
        if log_due(t.step, t.cfg.train.log_period):
            self._log_train(now, t.step_lr)
        self.t_prev = time.perf_counter()

    def _eta(self, now: float) -> float:
        """Seconds left in the run, from this run's mean time per iteration so far."""
        t, ipe = self.trainer, self.trainer.iters_per_epoch
        left = (t.max_epochs - t.epoch) * ipe - t.iter - 1
        return (now - self.run_start) / ((t.epoch - t.start_epoch) * ipe + t.iter + 1) * left

    def _log_train(self, now: float, lr: float) -> None:
        t, n = self.trainer, self.n_window
        record = {
            "type": "train",
            "epoch": t.epoch + 1,
            "iter": t.iter + 1,
            "iters": t.iters_per_epoch,
            "step": t.step,
            "lr": lr,
            **{_loss_key(k): v for k, v in self.guard.window.items()},
            "time_per_iter": (now - self.t_window) / n,
            "data_time": self.data_time / n,
            "memory_mb": memory_mb(t.device),
        }
        if len(t.optimizer.param_groups) > 1:
            record["lr_pretrained"] = t.optimizer.param_groups[1]["lr"]
        if t.amp:
            record["amp_scale"] = float(t.scaler.get_scale())
        self.log(record)
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
        if self.tb is not None:
            for k, v in record.items():
                if k not in ("type", "epoch", "iter", "iters", "step") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, record["step"])
        self.n_window, self.data_time, self.t_window = 0, 0.0, now

    def after_epoch(self) -> None:
        if not self.active:
            return
        t = self.trainer
        if self.bar is not None:
            self.bar.close()
        record = {
            "type": "epoch",
            "epoch": t.epoch + 1,
            "step": t.step,
            "iters": self.guard.meters.epoch_steps,
            "epoch_time": time.perf_counter() - self.epoch_start,
            **{_loss_key(k): v for k, v in self.guard.epoch_means.items() if k != "grad_norm"},
            "lr": t.optimizer.param_groups[0]["lr"],
            "memory_mb": memory_mb(t.device),
            "substituted_frames": t.substitutions.substituted,
        }
        self.log(record)
        print(
            f"epoch {t.epoch + 1}/{t.max_epochs}: loss {record.get('loss', float('nan')):.4f}, "
            f"{record['epoch_time']:.1f}s, lr {record['lr']:.2e}, mem {record['memory_mb']:.0f}M, "
            f"{t.substitutions.summary()}",
            flush=True,
        )

    def log_eval(self, summary: dict[str, Any]) -> None:
        self.log({"type": "eval", **{k: v for k, v in summary.items() if k != "output_dir"}})
        if self.tb is not None:
            self.tb.add_scalar("eval/mAP", summary["mAP"], summary["step"])
            for mode, metrics in summary["modes"].items():
                for k, v in metrics.items():
                    if isinstance(v, (int, float)) and k != "num_valid":
                        self.tb.add_scalar(f"eval/{mode}/{k}", v, summary["step"])
            self.tb.flush()

    def log(self, record: dict[str, Any]) -> None:
        if self.jsonl is None:
            return
        if self._resumed is not None:
            self.jsonl.write({"type": "resumed", **self._resumed, "time": time.time()})
            self._resumed = None
        self.jsonl.write({**record, "time": time.time()})
