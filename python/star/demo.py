"""``star demo``: train and evaluate STAR on the synthetic dataset on a CPU, end to end.

The settings are the package's ``synthetic.yaml`` (also ``configs/synthetic.yaml``):
the dataset is generated into ``data_root`` when it is not there yet (cached for
later runs), STAR is trained, both modes are evaluated, the metrics table is
printed and ``metrics.json``, rank-list pictures, logs and checkpoints are written
into ``output_dir``. A rerun of a finished demo reports the finished run; an
interrupted one resumes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .config import RunConfig, load_config

DEMO_CONFIG = Path(__file__).resolve().parent / "config" / "synthetic.yaml"


def default_data_root() -> Path:
    """Where the demo caches its synthetic dataset: ``$STAR_CACHE_DIR`` or ``~/.cache/star-reid``."""
    base = (
        os.environ.get("STAR_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "star-reid"
    )
    return Path(base) / "synthetic"


def demo_config(
    output_dir: str | Path = "runs/demo", data_root: str | Path | None = None, overrides: Sequence[str] = ()
) -> RunConfig:
    """The demo's ``RunConfig``: ``synthetic.yaml`` with the output and data folders set, then ``overrides``."""
    root = Path(data_root) if data_root is not None else default_data_root()
    given = [f"output_dir={Path(output_dir)}", f"data.root={root}", *overrides]
    return load_config(DEMO_CONFIG, given)
