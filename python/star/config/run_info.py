"""What a run saves about itself: the resolved config plus version, git SHA, date, command line.

``save_run_info(cfg, output_dir)`` writes ``<output_dir>/config.yaml``: a
comment header, then a top-level ``_run_`` mapping (``star_version``,
``git_sha``, ``torch_version``, ``cuda_version``, ``python_version``,
``date``, ``argv``, ``cwd``), then the fully resolved config. ``load_config``
ignores ``_run_``, so the file loads back to the same ``RunConfig``;
``read_run_info(path)`` returns the ``_run_`` mapping.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .._version import __version__
from ..fileio import atomic_write_text
from .loader import RUN_KEY, config_to_dict, dump_yaml
from .schema import RunConfig

CONFIG_FILE = "config.yaml"


def _git(args: Sequence[str], cwd: Path) -> str:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=10, check=True)
    return result.stdout.strip()


def git_sha(source_dir: str | os.PathLike[str] | None = None) -> str:
    """The git commit of the code: ``<sha>``, ``<sha>-dirty``, or ``"unknown"``; never raises.

    ``source_dir`` defaults to the directory of the ``star`` package. The SHA
    is reported only when that directory's ``__init__.py`` is tracked by the
    enclosing git checkout (an installed copy inside some unrelated repository
    gives ``"unknown"``). ``-dirty`` means tracked files have uncommitted
    changes (``git status --porcelain --untracked-files=no``: run outputs
    and scratch files in the checkout do not count).
    """
    try:
        src = Path(source_dir) if source_dir is not None else Path(__file__).resolve().parent.parent
        _git(["ls-files", "--error-unmatch", "__init__.py"], src)
        sha = _git(["rev-parse", "HEAD"], src)
        if not sha:
            return "unknown"
        if _git(["status", "--porcelain", "--untracked-files=no"], src):
            sha += "-dirty"
        return sha
    except Exception:  # no git, not a checkout, no commit yet, timeout, ...: never fail a run over this
        return "unknown"


def run_info(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Version, git SHA, torch/CUDA/Python versions, local date and command line of this process."""
    try:
        import torch

        torch_version, cuda_version = str(torch.__version__), torch.version.cuda
    except Exception:
        torch_version, cuda_version = "unknown", None
    return {
        "star_version": __version__,
        "git_sha": git_sha(),
        "torch_version": torch_version,
        "cuda_version": cuda_version,
        "python_version": platform.python_version(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": [str(a) for a in (sys.argv if argv is None else argv)],
        "cwd": os.getcwd(),
    }


def save_run_info(cfg: RunConfig, output_dir: str | os.PathLike[str], argv: Sequence[str] | None = None) -> Path:
    """Write ``<output_dir>/config.yaml`` (run info under ``_run_`` + the resolved config); return its path.

    ``load_config`` of the written file gives back ``cfg`` (with its model
    section spelled out, as ``load_config`` always returns it).
    """
    info = run_info(argv)
    header = (
        "# star-reid run configuration, fully resolved.\n"
        f"# star.config.load_config(<this file>) loads it again; the {RUN_KEY} section (run info) is ignored on load.\n"
    )
    text = header + dump_yaml({RUN_KEY: info}) + "\n" + dump_yaml(config_to_dict(cfg))
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return atomic_write_text(Path(output_dir) / CONFIG_FILE, text)


def read_run_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``_run_`` mapping of a saved ``config.yaml`` (or of ``<dir>/config.yaml``); ``{}`` if absent."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    info = data.get(RUN_KEY) if isinstance(data, dict) else None
    return dict(info) if isinstance(info, dict) else {}
