"""The output rules: never over an input, never into a live run's folder, never over a file of
another kind without --force; dataset readers and writers never overlap; a write the machine
refuses (disk full, read-only) is one error naming the path and the reason."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from star.data import SynthConfig, generate_synthetic
from star.errors import WriteFailedError
from star.fileio import atomic_write, dataset_lock
from star.output_paths import OutputRefusedError, check_output_file, file_kind
from test_cli import assert_error, cli, run  # noqa: F401  (run: the CLI's tiny trained run, a fixture)
from tiny_run import SYNTH

pytestmark = pytest.mark.usefixtures("one_thread")


def _holder(code: str):
    """A child process that runs ``code`` (holding a lock) until killed; returns it once ready."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code) + "\nprint('ready', flush=True)\ntime.sleep(120)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


# ----------------------------------------------------------------------------- outputs
def test_export_and_extract_never_write_over_their_checkpoint(run, tmp_path, capsys):
    best = run["best"]
    before = best.read_bytes()
    rc, _, err = cli(capsys, "export", "--checkpoint", best, "--out", best, "--force")
    assert_error(rc, err, best, "it is an input of this command")
    rc, _, err = cli(capsys, "extract", "--checkpoint", best, "--out", best, "--force")
    assert_error(rc, err, best, "it is an input of this command")
    assert best.read_bytes() == before


def test_extract_refuses_to_replace_a_file_of_another_kind_without_force(run, tmp_path, capsys):
    other = tmp_path / "other.pt"
    other.write_bytes(run["best"].read_bytes())
    rc, _, err = cli(capsys, "extract", "--checkpoint", run["best"], "--out", other)
    assert_error(rc, err, other, "holds a PyTorch checkpoint, not a features file", "--force")
    assert other.read_bytes() == run["best"].read_bytes()
    rc, out, err = cli(capsys, "extract", "--checkpoint", run["best"], "--out", other, "--force")
    assert rc == 0, err
    assert file_kind(other) == "features file"
    rc, out, err = cli(capsys, "extract", "--checkpoint", run["best"], "--out", other)  # same kind: replaced
    assert rc == 0, err


def test_no_output_into_a_folder_a_running_training_holds(run, tmp_path, capsys):
    live = tmp_path / "live"
    proc = _holder(f"""
        import time
        from star.fileio import exclusive_dir_lock
        lock = exclusive_dir_lock({str(live)!r}, "star train")
        lock.__enter__()
    """)
    try:
        for argv in (
            ["eval", "--checkpoint", run["best"], "--output-dir", live],
            ["extract", "--checkpoint", run["best"], "--out", live / "feats.npz"],
            ["export", "--checkpoint", run["best"], "--out", live / "model.onnx"],
        ):
            rc, _, err = cli(capsys, *argv)
            assert_error(rc, err, live, "the output folder of a running star train", f"pid {proc.pid}")
        assert sorted(p.name for p in live.iterdir()) == [".star.lock"]
    finally:
        proc.kill()
        proc.wait()


def test_eval_output_dir_rules(run, tmp_path, capsys):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "metrics.json").write_bytes(run["best"].read_bytes())  # a checkpoint under that name
    rc, _, err = cli(capsys, "eval", "--checkpoint", run["best"], "--output-dir", out)
    assert_error(rc, err, out / "metrics.json", "PyTorch checkpoint")


def test_file_kinds(tmp_path, run):
    np.save(tmp_path / "k.npy", np.zeros(3))
    np.savez(tmp_path / "a.npz", x=np.zeros(1))
    (tmp_path / "m.json").write_text("{}")
    (tmp_path / "t.txt").write_text("hello")
    kinds = {name: file_kind(tmp_path / name) for name in ("k.npy", "a.npz", "m.json", "t.txt")}
    assert kinds == {"k.npy": "npy array", "a.npz": "npz archive", "m.json": "metrics file", "t.txt": "text"}
    assert file_kind(run["best"]) == "checkpoint"
    with pytest.raises(OutputRefusedError, match="a .npy array"):
        check_output_file(tmp_path / "k.npy", "features file", kind="features file")


# ----------------------------------------------------------------------------- dataset locks
@pytest.fixture
def dataset(tmp_path):
    return generate_synthetic(tmp_path / "D", SynthConfig(**SYNTH))


