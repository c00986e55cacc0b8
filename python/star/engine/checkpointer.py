"""The checkpoints of a training run: resume from ``last.pt`` or start fresh, write ``last.pt``
and ``best.pt`` (``checkpoint.py`` defines their layout).

One :class:`Checkpointer` per run, shared by the hooks that write checkpoints (the
checkpoint hook, the evaluation hook); it reads and writes the run's ``TrainingState`` and
``TrainingParts`` only.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import RunConfig
from . import distributed as dist_utils
from .checkpoint import (
    BEST,
    LAST,
    best_state,
    capture_rng_state,
    check_resumable,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    training_state,
)
from .distributed import DistInfo, DistributedSetupError
from .runtime import seed_everything
from .state import ResumePoint, TrainingParts, TrainingState

logger = logging.getLogger(__name__)


class Checkpointer:
    """``last.pt`` (resume, periodic and pre-evaluation writes, the evaluation-pending mark) and
    ``best.pt`` of the run in ``out``; every write goes through :meth:`write`."""

    def __init__(
        self,
        state: TrainingState,
        parts: TrainingParts,
        cfg: RunConfig,
        out: Path,
        dist: DistInfo,
        num_classes: int,
        dataset: Mapping[str, str],
    ) -> None:
        """``dataset``: the training data's ``name``, ``root`` and ``fingerprint``; a resumed run
        must train on the same data."""
        self.state, self.parts, self.cfg, self.out, self.dist = state, parts, cfg, out, dist
        self.num_classes, self.dataset = num_classes, dict(dataset)
        self.resolved_config = cfg.to_dict()
        self._pending: dict[str, Any] | None = None  # the last write awaiting its evaluation (rank 0)

    @property
    def last(self) -> Path:
        return self.out / LAST

    def write(self, content: dict[str, Any], path: Path) -> None:
        """Every checkpoint of the run (``last.pt`` and ``best.pt``) is written here."""
        save_checkpoint(content, path)

    def resume_or_start(self) -> None:
        """Load ``last.pt`` into the parts and the state when ``train.resume`` and it exists (and
        set ``state.resumed_from``); otherwise seed the per-rank random streams."""
        ckpt = self._load_last()
        if ckpt is None:
            seed_everything(self.cfg.seed + 1 + self.dist.rank)  # per-rank streams for augmentation
            return
        s, p = self.state, self.parts
        p.model.load_state_dict(ckpt["model"])
        p.optimizer.load_state_dict(ckpt["optimizer"])
        p.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            p.scaler.load_state_dict(ckpt["scaler"])
        p.sampler.load_state_dict(ckpt["sampler"])
        s.start_epoch, s.step = int(ckpt["epoch"]), int(ckpt["step"])
        best = ckpt.get("best") or {}
        s.best_map, s.best_epoch = best.get("mAP"), best.get("epoch")
        s.last_summary = ckpt.get("last_metrics")
        s.resumed_from = ResumePoint(s.step, s.start_epoch, bool(ckpt.get("eval_pending")))
        self._restore_random_streams(ckpt)
        if self.dist.is_main:
            best_s = f"{s.best_map:.2%} (epoch {s.best_epoch})" if s.best_map is not None else "none yet"
            logger.info(
                "resumed from %s: %d/%d epochs done, step %d, best mAP %s",
                self.last,
                s.start_epoch,
                s.max_epochs,
                s.step,
                best_s,
            )

    def _load_last(self) -> dict[str, Any] | None:
        last = self.last
        exists = last.is_file()
        resuming = self.cfg.train.resume and exists
        if self.dist.enabled:
            views = dist_utils.all_gather_object(self.dist, resuming)
            if len(set(views)) != 1:
                raise DistributedSetupError(
                    f"ranks disagree on whether {last} exists: output_dir must be on a filesystem every rank shares"
                )
        if not resuming:
            if exists and self.dist.is_main:
                warnings.warn(f"train.resume is false: starting over, {last} will be overwritten", stacklevel=5)
            return None
        ckpt = load_checkpoint(last)
        check_resumable(ckpt, last, self.resolved_config, self.num_classes, self.state.max_epochs, self.dataset)
        return ckpt

    def _restore_random_streams(self, ckpt: dict[str, Any]) -> None:
        rank, world_size, generator = self.dist.rank, self.dist.world_size, self.parts.loader_generator
        rng, gens = ckpt.get("rng") or [], ckpt.get("loader_generator") or []
        if len(rng) == world_size:
            restore_rng_state(rng[rank])
            if gens and gens[rank] is not None and generator is not None:
                generator.set_state(gens[rank])
        else:
            warnings.warn(
                f"{self.last} was written by {len(rng)} process(es), this run has {world_size}: "
                "random states not restored (the run continues, but not bit-identically)",
                stacklevel=5,
            )
            seed_everything(self.cfg.seed + 1 + rank + 1000 * self.state.start_epoch)

    def save_last(self, epochs_done: int, eval_pending: bool) -> None:
        """Write ``last.pt`` (a collective under DDP: every rank's RNG states go in); sets
        ``state.eval_pending``."""
        s, p, gen = self.state, self.parts, self.parts.loader_generator
        mine = {"rng": capture_rng_state(), "generator": gen.get_state() if gen is not None else None}
        everyone = dist_utils.all_gather_object(self.dist, mine)
        s.eval_pending = eval_pending
        if not self.dist.is_main:
            return
        content = training_state(
            epoch=epochs_done,
            step=s.step,
            model=p.model.state_dict(),
            optimizer=p.optimizer.state_dict(),
            scheduler=p.scheduler.state_dict(),
            scaler=p.scaler.state_dict(),
            sampler=p.sampler.state_dict(),
            rng=[e["rng"] for e in everyone],
            loader_generator=[e["generator"] for e in everyone],
            num_classes=self.num_classes,
            config=self.resolved_config,
            dataset=self.dataset,
            best=s.best,
            last_metrics=s.last_summary,
            eval_pending=eval_pending,
        )
        self.write(content, self.last)
        self._pending = content if eval_pending else None

    def evaluation_done(self) -> None:
        """After the evaluation of the pending ``last.pt`` (every rank): rank 0 rewrites it with the
        result (``state.best``, ``state.last_summary``); clears ``state.eval_pending``."""
        content, self._pending, self.state.eval_pending = self._pending, None, False
        if self.dist.is_main and content is not None:
            content.update(eval_pending=False, best=self.state.best, last_metrics=self.state.last_summary)
            self.write(content, self.last)

    def write_best(self, epochs_done: int, summary: dict[str, Any]) -> None:
        content = best_state(
            epoch=epochs_done,
            step=self.state.step,
            model=self.parts.model.state_dict(),
            num_classes=self.num_classes,
            config=self.resolved_config,
            dataset=self.dataset,
            metrics=summary,
        )
        self.write(content, self.out / BEST)
