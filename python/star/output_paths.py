"""Output paths of eval / extract / visrank, checked before any long work.

A path the user gives for an output file may be an existing folder, or lie under
something that is a file; a folder may be a file already or not writable. Each of
those is an :class:`OutputPathError` naming the path and what is wrong, raised before
a model is loaded or features are extracted (not an ``IsADirectoryError`` after it).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

from .errors import StarError
from .fileio import lock_holder

__all__ = [
    "OutputPathError",
    "OutputNotAFolderError",
    "OutputNotWritableError",
    "OutputRefusedError",
    "check_folder_free",
    "check_output_file",
    "check_output_dir",
    "file_kind",
    "prepare_output_file",
    "prepare_output_dir",
]


class OutputPathError(StarError, OSError):
    """An output path that cannot be written; the message names it."""


class OutputNotAFolderError(OutputPathError, NotADirectoryError):
    """An output folder (or a folder above an output file) is an existing file."""


class OutputRefusedError(OutputPathError, FileExistsError):
    """The output would replace an input, a file of another kind, or land in a live run's folder."""


class OutputNotWritableError(OutputPathError, PermissionError):
    """An output folder (or the nearest existing folder above it) is not writable."""


def check_output_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    kind: str | None = None,
    inputs: Iterable[str | os.PathLike[str]] = (),
    force: bool = False,
) -> Path:
    """``path`` can become the output file ``what`` (e.g. ``"features file"``): not a folder, and
    its folder exists writable or can be created. Creates nothing (a command that fails
    later leaves no empty folders behind).

    The output rules (docs/reliability.md): ``path`` is never one of the command's
    ``inputs`` (not even with ``force``), never inside a folder another run holds
    (``star.fileio.exclusive_dir_lock``), and an existing file is replaced only when it is
    of the ``kind`` written (``file_kind``) or with ``force``. Each refusal is an
    :class:`OutputRefusedError` naming the file and why.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"the {what} {path} is an existing folder, not a file")
    for given in inputs:
        if given is not None and _same_file(path, Path(given)):
            raise OutputRefusedError(f"refusing to write the {what} over {path}: it is an input of this command")
    check_folder_free(path.parent, f"the {what} {path}")
    if kind is not None and not force and path.is_file():
        found = file_kind(path)
        if found != kind:
            raise OutputRefusedError(
                f"refusing to replace {path} with a {kind}: it holds {KIND_NAMES.get(found, found)}, not a {kind}; "
                "choose another output path, or pass --force to replace it"
            )
    _check_folder(path.parent, what, path)
    return path


def check_folder_free(folder: str | os.PathLike[str], what: str) -> None:
    """``OutputRefusedError`` when another run (a training, ``star pose``) holds ``folder``:
    ``what`` would be written into a live run's outputs."""
    holder = lock_holder(folder)
    if holder is not None:
        raise OutputRefusedError(
            f"refusing to write {what}: {folder} is the output folder of a running {holder}; "
            "wait for it to finish or choose another output path"
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


# What a file holds, told from its first bytes (file_kind) -> how a message names it.
KIND_NAMES = {
    "checkpoint": "a PyTorch checkpoint",
    "features file": "a features .npz",
    "npz archive": "a .npz archive of other arrays",
    "npy array": "a .npy array (e.g. a keypoint store)",
    "ONNX model": "an ONNX model",
    "metrics file": "a JSON file",
    "image": "an image",
    "text": "text",
    "unknown": "data of another kind",
}


def file_kind(path: str | os.PathLike[str]) -> str:
    """The kind of an existing file, from its content: a key of ``KIND_NAMES``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        if head.startswith(b"PK"):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
            if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                return "checkpoint"
            if names and all(n.endswith(".npy") for n in names):
                return "features file" if "splits.npy" in names else "npz archive"
            return "unknown"
    except (OSError, zipfile.BadZipFile):
        return "unknown"
    if head.startswith(b"\x93NUMPY"):
        return "npy array"
    if head.startswith(b"\x80"):  # a pickle: torch.save's legacy format
        return "checkpoint"
    if head.startswith((b"\xff\xd8", b"\x89PNG")):
        return "image"
    if path.suffix == ".onnx" and head[:1] == b"\x08":  # ModelProto field 1 (ir_version), a varint
        return "ONNX model"
    if head.lstrip()[:1] in (b"{", b"["):
        return "metrics file"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown"


def check_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` can become the output folder ``what``: a writable folder, or creatable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputNotAFolderError(f"the {what} {path} exists and is a file, not a folder")
    _check_folder(path, what, path)
    return path


def prepare_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """``check_output_file``, then its folder created (with parents): ready to write."""
    path = check_output_file(path, what)
    _make_folder(path.parent, what, path)
    return path


def prepare_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``check_output_dir``, then the folder created (with parents)."""
    path = check_output_dir(path, what)
    _make_folder(path, what, path)
    return path


def _check_folder(folder: Path, what: str, target: Path) -> None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise OutputNotAFolderError(f"cannot write the {what} {target}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputNotWritableError(f"cannot write the {what} {target}: the folder {existing} is not writable")


def _make_folder(folder: Path, what: str, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a race with another process, or a filesystem that refuses
        raise OutputPathError(f"cannot create the folder {folder} for the {what} {target}: {exc}") from None