@pytest.mark.slow
def test_synth_force_refuses_to_replace_a_dataset_being_read(dataset, capsys):
    proc = _holder(f"""
        import time
        from star.fileio import dataset_lock
        lock = dataset_lock({str(dataset)!r}, "star train")
        lock.__enter__()
    """)
    try:
        marker = (dataset / "synthetic.json").read_text()
        rc, _, err = cli(capsys, "synth", "--out", dataset, "--force", "--seed", "5")
        assert_error(rc, err, f"cannot replace the dataset {dataset}: it is being read by pid {proc.pid}")
        assert (dataset / "synthetic.json").read_text() == marker
        rc, out, err = cli(capsys, "check-data", "--dataset", "synthetic", "--root", dataset)  # readers share
        assert rc == 0, err
    finally:
        proc.kill()
        proc.wait()
    rc, _, err = cli(capsys, "synth", "--out", dataset, "--force", "--seed", "5")
    assert rc == 0, err


def test_readers_refuse_a_dataset_being_replaced(dataset, run, tmp_path, capsys):
    proc = _holder(f"""
        import time
        from star.fileio import dataset_lock
        lock = dataset_lock({str(dataset)!r}, "star synth", exclusive=True)
        lock.__enter__()
    """)
    try:
        rc, _, err = cli(capsys, "check-data", "--dataset", "synthetic", "--root", dataset)
        assert_error(rc, err, f"cannot read the dataset {dataset}: it is being replaced by pid {proc.pid}")
        rc, _, err = cli(
            capsys,
            "train",
            "--config",
            run["config"],
            f"data.root={dataset}",
            f"output_dir={tmp_path / 'o'}",
            "train.progress=false",
        )
        assert_error(rc, err, "it is being replaced by")
    finally:
        proc.kill()
        proc.wait()


def test_a_read_only_dataset_is_read_without_a_lock(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("star.fileio.os.open", refuse)
    with dataset_lock(tmp_path, "star eval"):
        pass
    with pytest.raises(WriteFailedError, match="read-only file system"):
        with dataset_lock(tmp_path, "star synth", exclusive=True):
            pass


# ----------------------------------------------------------------------------- failed writes
class _FullDisk:
    """``open`` whose files take ``room`` bytes, then fail as a full disk does."""

    def __init__(self, room: int, error: int = errno.ENOSPC):
        self.room, self.error = room, error
        self.real = open

    def __call__(self, path, mode="r", *args, **kwargs):
        f = self.real(path, mode, *args, **kwargs)
        if "w" not in mode:
            return f
        outer = self

        class Limited:
            def write(self, data):
                if len(data) > outer.room:
                    raise OSError(outer.error, "No space left on device")
                outer.room -= len(data)
                return f.write(data)

            def __getattr__(self, name):
                return getattr(f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

        return Limited()


@pytest.mark.parametrize("writer", ["bytes", "torch.save", "np.savez"])
def test_a_full_disk_is_one_error_naming_the_path(tmp_path, monkeypatch, writer):
    target = tmp_path / "out.bin"
    monkeypatch.setattr("star.fileio.open", _FullDisk(room=100), raising=False)
    write = {
        "bytes": lambda f: f.write(b"x" * 1000),
        "torch.save": lambda f: torch.save({"w": torch.zeros(10000)}, f),
        "np.savez": lambda f: np.savez(f, a=np.zeros(10000)),
    }[writer]
    with pytest.raises(WriteFailedError, match=f"cannot write {target}: no space left on the device"):
        atomic_write(target, write)
    assert list(tmp_path.iterdir()) == []  # the temporary is gone, nothing half-written


def test_cleanup_never_hides_the_error(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.setattr("star.fileio.open", _FullDisk(room=0, error=errno.EROFS), raising=False)

    def unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(WriteFailedError, match="read-only file system"):
        atomic_write(tmp_path / "x", lambda f: f.write(b"data"))


def test_synth_on_a_full_disk_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("star.fileio.open", _FullDisk(room=20000), raising=False)
    rc, _, err = cli(capsys, "synth", "--out", tmp_path / "d", "--ids", "4", "--height", "32", "--width", "16")
    assert_error(rc, err, "cannot write ", "no space left on the device")
    assert not (tmp_path / "d").exists() and [p.name for p in tmp_path.iterdir()] == []


def test_a_folder_the_machine_refuses_is_one_error_line(tmp_path, monkeypatch, capsys):
    def mkdir(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr("pathlib.Path.mkdir", mkdir)
    rc, _, err = cli(capsys, "synth", "--out", tmp_path / "a" / "d")
    assert_error(rc, err, str(tmp_path / "a"), "permission denied")


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    from star.cli import INTERRUPTED, exit_status

    def interrupted():
        raise KeyboardInterrupt

    assert exit_status(interrupted) == INTERRUPTED == 130
    assert capsys.readouterr().err.strip() == "interrupted, rerun the same command to resume"
