"""The output-folder lock and the stale-temporary cleanup of star.fileio (docs/reliability.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from star.errors import OutputLockedError, StarError
from star.fileio import LOCK_FILE, atomic_write_text, exclusive_dir_lock, remove_stale_temporaries


def test_second_holder_fails_naming_the_first(tmp_path):
    with exclusive_dir_lock(tmp_path / "run", "star train"):
        with pytest.raises(OutputLockedError, match=rf"star train, pid {os.getpid()} on ") as info:
            with exclusive_dir_lock(tmp_path / "run", "star train"):
                pass
        assert isinstance(info.value, StarError)
    with exclusive_dir_lock(tmp_path / "run", "star train"):  # released on exit
        pass


def test_lock_held_by_another_process_and_released_by_its_death(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from star.fileio import exclusive_dir_lock
        with exclusive_dir_lock({str(tmp_path)!r}, "star pose"):
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=rf"star pose, pid {proc.pid}"):
            with exclusive_dir_lock(tmp_path, "star pose"):
                pass
    finally:
        proc.kill()
        proc.wait()
    with exclusive_dir_lock(tmp_path, "star pose"):  # a killed holder leaves no stale lock
        assert (tmp_path / LOCK_FILE).is_file()


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".last.pt.{dead_pid}.0123abcd.tmp"
    stale.write_bytes(b"x" * 10)
    live = tmp_path / f".last.pt.{os.getppid()}.0123abcd.tmp"  # a live process's write in progress
    live.write_bytes(b"y")
    other = tmp_path / ".notes.tmp"  # not ours: a name atomic_write does not make
    other.write_text("keep")
    atomic_write_text(tmp_path / "metrics.json", "{}")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "metrics.json").read_text() == "{}"
