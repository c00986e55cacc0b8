"""The training loop (SPEC §6): ``train(cfg)`` / ``Trainer(cfg).run()``.

What a run does, in order:

1. Reads the dataset and its keypoint store (generating the synthetic dataset first when
   ``data.dataset`` is ``synthetic`` and ``data.root`` holds none yet). Bad paths and
   files fail here, before a model is built or anything is written to ``output_dir``.
2. Builds the model for the number of training identities, the SGD optimiser (pretrained
   backbone tensors at ``optim.pretrained_lr_mult`` x lr, only when the backbone really was
   initialised from a file), the per-iteration warm-up/step schedule (``schedule.py``) and,
   on CUDA with ``train.amp``, float16 autocast with a ``GradScaler``.
3. Resumes from ``<output_dir>/last.pt`` when ``train.resume`` and the file exists (the
   config must match the checkpoint's in everything that shapes the run, see
   ``checkpoint.RESUMABLE_CHANGES``), else starts from epoch 0.
4. Trains epoch by epoch. ``last.pt`` is written atomically every ``checkpoint_period``
   epochs, at every evaluation and after the last epoch; a kill at any moment loses at
   most the current epoch. It holds model, optimiser, scheduler, scaler, epoch, step, best
   metric, every rank's RNG states (Python, NumPy, torch CPU/CUDA) and DataLoader generator
   state, the sampler state and the resolved config.
5. Evaluates every ``eval_period`` epochs (0 = only after the last) and after the last
   epoch with ``star.engine.evaluator.evaluate`` (table printed, ``metrics.json`` written),
   keeping ``best.pt`` (model + metrics) for the best mean mAP over the evaluation modes.
   Evaluation never changes the training's random streams, so a run's result does not
   depend on where it was interrupted.
6. Logs to ``<output_dir>/log.jsonl`` (a ``train`` record every ``log_period`` iterations,
   an ``epoch`` record per epoch, an ``eval`` record per evaluation), TensorBoard
   (``<output_dir>/tb``) and a tqdm bar with loss, lr, run ETA and memory.

A non-finite loss (or, without AMP, a non-finite gradient norm when clipping) raises
:class:`TrainingDiverged` before the optimiser step; ``last.pt`` stays the last good one.

``deterministic: true`` enables ``torch.use_deterministic_algorithms`` (with
``CUBLAS_WORKSPACE_CONFIG`` and deterministic cuDNN) and loads training batches with
fresh DataLoader workers every epoch, so a resumed run reproduces an uninterrupted one
exactly. Otherwise workers persist across epochs (faster) and a resumed run is a valid
continuation but not bit-identical.

DDP: launch with ``torchrun --nproc_per_node N``; with ``WORLD_SIZE > 1`` each process
joins the group (NCCL on CUDA, Gloo on CPU), trains on its share of every epoch's batches
(``CrossModalIdentitySampler`` rank/world_size; the effective batch is N x the configured
one, the lr is not rescaled), and only rank 0 logs, checkpoints and evaluates. Logged loss
values are rank 0's.

Epochs and iterations are 1-based in everything printed or logged; ``step`` counts
optimiser steps taken.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import os
import random
import time
import warnings
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import __version__
from ..config import RunConfig, save_run_info
from ..data import (
    KeypointStore,
    SynthConfig,
    VideoReidData,
    generate_synthetic,
    load_dataset,
    normalize_frames,
    open_keypoint_store,
    train_loader,
)
from ..data.synthetic import MARKER as SYNTHETIC_MARKER
from ..errors import StarError
from ..losses import StarLoss
from ..models import STAR
from ..models.pretrained import init_pretrained
from . import distributed as dist_utils
from .checkpoint import (
    BEST,
    CHECKPOINT_VERSION,
    LAST,
    CheckpointError,
    capture_rng_state,
    config_differences,
    load_checkpoint,
    preserved_rng,
    restore_rng_state,
    save_checkpoint,
)
from .logs import LOG_FILE, TB_DIR, JsonlLog, format_duration, memory_mb, open_tensorboard
from .schedule import build_optimizer, build_scheduler

__all__ = ["Trainer", "TrainingDiverged", "train", "resolve_device", "seed_everything"]


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


def train(cfg: RunConfig) -> dict[str, Any]:
    """Train (or resume) the run described by ``cfg``; returns the final metrics summary.

    Summary: ``epoch``, ``mAP`` (mean over the evaluation modes), ``modes`` (per mode
    ``mAP``, ``mINP``, ``R1``/``R5``/``R10``/``R20``, ``num_valid``; fractions in [0, 1]),
    ``best_mAP``, ``best_epoch``, ``output_dir``. See the module docstring.
    """
    return Trainer(cfg).run()


# ----------------------------------------------------------------------------- helpers


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` -> ``cuda`` when available else ``cpu``; other strings as ``torch.device`` (checked)."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"train.device: {spec!r} is not a device (use auto, cpu, cuda or cuda:N): {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {spec!r} but CUDA is not available; use train.device=cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's (CPU and all CUDA devices) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _DeterminismSettings:
    """Applies the run's determinism flags and restores the process-wide previous ones on exit."""

    def __init__(self, deterministic: bool):
        self.deterministic = deterministic

    def __enter__(self) -> "_DeterminismSettings":
        self._saved = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        )
        if self.deterministic:
            # cuBLAS reads this when its handle is created; it must be set before the first matmul on CUDA.
            if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
                if torch.cuda.is_available() and torch.cuda.is_initialized():
                    warnings.warn(
                        "deterministic: CUDA was initialised before CUBLAS_WORKSPACE_CONFIG was set; "
                        "set CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment for deterministic cuBLAS",
                        stacklevel=3,
                    )
                os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = True
        return self

    def __exit__(self, *exc: object) -> None:
        enabled, warn_only, cudnn_det, cudnn_bench, cublas = self._saved
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.deterministic = cudnn_det
        torch.backends.cudnn.benchmark = cudnn_bench
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _synth_config(cfg: RunConfig) -> SynthConfig:
    s = cfg.data.synthetic
    return SynthConfig(
        ids=s.ids,
        tracklets=s.tracklets,
        cameras=s.cameras,
        min_frames=s.min_frames,
        max_frames=s.max_frames,
        height=s.height,
        width=s.width,
        seed=s.seed,
    )


