"""Loads the compiled extension star_ext._C, or decides to fall back.

Kept apart from ``__init__`` so ``ops`` can ask whether ``_C`` is there
without a circular import.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
BUILD_INFO_FILE = _HERE / "_build_info.json"
REBUILD_HINT = "rebuild it against the running torch: pip install --no-build-isolation --no-deps --force-reinstall ."


class ExtensionMismatchError(ImportError):
    """star_ext._C was built against another torch or CUDA than the running one."""


def _required() -> bool:
    return os.environ.get("STAR_EXT_REQUIRED", "").strip().lower() in ("1", "true", "yes", "on")


def read_build_info() -> dict | None:
    """What _C was built against, as recorded by setup.py; None without a build."""
    if not BUILD_INFO_FILE.is_file():
        return None
    return json.loads(BUILD_INFO_FILE.read_text())


def _check_versions(info: dict) -> None:
    # Compare release numbers: a local tag such as +cu130 differs between CPU and CUDA builds.
    built, running = info["torch"].split("+")[0], torch.__version__.split("+")[0]
    if built != running:
        raise ExtensionMismatchError(
            f"star_ext._C was built with torch {info['torch']} but torch {torch.__version__} is running; {REBUILD_HINT}"
        )
    if info.get("with_cuda") and info.get("cuda") != torch.version.cuda:
        raise ExtensionMismatchError(
            f"star_ext._C was built with CUDA {info.get('cuda')} kernels but the running torch is built for "
            f"CUDA {torch.version.cuda}; {REBUILD_HINT}"
        )


def load() -> tuple[bool, str | None]:
    """Import _C. Returns (loaded, reason it was not)."""
    info = read_build_info()
    if info is not None:
        _check_versions(info)
    try:
        from . import _C  # noqa: F401  (importing registers torch.ops.star.*)
    except ImportError as exc:
        reason = (
            f"star_ext._C could not be imported from {_HERE} ({exc}). If this is the source checkout, it shadows "
            "the installed package: run from another folder, or build in place with "
            "`pip install --no-build-isolation -e .`."
        )
        if _required():
            raise ImportError(f"{reason} STAR_EXT_REQUIRED=1 forbids the pure-PyTorch fallback.") from exc
        warnings.warn(f"{reason} Falling back to the pure-PyTorch reference ops (slow).", RuntimeWarning, stacklevel=3)
        return False, reason
    return True, None


HAS_C, FALLBACK_REASON = load()
