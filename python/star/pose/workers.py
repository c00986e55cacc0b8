"""Worker processes of ``star pose --workers N``: one :class:`FrameExtractor` each, one shard per task.

Workers are spawned (no inherited onnxruntime / OpenCV thread state) and die with their
parent: a ``kill -9`` of ``star pose`` must not leave them (and, through them, the
multiprocessing resource tracker) running. On Linux the kernel sends them SIGKILL when the
parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a watchdog thread polls the parent pid.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..fileio import atomic_write
from .errors import PoseError
from .frames import FrameExtractor, PoseSettings

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_PERIOD_S = 0.5

_WORKER: FrameExtractor | None = None
_PROGRESS: Queue[Any] | None = None


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (its parent) exits, however it exits."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCHDOG_PERIOD_S)
        os._exit(1)

    threading.Thread(target=watch, name="star-pose-parent-watchdog", daemon=True).start()


def _worker_init(settings: PoseSettings, progress_queue, parent_pid: int) -> None:
    global _WORKER, _PROGRESS
    die_with_parent(parent_pid)
    cv2.setNumThreads(1)  # parallelism comes from the decode threads and the worker processes
    _WORKER = FrameExtractor(settings)
    _PROGRESS = progress_queue


def _worker_run(name: str, paths: list[str], target: str) -> tuple[str, int, list[str]]:
    assert _WORKER is not None and _PROGRESS is not None  # both set by _worker_init
    rows, bad = _WORKER(paths, progress=_PROGRESS.put)
    atomic_write(Path(target), lambda f: np.save(f, rows), durable=True)
    return name, len(paths), bad


def run_pool(
    settings: PoseSettings,
    workers: int,
    index: Mapping[str, Any],
    pending: Sequence,
    shard_dir: Path,
    progress: Callable[[int], None],
    on_shard_done: Callable[[str], None] | None,
) -> list[str]:
    """Compute the ``pending`` shards in ``workers`` processes; returns the unreadable frames they met."""
    ctx = mp.get_context("spawn")
    progress_queue = ctx.Queue()
    bad: list[str] = []

    def drain() -> None:
        while True:
            try:
                progress(progress_queue.get_nowait())
            except queue_mod.Empty:
                return

    with cf.ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(settings, progress_queue, os.getpid())
    ) as ex:
        futures = {
            ex.submit(
                _worker_run, sh.name, list(index[sh.split].paths[sh.start : sh.stop]), str(shard_dir / f"{sh.name}.npy")
            )
            for sh in pending
        }
        try:
            while futures:
                done, futures = cf.wait(futures, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                drain()
                for fut in done:
                    name, _, b = fut.result()
                    bad += b
                    if on_shard_done is not None:
                        on_shard_done(name)
        except cf.process.BrokenProcessPool as e:
            raise PoseError(
                "a pose worker process died; when calling extract_keypoints(workers > 1) from a script, "
                "guard the call with `if __name__ == '__main__':` (worker processes are spawned)"
            ) from e
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        drain()
    return bad
