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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import DatasetBusyError, OutputLockedError, WriteFailedError, is_environment_write_error


def not_utf8(raw: bytes, error: UnicodeDecodeError) -> tuple[int, str]:
    """(line, text) of a file that is not UTF-8: the 1-based line of the first bad byte and
    "not a UTF-8 text file (byte 0x.. at offset N: reason)", for the reader's error."""
    line = raw.count(b"\n", 0, error.start) + 1
    return line, f"not a UTF-8 text file (byte 0x{raw[error.start]:02x} at offset {error.start}: {error.reason})"


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Any], None], mode: str = "wb", *, durable: bool = False
) -> Path:
    """Write ``path`` through ``write(fileobj)`` into a temporary file in the same folder, then
    rename it into place: readers see the old file or the new one, never a half-written one.

    ``durable``: also fsync the file and its folder, so the new content survives a power loss
    (checkpoints, pose shards). Text modes write UTF-8.

    A write the machine refuses (disk full, read-only file system, no permission) raises
    :class:`WriteFailedError` naming ``path`` and the reason, also where ``write`` turned the
    OSError of its file object into another exception (``torch.save`` raises RuntimeError);
    removing the temporary afterwards never replaces that error with its own.
    """
    path = Path(path)
    # A plain open() (not mkstemp) so the file gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    refused: list[OSError] = []
    try:
        try:
            with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
                write(_RecordingFile(f, refused))
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
    except OSError as exc:
        if is_environment_write_error(exc):
            raise WriteFailedError(path, exc) from exc
        raise
    except Exception as exc:
        if refused:
            raise WriteFailedError(path, refused[0]) from exc
        raise
    if durable:
        fsync_dir(path.parent)
    return path


class _RecordingFile:
    """A file object that remembers the OSError a ``write`` raised, for writers that wrap it."""

    def __init__(self, f: Any, refused: list[OSError]):
        self._f, self._refused = f, refused

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self._refused.append(exc)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _unlink_quietly(path: Path) -> None:
    """Remove a temporary after a failure; a failure to remove it (read-only file system) is
    left to ``remove_stale_temporaries`` and never hides the error that matters."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` (not atomically: for files inside a folder that is itself
    renamed into place, such as a generated dataset's frames). A write the machine refuses is
    :class:`WriteFailedError` naming ``path`` and the reason, as in ``atomic_write``."""
    path = Path(path)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        if is_environment_write_error(exc):
            raise WriteFailedError(path, exc) from exc
        raise
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
# The folders whose lock this process holds (descriptor -> resolved folder), so that a probe
# (``lock_holder``) does not take this process's own run for another one.
_HELD_LOCK_DIRS: dict[int, Path] = {}


def _close_held_locks_in_child() -> None:
    for fd in _HELD_LOCK_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCK_FDS.clear()
    _HELD_LOCK_DIRS.clear()


os.register_at_fork(after_in_child=_close_held_locks_in_child)


@contextlib.contextmanager
def exclusive_dir_lock(directory: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold an exclusive lock on the output folder ``directory`` for one run (docs/reliability.md).

    The lock is ``flock`` on ``<directory>/.star.lock``: released when the block ends and by
    the OS when the process dies (kill -9 included), so a stale lock never blocks a rerun.
    A second run into the same folder fails at once with :class:`OutputLockedError` naming
    the first (pid, host, command, start time). ``what`` names the run kind in the
    message (``"star train"``, ``"star pose"``). Creates ``directory`` if needed.
    """
    directory = Path(directory)
    path = directory / LOCK_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if is_environment_write_error(exc):
            raise WriteFailedError(path, exc) from None
        raise
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
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": what,
            "command": " ".join(sys.argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        _HELD_LOCK_FDS.add(fd)
        _HELD_LOCK_DIRS[fd] = directory.resolve()
        yield path
    finally:
        _HELD_LOCK_FDS.discard(fd)
        _HELD_LOCK_DIRS.pop(fd, None)
        os.close(fd)  # closing the descriptor releases the flock


DATASET_LOCK_FILE = ".star-dataset.lock"


@contextlib.contextmanager
def dataset_lock(
    root: str | os.PathLike[str], what: str, *, exclusive: bool = False, create: bool = True
) -> Iterator[None]:
    """Hold the lock of the dataset folder ``root`` while reading it (shared: any number of
    readers) or replacing it (``exclusive``: no reader, no other writer), so a dataset is never
    replaced under a running training or evaluation.

    ``flock`` on ``<root>/.star-dataset.lock`` (released on exit and by the OS when the process
    dies). A conflict is :class:`DatasetBusyError` at once, naming the other run(s) where the
    OS tells (Linux ``/proc/locks``). A reader of a folder where the lock file cannot be
    created (a read-only dataset, which nothing can replace either) or of a path that is not
    a folder (reading it reports that) goes on without a lock; so does one without the lock
    file when not ``create`` (a folder no writer replaces). ``what`` names this run.
    """
    root = Path(root)
    path = root / DATASET_LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create or exclusive else 0), 0o644)
    except OSError as exc:
        if exclusive and is_environment_write_error(exc):
            raise WriteFailedError(path, exc) from None
        yield
        return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            others = _flock_holders(fd) or ["another run"]
            if exclusive:
                raise DatasetBusyError(
                    f"cannot replace the dataset {root}: it is being read by {'; '.join(others)}; "
                    "wait for it to finish or write the dataset elsewhere"
                ) from None
            raise DatasetBusyError(
                f"cannot read the dataset {root}: it is being replaced by {'; '.join(others)}; wait for it to finish"
            ) from None
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"what": what, "pid": os.getpid()}).encode("utf-8"), 0)
        _HELD_LOCK_FDS.add(fd)
        yield
    finally:
        _HELD_LOCK_FDS.discard(fd)
        os.close(fd)


def _flock_holders(fd: int) -> list[str]:
    """``pid N: command`` of the other processes holding a flock on ``fd``'s file (Linux
    ``/proc/locks``; empty elsewhere)."""
    inode = os.fstat(fd).st_ino
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    holders, seen = [], {str(os.getpid())}
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  READ  1234 08:01:5678 0 EOF" (a "->" after the number marks a waiter)
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[2] == "->":
            continue
        pid, where = fields[4], fields[5]
        if where.rsplit(":", 1)[-1] != str(inode) or pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            command = "?"
        command = " ".join(command.split())  # one line, whatever the arguments held
        holders.append(f"pid {pid}: {command[:200]}{'...' if len(command) > 200 else ''}")
    return holders


def lock_holder(directory: str | os.PathLike[str]) -> str | None:
    """Who holds ``directory``'s output-folder lock (pid, host, command), or None when nobody
    else does (a lock of this process does not count). Creates nothing: a shared-lock probe
    of an existing lock file."""
    directory = Path(directory)
    try:
        if directory.resolve() in _HELD_LOCK_DIRS.values():
            return None
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY)
    except OSError:  # no lock file (never a run folder), or unreadable: nobody to name
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_lock_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_lock_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return (
            f"{info.get('what', 'a run')}, pid {info.get('pid')} on {info.get('host')}, "
            f"started {info.get('started')}: {info.get('command')}"
        )
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
