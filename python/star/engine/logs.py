"""Training logs: device-side meters, ``log.jsonl`` records, TensorBoard scalars, memory.

``log.jsonl`` is appended to by every run into the same ``output_dir``. A resumed run
first writes a ``{"type": "resumed", "step": S, "epoch": E, "eval_pending": P}`` record:
the records before it of steps after S (``train``) and epochs after E (``epoch``, ``eval``;
and ``eval`` of epoch E when P, the evaluation is then redone) belong to the part of the
killed run that is trained again, and are superseded. :func:`drop_superseded` applies the
rule, so a reader of the log never counts a step twice.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

LOG_FILE = "log.jsonl"
TB_DIR = "tb"


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return v


class JsonlLog:
    """Appends one JSON object per line to ``path`` and flushes it (a killed run keeps what it logged)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(_json_value(record)) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` (a truncated last line, from a killed run, is skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def drop_superseded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` (of :func:`read_jsonl`) without the ``resumed`` markers and the records they
    supersede (see the module docstring): each step, epoch and evaluation once."""
    out: list[dict[str, Any]] = []
    for record in records:
        if record.get("type") == "resumed":
            step, epoch, pending = record["step"], record["epoch"], record.get("eval_pending", False)
            out = [r for r in out if not _redone(r, step, epoch, pending)]
        else:
            out.append(record)
    return out


def _redone(record: dict[str, Any], step: int, epoch: int, eval_pending: bool) -> bool:
    kind = record.get("type")
    if kind == "train":
        return record["step"] > step
    if kind == "epoch":
        return record["epoch"] > epoch
    if kind == "eval":
        return record["epoch"] > epoch or (eval_pending and record["epoch"] == epoch)
    return False


def open_tensorboard(log_dir: str | Path, purge_step: int | None = None):
    """A ``SummaryWriter`` for ``log_dir``, or None with one warning when tensorboard is not installed.

    ``purge_step``: events at or after this step, left by an interrupted run, are discarded.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # tensorboard itself is an optional dependency
        warnings.warn(f"TensorBoard logging skipped: tensorboard is not importable ({exc})", stacklevel=2)
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def process_rss_bytes() -> int:
    """Resident set size of this process (current on Linux, peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated memory of ``device``; CPU: process RSS. In MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return process_rss_bytes() / 2**20


class DeviceMeters:
    """Sums of a training step's named scalars (loss terms, gradient norm), kept on the device.

    ``add`` is device arithmetic only (no host synchronisation); ``flush`` copies the sums
    of the current window and epoch to the host in one transfer and starts a new window.
    The sums are float64, so the means equal those of Python floats summed step by step.
    """

    def __init__(self) -> None:
        self.names: list[str] | None = None
        self._sums: torch.Tensor | None = None  # [2, len(names)]: the window's, the epoch's
        self.window_steps = self.epoch_steps = 0

    def start_epoch(self) -> None:
        if self._sums is not None:
            self._sums.zero_()
        self.window_steps = self.epoch_steps = 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        names = list(values)
        stacked = torch.stack([v.detach().reshape(()) for v in values.values()]).double()
        if self._sums is None:
            self.names, self._sums = names, torch.zeros_like(stacked).expand(2, -1).clone()
        elif names != self.names:
            raise ValueError(f"DeviceMeters: the step's scalars changed from {self.names} to {names}")
        self._sums = self._sums + stacked  # broadcast: the window's and the epoch's row
        self.window_steps += 1
        self.epoch_steps += 1

    def flush(self) -> tuple[dict[str, float], dict[str, float]]:
        """The means of the window (since the last flush) and of the epoch, as floats; one host copy."""
        if self._sums is None or self.names is None:
            return {}, {}
        names = self.names
        window, epoch = self._sums.tolist()
        means = (
            {k: v / self.window_steps for k, v in zip(names, window, strict=False)} if self.window_steps else {},
            {k: v / self.epoch_steps for k, v in zip(names, epoch, strict=False)} if self.epoch_steps else {},
        )
        self._sums[0].zero_()
        self.window_steps = 0
        return means


class RunLog:
    """A training run's ``log.jsonl`` and TensorBoard writer (rank 0), shared by the hooks that
    log (training progress, evaluations). Writes before :meth:`open` and after :meth:`close` are
    dropped, so the other ranks can hold a RunLog that never opens."""

    def __init__(self, out: Path, tensorboard: bool) -> None:
        self.out, self.tensorboard = out, tensorboard
        self._jsonl: JsonlLog | None = None
        self._tb: Any = None  # a SummaryWriter, or None
        self._resumed: dict[str, Any] | None = None

    def open(self, step: int, resumed: dict[str, Any] | None) -> None:
        """Open for a run at optimiser step ``step``; ``resumed`` (where a resumed run picked up)
        is logged with the first record, so a finished rerun logs nothing."""
        self._jsonl = JsonlLog(self.out / LOG_FILE)
        if self.tensorboard:
            self._tb = open_tensorboard(self.out / TB_DIR, purge_step=step if step else None)
        self._resumed = resumed

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def log(self, record: dict[str, Any]) -> None:
        if self._jsonl is None:
            return
        if self._resumed is not None:
            self._jsonl.write({"type": "resumed", **self._resumed, "time": time.time()})
            self._resumed = None
        self._jsonl.write({**record, "time": time.time()})

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        if self._tb is not None:
            self._tb.add_scalar(tag, value, step)

    def flush_scalars(self) -> None:
        if self._tb is not None:
            self._tb.flush()
