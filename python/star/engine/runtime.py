"""Where and how a run computes: device choice, seeding, determinism flags, mixed precision."""

from __future__ import annotations

import contextlib
import os
import random
import warnings

import numpy as np
import torch

from ..errors import StarError

__all__ = ["DeterminismSettings", "DeviceError", "mixed_precision", "resolve_device", "seed_everything", "use_device"]


class DeviceError(StarError, RuntimeError, ValueError):
    """``train.device`` names no device, or a CUDA device on a machine without CUDA."""


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` -> ``cuda`` when available else ``cpu``; other strings as ``torch.device`` (checked)."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"train.device: {spec!r} is not a device (use auto, cpu, cuda or cuda:N): {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"train.device is {spec!r} but CUDA is not available; use train.device=cpu or auto")
    return device


def use_device(device: torch.device, local_rank: int | None = None) -> torch.device:
    """The device this process computes on, made current: under DDP (``local_rank``) its
    own GPU; a bare ``cuda`` is the current GPU."""
    if device.type == "cuda" and local_rank is not None:
        device = torch.device("cuda", local_rank)
    elif device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's (CPU and all CUDA devices) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def mixed_precision(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA when ``amp``; a no-op context otherwise (CPU runs in float32)."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


class DeterminismSettings:
    """Applies the run's determinism flags and restores the process-wide previous ones on exit."""

    def __init__(self, deterministic: bool):
        self.deterministic = deterministic

    def __enter__(self) -> DeterminismSettings:
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
