"""The STAR training run (docs/architecture.md): ``train(cfg)`` / ``Trainer(cfg).run()``.

What a run does, in order:

1. Locks ``output_dir`` (``star.fileio.exclusive_dir_lock``, rank 0, until the run ends;
   at once when it exists, else when it is created in 3): a second training into it fails
   at once naming the first. Temporaries of killed checkpoint writes there are removed.
2. Reads the dataset and its keypoint store (generating the synthetic dataset first when
   ``data.dataset`` is ``synthetic`` and ``data.root`` holds none yet), holding a shared
   ``star.fileio.dataset_lock`` on ``data.root`` until the run ends. Bad paths and
   files fail here, before a model is built or anything is written to ``output_dir``.
3. Builds the model for the number of training identities, the optimiser (pretrained
   backbone tensors at ``optim.pretrained_lr_mult`` x lr, only when the backbone really
   was initialised from a file) with its per-iteration schedule (``schedule.py``), the
   loss and, on CUDA with ``train.amp``, float16 autocast with a ``GradScaler``; each by
   an overridable ``build_*`` method, so a subclass replaces one part. With ``train.compile``
   the network runs through ``torch.compile`` (``star.models.CompiledNetwork``; checkpoints
   hold the plain network's state).
4. Runs the loop of ``star.engine.loop`` with the hooks of ``star.engine.hooks``: resume
   from ``last.pt`` (``train.resume``; the config must match the checkpoint's in all that
   shapes the run, ``checkpoint.RESUMABLE_CHANGES``), ``last.pt`` written atomically
   every ``checkpoint_period`` epochs, at every evaluation and after the last epoch (model,
   optimiser, scheduler, scaler, epoch, step, best metric, every rank's RNG and loader
   generator states, sampler state, resolved config: a kill loses at most the current
   epoch); evaluation every ``eval_period`` epochs (0 = only after the last) and after the
   last (table, ``metrics.json``, ``best.pt`` for the best mean mAP; it never changes the
   training's random streams, so a result does not depend on where a run was
   interrupted); ``log.jsonl`` (``train``, ``epoch``, ``eval`` and, after a resume,
   ``resumed`` records: see ``logs.py``), TensorBoard (``tb/``) and a tqdm bar on a
   terminal (one plain line per ``train.log_period`` elsewhere).

A training step never waits for the device: the loss terms stay on it, summed there, and
are copied to the host once per ``train.log_period`` and at each epoch's end. There a
non-finite loss (or, without AMP, a non-finite gradient norm when clipping) raises
:class:`TrainingDiverged`, before any checkpoint is written: ``last.pt`` stays the last good
one. The steps since the previous check may have been taken on the non-finite values (in
memory only). With AMP on CUDA the optimiser is a fused one, which ``GradScaler`` steps
without reading its found-inf flag on the host.

``deterministic: true`` enables ``torch.use_deterministic_algorithms`` (with
``CUBLAS_WORKSPACE_CONFIG`` and deterministic cuDNN) and loads training batches with
fresh DataLoader workers every epoch, so a resumed run reproduces an uninterrupted one
exactly. Otherwise workers persist across epochs (faster) and a resumed run is a valid
continuation but not bit-identical.

DDP: ``torchrun --nproc_per_node N``; each process joins the group (NCCL on CUDA, Gloo on
CPU) and trains on its share of every epoch's batches (the effective batch is N x the
configured one, the lr is not rescaled); rank 0 alone logs (its losses), checkpoints and
evaluates.

Epochs and iterations are 1-based in everything printed or logged; ``step`` counts
optimiser steps taken.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import RunConfig, check_ranges
from ..console import log_to_stdout
from ..data import (
    KeypointStore,
    VideoReidData,
    load_dataset,
    normalize_frames,
    open_keypoint_store,
    prepare_synthetic,
    train_loader,
)
from ..data.substitution import FrameSubstitutions
from ..data.synthetic import dataset_read_lock
from ..fileio import exclusive_dir_lock, remove_stale_temporaries
from ..losses import StarLoss
from ..models import STAR, CompiledNetwork, build_network
from ..output_paths import check_output_dir
from ..progress import on_terminal
from . import distributed as dist_utils
from .checkpoint import LAST
from .checkpointer import Checkpointer
from .diverged import DivergenceGuard, TrainingDiverged
from .hooks import CheckpointHook, EvalHook
from .log_hooks import ConfigFileHook, ConsoleLogHook, ProgressBarHook, RunLogHook, TrainRecordHook, run_header
from .logs import RunLog
from .loop import HookBase, TrainerBase
from .runtime import DeterminismSettings, mixed_precision, resolve_device, seed_everything, use_device
from .schedule import build_optimizer, build_scheduler
from .state import EpochSampler, TrainingParts, TrainingState

if TYPE_CHECKING:  # evaluation pulls in the metrics stack: imported when it runs
    from .evaluator import EvalResult

__all__ = ["BuiltModel", "Trainer", "TrainingDiverged", "train"]


def train(cfg: RunConfig) -> dict[str, Any]:
    """Train (or resume) the run described by ``cfg``; returns the final metrics summary.

    Summary: ``epoch``, ``mAP`` (mean over the evaluation modes), ``modes`` (per mode
    ``mAP``, ``mINP``, ``R1``/``R5``/``R10``/``R20``, ``num_valid``; fractions in [0, 1]),
    ``best_mAP``, ``best_epoch``, ``output_dir``. See the module docstring.
    """
    return Trainer(cfg).run()


@dataclass(frozen=True)
class BuiltModel:
    """What ``Trainer.build_model`` returns: the model and the names of its parameters that were
    really loaded from a pretrained file (they train at ``optim.pretrained_lr_mult`` x lr)."""

    model: STAR
    pretrained_names: frozenset[str]


class Trainer(TrainerBase):
    """One training run. ``run()`` does everything (see the module docstring) and returns the
    final metrics summary; afterwards ``state`` (counters, best result), ``parts`` (the
    unwrapped model, optimiser, scheduler, ...), ``pretrained_names``, ``data`` etc. remain
    available for inspection.

    Each ``build_*`` method makes one thing from its arguments and the config, so a subclass
    overrides any one of them alone.
    """

    dist: dist_utils.DistInfo
    device: torch.device
    data: VideoReidData
    keypoints: KeypointStore | None
    num_classes: int
    loader: DataLoader
    sampler: EpochSampler
    iters_per_epoch: int
    parts: TrainingParts
    pretrained_names: frozenset[str]
    criterion: nn.Module
    params: list[nn.Parameter]
    ddp_model: nn.Module

    def __init__(self, cfg: RunConfig):
        if not isinstance(cfg, RunConfig):
            raise TypeError(f"train needs a star.config.RunConfig, got {type(cfg).__name__}")
        check_ranges(cfg)  # a RunConfig built in Python has not been through load_config
        super().__init__(TrainingState(max_epochs=cfg.optim.epochs))
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self._lock: Path | None = None

    @property
    def model(self) -> nn.Module:
        """The unwrapped model being trained (after ``build``)."""
        return self.parts.model

    # -- top level -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        log_to_stdout()  # progress and results as plain lines, unless the caller routed the star logger
        cfg = self.cfg
        device = resolve_device(cfg.train.device)
        with DeterminismSettings(cfg.deterministic), contextlib.ExitStack() as self._exit:
            self.dist, owned = dist_utils.init_distributed(device.type)
            self._exit.callback(dist_utils.destroy, self.dist, owned)
            self.device = use_device(device, self.dist.local_rank if self.dist.enabled else None)
            return self._run()

    def _run(self) -> dict[str, Any]:
        check_output_dir(self.out, "output_dir")
        self._lock_output()  # at once when output_dir exists; else once it is created below
        self.load_data()
        self.build()
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock_output()
        dist_utils.barrier(self.dist)
        self.register_hooks(self.build_hooks())
        self.train()
        summary = dist_utils.broadcast_object(self.dist, self.state.last_summary)
        return dict(summary) if summary is not None else {}

    def _lock_output(self) -> None:
        if self.dist.is_main and self.out.is_dir() and self._lock is None:
            self._lock = self._exit.enter_context(exclusive_dir_lock(self.out, "star train"))
            remove_stale_temporaries(self.out)  # safe: nobody else writes here while we hold the lock

    # -- data and model --------------------------------------------------------------------

    def load_data(self) -> None:
        cfg, is_main = self.cfg, self.dist.is_main
        if cfg.data.dataset == "synthetic":
            if is_main:
                prepare_synthetic(cfg.data.root, cfg.data.synthetic)
            dist_utils.barrier(self.dist)
        # until the run ends: `star synth --force` cannot replace the dataset under it
        self._exit.enter_context(dataset_read_lock(cfg.data.root, "star train"))
        self.data = load_dataset(cfg.data.dataset, cfg.data.root, verbose=is_main)
        # load_dataset raises EmptySplitError (naming the split and why) for an empty split
        self.keypoints = open_keypoint_store(self.data, cfg.data.keypoints)
        self.num_classes = self.data.num_train_pids
        self.loader = self.build_train_loader()
        self.sampler = cast(EpochSampler, self.loader.batch_sampler)
        self.iters_per_epoch = len(self.loader)

    def build_train_loader(self) -> DataLoader:
        cfg = self.cfg
        loader = train_loader(
            self.data.train,
            self.keypoints,
            num_frames=cfg.model.seq_len,
            num_ids=cfg.data.num_ids,
            num_per_modality=cfg.data.num_per_modality,
            height=cfg.data.height,
            width=cfg.data.width,
            num_workers=cfg.data.num_workers,
            seed=cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            num_batches=cfg.data.batches_per_epoch,
        )
        if cfg.deterministic and loader.num_workers > 0 and loader.persistent_workers:
            # Persistent workers carry their RNG state from epoch to epoch, which a resumed run
            # cannot recreate; fresh workers are seeded from the (checkpointed) loader generator.
            loader = DataLoader(
                loader.dataset,
                batch_sampler=loader.batch_sampler,
                num_workers=loader.num_workers,
                pin_memory=loader.pin_memory,
                generator=loader.generator,
                persistent_workers=False,
            )
        return loader

    def build(self) -> None:
        """Model, optimiser and schedule, loss, in this order (it fixes the random initialisation)."""
        seed_everything(self.cfg.seed)  # identical initial weights on every rank
        built = self.build_model()
        model = built.model.to(self.device)
        self.pretrained_names = built.pretrained_names
        optimizer = self.build_optimizer(model, built.pretrained_names)
        amp = self.cfg.train.amp and self.device.type == "cuda"
        self.parts = TrainingParts(
            model=model,
            optimizer=optimizer,
            scheduler=self.build_scheduler(optimizer),
            scaler=torch.amp.GradScaler("cuda", enabled=amp),
            sampler=self.sampler,
            loader_generator=self.loader.generator,
            amp=amp,
        )
        self.criterion = self.build_loss()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.ddp_model = model
        if self.dist.enabled:
            shape = (self.cfg.model.seq_len, self.cfg.data.height, self.cfg.data.width)
            self.ddp_model = dist_utils.wrap_model(
                model, self.criterion, self.dist, self.device, shape, self.num_classes, self.autocast
            )
        self.eval_model: nn.Module = self.model  # evaluation: rank 0 alone, never through DDP
        if self.cfg.train.compile:
            backend = self.cfg.train.compile_backend
            self.eval_model = CompiledNetwork(model, backend=backend)  # model: self.model, typed STAR here
            self.ddp_model = (
                CompiledNetwork(model, run=self.ddp_model, backend=backend) if self.dist.enabled else self.eval_model
            )

    def build_model(self) -> BuiltModel:
        """STAR for ``num_classes``, its backbone initialised from ``model.backbone.pretrained``."""
        return BuiltModel(*build_network(self.cfg.model, self.num_classes))

    def build_optimizer(self, model: nn.Module, pretrained_names: frozenset[str]) -> torch.optim.Optimizer:
        """The optimiser of ``model``; ``pretrained_names`` train at ``optim.pretrained_lr_mult`` x lr."""
        return build_optimizer(model, self.cfg.optim, set(pretrained_names))

    def build_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        """The per-iteration lr schedule of ``optimizer``."""
        return build_scheduler(optimizer, self.cfg.optim, self.iters_per_epoch)

    def build_loss(self) -> nn.Module:
        return StarLoss(self.cfg.loss)

    def build_checkpointer(self) -> Checkpointer:
        return Checkpointer(
            self.state, self.parts, self.cfg, self.out, self.dist, self.num_classes, self.training_data_identity()
        )

    def training_data_identity(self) -> dict[str, str]:
        """What a checkpoint records of the training data (a resume must train on the same data)."""
        return {"name": self.data.name, "root": self.data.root, "fingerprint": self.data.fingerprint()}

    def build_hooks(self) -> list[HookBase]:
        """The hooks in the order they run at every point of the loop (``star.engine.hooks``,
        ``star.engine.log_hooks``): the guard's end-of-epoch check comes before the checkpoint
        hook's write; on rank 0 the logging hooks follow: the record hook measures before the
        hooks that write its records, the run-log hook opens the run's log (before the
        evaluation hook's first record), the bar closes before the epoch's line is printed,
        and the epoch is logged before it is evaluated; the evaluation hook evaluates what
        the checkpoint hook marked pending."""
        cfg, state = self.cfg, self.state
        checkpointer, run_log = self.build_checkpointer(), RunLog(self.out, cfg.train.tensorboard)
        hooks: list[HookBase] = [
            DivergenceGuard(state, cfg.train.log_period, self.parts.amp, self.dist, self.device, self.out / LAST),
            CheckpointHook(state, checkpointer, cfg.train.checkpoint_period, cfg.train.eval_period),
        ]
        if self.dist.is_main:  # rank 0 logs alone
            bar = cfg.train.progress and on_terminal()  # else one console line per logging period
            header = run_header(
                cfg,
                self.parts,
                state,
                device=self.device,
                world_size=self.dist.world_size,
                num_classes=self.num_classes,
                iters_per_epoch=self.iters_per_epoch,
                out=self.out,
            )
            hooks += [
                TrainRecordHook(state, self.parts, self.device, self.iters_per_epoch, cfg.train.log_period),
                ConfigFileHook(cfg, self.out),
                RunLogHook(state, run_log),
                *([ProgressBarHook(state, self.iters_per_epoch)] if bar else []),
                ConsoleLogHook(state, header, step_lines=not bar),
            ]
        hooks.append(EvalHook(state, self.parts.model, self.evaluate, checkpointer, run_log, self.dist, self.out))
        return hooks

    def autocast(self) -> contextlib.AbstractContextManager:
        return mixed_precision(self.device, self.parts.amp)

    # -- the loop ----------------------------------------------------------------------------

    def epoch_batches(self) -> DataLoader:
        return self.loader

    def begin_epoch(self) -> None:
        epoch = self.state.epoch
        self.sampler.set_epoch(epoch)
        self.parts.model.train()
        frames = self.iters_per_epoch * self.sampler.batch_size * self.cfg.model.seq_len
        self.state.substitutions = FrameSubstitutions(
            f"epoch {epoch + 1}", self.cfg.data.max_substituted_fraction, frames
        )

    def end_epoch(self) -> None:
        assert self.state.substitutions is not None  # set by begin_epoch
        self.state.substitutions.check()
        dist_utils.barrier(self.dist)

    def run_step(self, batch: dict[str, torch.Tensor]) -> None:
        """Forward, backward, (clipping,) optimiser and schedule step, without a host synchronisation.

        Leaves ``state.step_scalars`` (the loss terms and, when clipping, ``grad_norm``: 0-d
        device tensors, for ``DivergenceGuard``'s meters) and ``state.step_lr`` for the hooks."""
        state, parts = self.state, self.parts
        assert state.substitutions is not None  # set by begin_epoch
        state.substitutions.add(batch)  # stops a run on undecodable data early
        frames = normalize_frames(batch["frames"].to(self.device, non_blocking=True))
        keypoints = batch["keypoints"].to(self.device, non_blocking=True)
        modality = batch["modality"].to(self.device, non_blocking=True)
        pids = batch["pid"].to(self.device, non_blocking=True)
        with self.autocast():
            outputs = self.ddp_model(frames, keypoints, modality)
            loss, terms = self.criterion(outputs, pids)
        lr = parts.optimizer.param_groups[0]["lr"]
        parts.optimizer.zero_grad(set_to_none=True)
        parts.scaler.scale(loss).backward()
        scalars = dict(terms)  # terms["total"] is the loss
        if self.cfg.optim.grad_clip is not None:
            parts.scaler.unscale_(parts.optimizer)
            scalars["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.scheduler.step()
        state.step_scalars, state.step_lr = scalars, lr

    def evaluate(self, final: bool) -> EvalResult:
        """The evaluation of the current model (``EvalHook`` calls it; rank 0). Rank lists
        (``eval.visrank_queries``) after the last epoch only."""
        from .evaluator import evaluate  # imported lazily: evaluation pulls in the metrics stack

        return evaluate(
            self.eval_model,
            self.data,
            self.keypoints,
            self.cfg,
            device=self.device,
            output_dir=self.out,
            progress=self.cfg.train.progress,
            visrank=final,
        )
