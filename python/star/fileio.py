"""File helpers shared by the whole package: atomic writes, the output-folder lock, stale
temporaries and a frame-index fingerprint.

Kept free of torch and OpenCV so that light processes (pose workers) can use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable

from .errors import OutputLockedError


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None], mode: str = "wb", *,
                 durable: bool = False) -> Path:
    """Write ``path`` through ``write(fileobj)`` into a temporary file in the same folder, then
    rename it into place: readers see the old file or the new one, never a half-written one.

    ``durable``: also fsync the file and its folder, so the new content survives a power loss
    (checkpoints, pose shards). Text modes write UTF-8.
    """
    path = Path(path)
    # A plain open() (not mkstemp) so the file gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, *, durable: bool = False) -> Path:
    """``atomic_write`` of a UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text), "w", durable=durable)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync a folder so a rename inside it is on disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def lines_digest(lines: Iterable[str]) -> str:
    """sha256 of the lines joined by newlines: the keypoint store's frame-index fingerprint."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


LOCK_FILE = ".star.lock"

# Descriptors of the locks this process holds. A forked child (a DataLoader or pose worker)
# shares their open file descriptions, and flock holds until the last descriptor closes: a
# worker that outlives its killed parent by a few seconds would keep the folder locked.
# Children therefore close their copies at once (the parent's lock is unaffected).
_HELD_LOCK_FDS: set[int] = set()


def _close_held_locks_in_child() -> None:
    for fd in _HELD_LOCK_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCK_FDS.clear()


os.register_at_fork(after_in_child=_close_held_locks_in_child)


@contextlib.contextmanager
def exclusive_dir_lock(directory: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold an exclusive lock on the output folder ``directory`` for one run (SPEC §9).

    The lock is ``flock`` on ``<directory>/.star.lock``: released when the block ends and by
    the OS when the process dies (kill -9 included), so a stale lock never blocks a rerun.
    A second run into the same folder fails at once with :class:`OutputLockedError` naming
    the first (pid, host, command, start time). ``what`` names the run kind in the
    message (``"star train"``, ``"star pose"``). Creates ``directory`` if needed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_lock_holder(fd)
            raise OutputLockedError(
                f"{directory} is in use by another run ({holder}); wait for it to finish or choose "
                f"another output folder (lock file {path})"
            ) from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        _HELD_LOCK_FDS.add(fd)
        yield path
    finally:
        _HELD_LOCK_FDS.discard(fd)
        os.close(fd)  # closing the descriptor releases the flock


def _read_lock_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return (f"{info.get('what', 'a run')}, pid {info.get('pid')} on {info.get('host')}, "
                f"started {info.get('started')}: {info.get('command')}")
    except (OSError, ValueError):
        return "holder unknown"


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries that ``atomic_write`` left in ``directory`` when a process was
    killed mid-write (``.<name>.<pid>.<hex>.tmp``), except those of live processes.

    Call it while holding ``exclusive_dir_lock``: then no other run writes there, and a
    temporary of a dead pid is garbage. Returns the removed paths.
    """
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        match = _TMP_NAME.fullmatch(tmp.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _pid_alive(pid):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


_TMP_NAME = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}\.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