def _improves(value: float, best: Optional[float]) -> bool:
    """Whether mean mAP ``value`` beats ``best`` (a NaN never wins, and is always beaten)."""
    if best is None or math.isnan(best):
        return best is None or not math.isnan(value)
    return not math.isnan(value) and value > best


def _check_output_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output_dir {path} exists and is not a directory")
    parent = next((p for p in [path, *path.parents] if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"output_dir {path}: {parent} is not writable")


class _DropOutputs(nn.Module):
    """Wraps the model for DDP: training outputs that no loss term reads are set to None, so
    that DDP (with ``find_unused_parameters``) does not wait for gradients of their parameters."""

    def __init__(self, module: nn.Module, drop: list[str]):
        super().__init__()
        self.module = module
        self.drop = list(drop)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.module(*args, **kwargs)
        if self.drop and dataclasses.is_dataclass(out):
            out = dataclasses.replace(out, **{name: None for name in self.drop})
        return out


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """One training run. ``run()`` does everything (see the module docstring) and returns the
    final metrics summary; afterwards ``model`` (unwrapped), ``optimizer``, ``scheduler``,
    ``data`` etc. remain available for inspection.
    """

    def __init__(self, cfg: RunConfig):
        if not isinstance(cfg, RunConfig):
            raise TypeError(f"train needs a star.config.RunConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.model: Optional[STAR] = None
        self.step = 0
        self.start_epoch = 0
        self.best_map: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.last_summary: Optional[dict[str, Any]] = None
        self.jsonl: Optional[JsonlLog] = None
        self.tb = None

    # -- top level -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        device = resolve_device(cfg.train.device)
        with _DeterminismSettings(cfg.deterministic):
            self.dist, owned = dist_utils.init_distributed(device.type)
            try:
                if device.type == "cuda" and self.dist.enabled:
                    device = torch.device("cuda", self.dist.local_rank)
                elif device.type == "cuda" and device.index is None:
                    device = torch.device("cuda", torch.cuda.current_device())
                if device.type == "cuda":
                    torch.cuda.set_device(device)
                self.device = device
                return self._run()
            finally:
                self._close_logs()
                dist_utils.destroy(self.dist, owned)

    def _run(self) -> dict[str, Any]:
        cfg, is_main = self.cfg, self.dist.is_main
        _check_output_dir(self.out)
        self._load_data()
        self._build()
        if is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        dist_utils.barrier(self.dist)
        ckpt = self._resume_or_start()
        if is_main:
            self._save_config()
            self._open_logs()
            self._print_header()
        self._wrap_ddp()

        epochs = cfg.optim.epochs
        if ckpt is not None and ckpt.get("eval_pending"):
            # killed during the evaluation that followed this checkpoint: do it now
            self._evaluate_and_checkpoint(self.start_epoch, final=self.start_epoch == epochs)
        elif self.start_epoch >= epochs and is_main:
            print(
                f"training already finished ({self.start_epoch}/{epochs} epochs); "
                f"final metrics from {self.out / LAST}"
            )
        for epoch in range(self.start_epoch, epochs):
            self._train_epoch(epoch)
            done = epoch + 1
            want_eval = done == epochs or (cfg.train.eval_period > 0 and done % cfg.train.eval_period == 0)
            if want_eval:
                self._evaluate_and_checkpoint(done, final=done == epochs)
            elif done % cfg.train.checkpoint_period == 0:
                self._write_last(self._checkpoint_state(done, eval_pending=False))
            dist_utils.barrier(self.dist)
        summary = dist_utils.broadcast_object(self.dist, self.last_summary)
        return dict(summary) if summary is not None else {}

    # -- data and model --------------------------------------------------------------------

    def _prepare_synthetic(self) -> None:
        root = Path(self.cfg.data.root)
        marker = root / SYNTHETIC_MARKER
        if marker.is_file():
            try:
                existing = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                existing = {}
            wanted = dataclasses.asdict(_synth_config(self.cfg))
            differ = sorted(k for k in wanted if k in existing and existing[k] != wanted[k] and k != "test_ids")
            if differ and self.dist.is_main:
                warnings.warn(
                    f"data.synthetic differs from the synthetic dataset already at {root} "
                    f"({', '.join(f'{k}: {existing[k]} there, {wanted[k]} configured' for k in differ)}); "
                    "using the existing dataset (remove it or choose another data.root to regenerate)",
                    stacklevel=3,
                )
        elif not root.exists() or (root.is_dir() and not any(root.iterdir())):
            if self.dist.is_main:
                print(f"generating the synthetic dataset in {root} ...", flush=True)
                generate_synthetic(root, _synth_config(self.cfg))
        dist_utils.barrier(self.dist)

    def _load_data(self) -> None:
        cfg, is_main = self.cfg, self.dist.is_main
        if cfg.data.dataset == "synthetic":
            self._prepare_synthetic()
        self.data: VideoReidData = load_dataset(cfg.data.dataset, cfg.data.root, verbose=is_main)
        self.keypoints: KeypointStore = open_keypoint_store(self.data, cfg.data.keypoints)
        for split in ("train", "query", "gallery"):
            if not self.data.split(split):
                raise ValueError(
                    f"{cfg.data.dataset} at {cfg.data.root}: the {split} split is empty "
                    "(tracklets shorter than the minimum length are dropped)"
                )
        self.num_classes = self.data.num_train_pids
        self.model_cfg = cfg.model_config(self.num_classes)
        loader = train_loader(
            self.data.train,
            self.keypoints,
            num_frames=self.model_cfg.seq_len,
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
        self.loader = loader
        self.sampler = loader.batch_sampler
        self.iters_per_epoch = len(loader)

    def _build(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)  # identical initial weights on every rank
        model = STAR(self.model_cfg)
        report = init_pretrained(
            model.backbone, self.model_cfg.backbone.pretrained, self.model_cfg.backbone.require_pretrained
        )
        # Only tensors really loaded from a file count as pretrained (a missing file = random init).
        params = dict(model.named_parameters())
        self.pretrained_names = (
            {name for name in (f"backbone.{k}" for k in report.loaded) if name in params} if report else set()
        )
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.optim, self.pretrained_names)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.iters_per_epoch)
        self.amp = cfg.train.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.criterion = StarLoss(cfg.loss)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.resolved_config = _plain({**cfg.to_dict(), "model": dataclasses.asdict(self.model_cfg)})

    def _wrap_ddp(self) -> None:
        self.ddp_model: nn.Module = self.model
        if not self.dist.enabled:
            return
        unused_fields, unused_params = self._probe_unused()
        find_unused = dist_utils.any_true(self.dist, bool(unused_params), self.device)
        if self.dist.is_main and (unused_fields or find_unused):
            print(
                f"DDP: outputs without a loss term: {', '.join(unused_fields) or 'none'}; "
                f"{len(unused_params)} parameter tensors get no gradient "
                f"({', '.join(unused_params[:3])}{' ...' if len(unused_params) > 3 else ''}); "
                f"find_unused_parameters={find_unused}"
            )
        self.ddp_model = nn.parallel.DistributedDataParallel(
            _DropOutputs(self.model, unused_fields),
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=find_unused,
        )

    def _probe_unused(self) -> tuple[list[str], list[str]]:
        """The model outputs the configured loss does not use and the trainable parameters that get
        no gradient (parts that are on but whose loss weight is 0), found with one forward/backward
        of a copy of the model on a small random batch. RNG states and the real model are untouched.

        DDP needs both: with ``find_unused_parameters`` it marks as unused only the parameters it
        cannot reach from the forward outputs, so outputs no loss term reads must be dropped.
        """
        cfg = self.cfg
        probe = copy.deepcopy(self.model).train()
        t, h, w = self.model_cfg.seq_len, cfg.data.height, cfg.data.width
        with preserved_rng():
            gen = torch.Generator().manual_seed(0)
            frames = torch.randn(4, t, 3, h, w, generator=gen).to(self.device)
            kp = torch.rand(4, t, 17, 3, generator=gen)
            kp[..., 2] = 1.0
            modality = torch.tensor([0, 1, 0, 1], device=self.device)
            pids = torch.tensor([0, 0, 1, 1], device=self.device) % self.num_classes
            with self._autocast():
                outputs = probe(frames, kp.to(self.device), modality)
                tensors = {
                    f.name: getattr(outputs, f.name)
                    for f in dataclasses.fields(outputs)
                    if torch.is_tensor(getattr(outputs, f.name)) and getattr(outputs, f.name).requires_grad
                }
                for tensor in tensors.values():
                    tensor.retain_grad()
                loss, _ = self.criterion(outputs, pids)
            loss.backward()
        unused_fields = sorted(name for name, tensor in tensors.items() if tensor.grad is None)
        unused_params = [n for n, p in probe.named_parameters() if p.requires_grad and p.grad is None]
        del probe, outputs, tensors, loss
        return unused_fields, unused_params

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return nullcontext()

    # -- checkpoints -------------------------------------------------------------------------

    def _resume_or_start(self) -> Optional[dict[str, Any]]:
        cfg, last = self.cfg, self.out / LAST
        exists = last.is_file()
        resuming = cfg.train.resume and exists
        if self.dist.enabled:
            views = dist_utils.all_gather_object(self.dist, resuming)
            if len(set(views)) != 1:
                raise RuntimeError(f"ranks disagree on whether {last} exists (is output_dir on a shared filesystem?)")
        if not resuming:
            if exists and self.dist.is_main:
                warnings.warn(f"train.resume is false: starting over, {last} will be overwritten", stacklevel=3)
            seed_everything(self.cfg.seed + 1 + self.dist.rank)  # per-rank streams for augmentation
            return None
        ckpt = load_checkpoint(last)
        diffs = config_differences(ckpt.get("config", {}), self.resolved_config)
        if diffs:
            raise CheckpointError(
                f"{last} was written by a run with a different configuration:\n  "
                + "\n  ".join(diffs)
                + "\nUse another output_dir for the new configuration, restore the old settings to resume, "
                "or set train.resume=false to start over (overwriting the checkpoint)."
            )
        epochs = cfg.optim.epochs
        if ckpt["epoch"] > epochs:
            raise CheckpointError(
                f"{last} is at epoch {ckpt['epoch']}, beyond optim.epochs={epochs}; "
                "raise optim.epochs or use another output_dir"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.sampler.load_state_dict(ckpt["sampler"])
        self.start_epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        best = ckpt.get("best") or {}
        self.best_map, self.best_epoch = best.get("mAP"), best.get("epoch")
        self.last_summary = ckpt.get("last_metrics")
        rng, gens = ckpt.get("rng") or [], ckpt.get("loader_generator") or []
        if len(rng) == self.dist.world_size:
            restore_rng_state(rng[self.dist.rank])
            if gens and gens[self.dist.rank] is not None and self.loader.generator is not None:
                self.loader.generator.set_state(gens[self.dist.rank])
        else:
            warnings.warn(
                f"{last} was written by {len(rng)} process(es), this run has {self.dist.world_size}: "
                "random states not restored (the run continues, but not bit-identically)",
                stacklevel=3,
            )
            seed_everything(cfg.seed + 1 + self.dist.rank + 1000 * self.start_epoch)
        if self.dist.is_main:
            best_s = f"{self.best_map:.2%} (epoch {self.best_epoch})" if self.best_map is not None else "none yet"
            print(
                f"resumed from {last}: {self.start_epoch}/{epochs} epochs done, step {self.step}, "
                f"best mAP {best_s}",
                flush=True,
            )
        return ckpt

    def _checkpoint_state(self, epochs_done: int, eval_pending: bool) -> Optional[dict[str, Any]]:
        """The checkpoint dict on rank 0 (None elsewhere); a collective under DDP."""
        gen = self.loader.generator
        mine = {"rng": capture_rng_state(), "generator": gen.get_state() if gen is not None else None}
        everyone = dist_utils.all_gather_object(self.dist, mine)
        if not self.dist.is_main:
            return None
        return {
            "version": CHECKPOINT_VERSION,
            "package_version": __version__,
            "epoch": epochs_done,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": [e["rng"] for e in everyone],
            "loader_generator": [e["generator"] for e in everyone],
            "world_size": self.dist.world_size,
            "num_classes": self.num_classes,
            "config": self.resolved_config,
            "best": {"mAP": self.best_map, "epoch": self.best_epoch},
            "last_metrics": self.last_summary,
            "eval_pending": eval_pending,
            "time": time.time(),
        }

    def _write_last(self, state: Optional[dict[str, Any]]) -> None:
        if state is not None:
            save_checkpoint(state, self.out / LAST)

    # -- evaluation --------------------------------------------------------------------------

    def _evaluate_and_checkpoint(self, epochs_done: int, final: bool) -> None:
        """Checkpoint (marked 'evaluation pending'), evaluate on rank 0, update best.pt, then
        rewrite last.pt with the result. A kill during the evaluation repeats only the evaluation."""
        state = self._checkpoint_state(epochs_done, eval_pending=True)
        if self.dist.is_main:
            self._write_last(state)
            summary = self._evaluate(epochs_done, final)
            improved = _improves(summary["mAP"], self.best_map)
            if improved:
                self.best_map, self.best_epoch = summary["mAP"], epochs_done
            summary.update(best_mAP=self.best_map, best_epoch=self.best_epoch)
            self.last_summary = summary
            if improved:
                save_checkpoint(
                    {
                        "version": CHECKPOINT_VERSION,
                        "package_version": __version__,
                        "epoch": epochs_done,
                        "step": self.step,
                        "model": self.model.state_dict(),
                        "num_classes": self.num_classes,
                        "config": self.resolved_config,
                        "metrics": summary,
                    },
                    self.out / BEST,
                )
            self._log_eval(summary)
            state.update(
                eval_pending=False, best={"mAP": self.best_map, "epoch": self.best_epoch}, last_metrics=summary
            )
            self._write_last(state)
        dist_utils.barrier(self.dist)

    def _evaluate(self, epochs_done: int, final: bool) -> dict[str, Any]:
        from .evaluator import evaluate  # imported lazily: evaluation pulls in the metrics stack

        cfg = self.cfg
        print(f"evaluating after epoch {epochs_done}/{cfg.optim.epochs} ...", flush=True)
        start = time.perf_counter()
        kwargs: dict[str, Any] = {"device": self.device, "output_dir": self.out, "progress": cfg.train.progress}
        if final and "visrank" in inspect.signature(evaluate).parameters:
            kwargs["visrank"] = True  # rank-list pictures after the last evaluation (eval.visrank_queries)
        with preserved_rng():  # evaluation must not shift the training's random streams
            result = evaluate(self.model, self.data, self.keypoints, cfg, **kwargs)
        self.model.train()
        print(result.table, flush=True)
        modes = {
            mode: {k: v for k, v in metrics.items() if k != "cmc"}
            for mode, metrics in result.to_dict()["modes"].items()
        }
        maps = [float(m["mAP"]) for m in modes.values()]
        summary = {
            "epoch": epochs_done,
            "step": self.step,
            "mAP": float(np.mean(maps)) if maps else float("nan"),
            "modes": modes,
            "output_dir": str(self.out),
            "eval_time": time.perf_counter() - start,
        }
        return summary

    # -- the loop ----------------------------------------------------------------------------

    def _train_epoch(self, epoch: int) -> None:
        cfg, dist_info = self.cfg, self.dist
        is_main = dist_info.is_main
        epochs, ipe = cfg.optim.epochs, self.iters_per_epoch
        self.sampler.set_epoch(epoch)
        self.model.train()
        bar = None
        if cfg.train.progress and is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=ipe, desc=f"epoch {epoch + 1}/{epochs}", dynamic_ncols=True, leave=False)
        window: dict[str, float] = defaultdict(float)
        epoch_sums: dict[str, float] = defaultdict(float)
        n_window = 0
        data_time = 0.0
        epoch_start = t_window = t_prev = time.perf_counter()
        it = -1
        for it, batch in enumerate(self.loader):
            t_data = time.perf_counter()
            data_time += t_data - t_prev
            frames = normalize_frames(batch["frames"].to(self.device, non_blocking=True))
            keypoints = batch["keypoints"].to(self.device, non_blocking=True)
            modality = batch["modality"].to(self.device, non_blocking=True)
            pids = batch["pid"].to(self.device, non_blocking=True)
            with self._autocast():
                outputs = self.ddp_model(frames, keypoints, modality)
                loss, terms = self.criterion(outputs, pids)
            finite = all(math.isfinite(v) for v in terms.values())  # terms["total"] is the loss
            if dist_utils.any_true(dist_info, not finite, self.device):  # every rank stops together
                raise TrainingDiverged(epoch + 1, it + 1, self.step, {} if finite else terms, self._last_good())
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            grad_norm = None
            if cfg.optim.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip))
                if not self.amp and not math.isfinite(grad_norm):  # under AMP the scaler skips such steps
                    terms = {**terms, "grad_norm": grad_norm}
                    raise TrainingDiverged(epoch + 1, it + 1, self.step, terms, self._last_good(), "gradient norm")
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1

            for k, v in terms.items():
                window[k] += v
                epoch_sums[k] += v
            if grad_norm is not None:
                window["grad_norm"] += grad_norm
            n_window += 1
            now = time.perf_counter()
            if bar is not None:
                done_iters = (epoch - self.start_epoch) * ipe + it + 1
                left = (epochs - epoch) * ipe - it - 1
                eta = (now - self._run_start) / done_iters * left
                bar.set_postfix(
                    loss=f"{terms['total']:.3f}",
                    lr=f"{lr:.2e}",
                    eta=format_duration(eta),
                    mem=f"{memory_mb(self.device):.0f}M",
                    refresh=False,
                )
                bar.update(1)
            if is_main and self.step % cfg.train.log_period == 0:
                record = {
                    "type": "train",
                    "epoch": epoch + 1,
                    "iter": it + 1,
                    "iters": ipe,
                    "step": self.step,
                    "lr": lr,
                    **{
                        ("loss" if k == "total" else ("grad_norm" if k == "grad_norm" else f"loss_{k}")): v / n_window
                        for k, v in window.items()
                    },
                    "time_per_iter": (now - t_window) / n_window,
                    "data_time": data_time / n_window,
                    "memory_mb": memory_mb(self.device),
                }
                if len(self.optimizer.param_groups) > 1:
                    record["lr_pretrained"] = self.optimizer.param_groups[1]["lr"]
                if self.amp:
                    record["amp_scale"] = float(self.scaler.get_scale())
                self._log_train(record)
                window.clear()
                n_window, data_time, t_window = 0, 0.0, now
            t_prev = time.perf_counter()
        if bar is not None:
            bar.close()
        if is_main:
            n = it + 1
            record = {
                "type": "epoch",
                "epoch": epoch + 1,
                "step": self.step,
                "iters": n,
                "epoch_time": time.perf_counter() - epoch_start,
                **{("loss" if k == "total" else f"loss_{k}"): v / max(n, 1) for k, v in epoch_sums.items()},
                "lr": self.optimizer.param_groups[0]["lr"],
                "memory_mb": memory_mb(self.device),
            }
            self._log(record)
            if bar is not None or not cfg.train.progress:
                print(
                    f"epoch {epoch + 1}/{epochs}: loss {record.get('loss', float('nan')):.4f}, "
                    f"{record['epoch_time']:.1f}s, lr {record['lr']:.2e}, mem {record['memory_mb']:.0f}M",
                    flush=True,
                )

    def _last_good(self) -> Optional[Path]:
        last = self.out / LAST
        return last if last.is_file() else None

    # -- logs --------------------------------------------------------------------------------

    def _save_config(self) -> None:
        save_run_info(self.cfg, self.out)

    def _open_logs(self) -> None:
        self.jsonl = JsonlLog(self.out / LOG_FILE)
        if self.cfg.train.tensorboard:
            self.tb = open_tensorboard(self.out / TB_DIR, purge_step=self.step if self.step else None)
        self._run_start = time.perf_counter()

    def _close_logs(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
            self.jsonl = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def _print_header(self) -> None:
        n_params = sum(p.numel() for p in self.model.parameters())
        groups = ", ".join(
            f"{g['name']} {len(g['params'])} tensors @ lr {g['lr']:.2e}" for g in self.optimizer.param_groups
        )
        print(
            f"training {self.cfg.data.dataset} ({self.num_classes} ids) on {self.device}"
            f"{f' x {self.dist.world_size} processes' if self.dist.enabled else ''}: "
            f"{n_params / 1e6:.1f}M parameters, {self.iters_per_epoch} iterations/epoch, "
            f"{self.cfg.optim.epochs} epochs, AMP {'on' if self.amp else 'off'}, "
            f"deterministic {'on' if self.cfg.deterministic else 'off'}; param groups: {groups}; "
            f"output {self.out}",
            flush=True,
        )

    def _log(self, record: dict[str, Any]) -> None:
        record = {**record, "time": time.time()}
        if self.jsonl is not None:
            self.jsonl.write(record)

    def _log_train(self, record: dict[str, Any]) -> None:
        self._log(record)
        if not self.cfg.train.progress:
            losses = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k.startswith("loss"))
            print(
                f"[epoch {record['epoch']} iter {record['iter']}/{record['iters']}] {losses} lr={record['lr']:.2e} "
                f"{record['time_per_iter']:.3f}s/it mem={record['memory_mb']:.0f}M",
                flush=True,
            )
        if self.tb is not None:
            for k, v in record.items():
                if k not in ("type", "epoch", "iter", "iters", "step") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, record["step"])

    def _log_eval(self, summary: dict[str, Any]) -> None:
        self._log({"type": "eval", **{k: v for k, v in summary.items() if k != "output_dir"}})
        if self.tb is not None:
            self.tb.add_scalar("eval/mAP", summary["mAP"], summary["step"])
            for mode, metrics in summary["modes"].items():
                for k, v in metrics.items():
                    if isinstance(v, (int, float)) and k != "num_valid":
                        self.tb.add_scalar(f"eval/{mode}/{k}", v, summary["step"])
            self.tb.flush()
