"""Process-group helpers for training under ``torchrun`` (DDP).

``torchrun --nproc_per_node N ...`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
with ``WORLD_SIZE > 1`` the trainer calls :func:`init_distributed`, which joins the
process group (NCCL on CUDA, Gloo on CPU). Every helper here also works in a single
process, where it is a no-op. :func:`wrap_model` puts the model into
``DistributedDataParallel`` (with ``find_unused_parameters`` only where needed).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

import star_ext

from ..errors import StarError
from .checkpoint import preserved_rng

logger = logging.getLogger(__name__)

# Evaluation runs on rank 0 only while the other ranks wait in a barrier, so the
# collective timeout must cover a full evaluation.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class DistributedSetupError(StarError, RuntimeError):
    """A multi-process run that cannot start or go on: torchrun's variables missing or not
    numbers, or ranks that see different files (an output folder not on a shared filesystem)."""


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise DistributedSetupError(
            f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}: launch distributed training with "
            "`torchrun --nproc_per_node N ...`"
        ) from None


def init_distributed(device_type: str) -> tuple[DistInfo, bool]:
    """Join the process group when ``WORLD_SIZE > 1`` (torchrun), else a single-process ``DistInfo``.

    ``device_type`` ``"cuda"`` selects NCCL, anything else Gloo. Returns the info and
    whether this call created the group: an already initialised group (e.g. created by
    the caller) is reused and left for the caller to destroy.
    """
    world_size = env_world_size()
    if world_size <= 1:
        return DistInfo(), False
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing and not dist.is_initialized():
        raise DistributedSetupError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} not set: launch distributed training with "
            "`torchrun --nproc_per_node N ...`"
        )
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    created = not dist.is_initialized()
    if created:
        backend = "nccl" if device_type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
            kwargs["device_id"] = torch.device("cuda", local_rank)
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=PROCESS_GROUP_TIMEOUT, **kwargs)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank), created


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier(info: DistInfo) -> None:
    if info.enabled and is_dist():
        dist.barrier()


def all_gather_object(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` in a single process)."""
    if not (info.enabled and is_dist()):
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(info: DistInfo, obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not (info.enabled and is_dist()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def any_true(info: DistInfo, flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if not (info.enabled and is_dist()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def destroy(info: DistInfo, owned: bool) -> None:
    """Leave the process group if this module created it."""
    if owned and info.enabled and is_dist():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- the model


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
            # is_dataclass also admits dataclass types; a forward returns an instance
            out = dataclasses.replace(cast(Any, out), **{name: None for name in self.drop})
        return out


def probe_unused(
    model: nn.Module,
    criterion: nn.Module,
    device: torch.device,
    shape: tuple[int, int, int],
    num_classes: int,
    autocast: Callable[[], Any],
) -> tuple[list[str], list[str]]:
    """The model outputs the loss does not use and the trainable parameters that get no
    gradient (parts that are on but whose loss weight is 0), found with one forward/backward
    of a copy of the model on a small random batch of ``shape`` (T, H, W). RNG states and
    the real model are untouched.

    DDP needs both: with ``find_unused_parameters`` it marks as unused only the parameters it
    cannot reach from the forward outputs, so outputs no loss term reads must be dropped.
    """
    probe = copy.deepcopy(model).train()
    t, h, w = shape
    with preserved_rng():
        gen = torch.Generator().manual_seed(0)
        frames = torch.randn(4, t, 3, h, w, generator=gen).to(device)
        kp = torch.rand(4, t, star_ext.NUM_COCO_KEYPOINTS, 3, generator=gen)
        kp[..., 2] = 1.0
        modality = torch.tensor([0, 1, 0, 1], device=device)
        pids = torch.tensor([0, 0, 1, 1], device=device) % num_classes
        with autocast():
            outputs = probe(frames, kp.to(device), modality)
            tensors = {
                f.name: getattr(outputs, f.name)
                for f in dataclasses.fields(outputs)
                if torch.is_tensor(getattr(outputs, f.name)) and getattr(outputs, f.name).requires_grad
            }
            for tensor in tensors.values():
                tensor.retain_grad()
            loss, _ = criterion(outputs, pids)
        loss.backward()
    unused_fields = sorted(name for name, tensor in tensors.items() if tensor.grad is None)
    unused_params = [n for n, p in probe.named_parameters() if p.requires_grad and p.grad is None]
    return unused_fields, unused_params


def wrap_model(
    model: nn.Module,
    criterion: nn.Module,
    info: DistInfo,
    device: torch.device,
    shape: tuple[int, int, int],
    num_classes: int,
    autocast: Callable[[], Any],
) -> nn.Module:
    """``model`` in ``DistributedDataParallel``, unused outputs dropped, ``find_unused_parameters``
    only when some parameter gets no gradient on some rank (see :func:`probe_unused`)."""
    unused_fields, unused_params = probe_unused(model, criterion, device, shape, num_classes, autocast)
    find_unused = any_true(info, bool(unused_params), device)
    if info.is_main and (unused_fields or find_unused):
        logger.info(
            "DDP: outputs without a loss term: %s; %d parameter tensors get no gradient (%s%s); "
            "find_unused_parameters=%s",
            ", ".join(unused_fields) or "none",
            len(unused_params),
            ", ".join(unused_params[:3]),
            " ..." if len(unused_params) > 3 else "",
            find_unused,
        )
    return nn.parallel.DistributedDataParallel(
        _DropOutputs(model, unused_fields),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused,
    )
