"""``metrics.json`` (an evaluation's metrics) and ``cmc.png`` beside it.

``write_metrics`` takes any result with ``to_dict()`` (``star.engine.EvalResult``): the
dict is the file's content, metrics as fractions in [0, 1]; non-finite numbers become
``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..fileio import atomic_write
from ..output_paths import check_output_file, prepare_output_file
from .cmc_plot import CMC_PLOT_FILE, write_cmc_plot

__all__ = ["METRICS_FILE", "MetricsSource", "check_metrics_outputs", "write_metrics"]

METRICS_FILE = "metrics.json"


class MetricsSource(Protocol):
    """An evaluation result: ``to_dict()`` is the content of its metrics.json."""

    def to_dict(self) -> dict[str, Any]: ...


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def check_metrics_outputs(output_dir: str | Path, *, inputs: Sequence[str | Path] = (), force: bool = False) -> None:
    """``metrics.json`` and ``cmc.png`` may be written into ``output_dir`` under the output
    rules (``output_paths.check_output_file``): not over an input, not into a live run's
    folder, not over files of other kinds without ``force``. Checked before any long work."""
    out = Path(output_dir)
    check_output_file(out / METRICS_FILE, "metrics file", kind="metrics file", inputs=inputs, force=force)
    check_output_file(out / CMC_PLOT_FILE, "CMC plot", kind="image", inputs=inputs, force=force)


def write_metrics(result: MetricsSource, path: str | Path) -> Path:
    """Write ``result.to_dict()`` as JSON to ``path`` (a directory means ``<path>/metrics.json``), atomically,
    and its CMC curves to ``cmc.png`` beside it."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    path = prepare_output_file(path, "metrics file")
    text = json.dumps(_json_safe(result.to_dict()), indent=2)
    atomic_write(path, lambda f: f.write(text + "\n"), mode="w")
    write_cmc_plot(result.to_dict(), path.with_name(CMC_PLOT_FILE))  # cmc.png beside every metrics.json
    return path
