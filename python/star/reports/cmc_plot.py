"""``cmc.png``: the CMC curves of every evaluation mode, next to ``metrics.json`` (docs/protocols.md).

``cmc_curves(metrics)`` picks the plotted data out of a metrics.json mapping (the
``cmc`` list of each mode, ranks 1-20, mAP and mINP for the legend);
``write_cmc_plot`` draws them with matplotlib. matplotlib is imported only there,
so ``import star`` stays light, and through its object-oriented API with the Agg
canvas: no pyplot state, no change to the caller's backend.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fileio import atomic_write

CMC_PLOT_FILE = "cmc.png"
PLOT_RANKS = 20  # ranks 1..20 on the x axis


@dataclass(frozen=True)
class CmcCurve:
    """One mode's curve: CMC in % at ranks 1..len(cmc), and the legend text."""

    mode: str
    ranks: tuple[int, ...]
    cmc: tuple[float, ...]
    label: str


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f}"


def cmc_curves(metrics: Mapping[str, Any], max_rank: int = PLOT_RANKS) -> list[CmcCurve]:
    """The curves of ``metrics["modes"]`` (a metrics.json mapping), first ``max_rank`` ranks, in %."""
    curves = []
    for mode, m in metrics.get("modes", {}).items():
        cmc = [math.nan if v is None else 100 * float(v) for v in m.get("cmc", [])[:max_rank]]  # None: JSON's NaN
        label = f"{mode}: R1 {_percent(m.get('R1'))}, mAP {_percent(m.get('mAP'))}, mINP {_percent(m.get('mINP'))}"
        curves.append(CmcCurve(mode, tuple(range(1, len(cmc) + 1)), tuple(cmc), label))
    return curves


def write_cmc_plot(metrics: Mapping[str, Any], path: str | Path, max_rank: int = PLOT_RANKS) -> Path | None:
    """Draw the CMC curves of ``metrics`` into the PNG ``path`` (atomically); returns ``path``.

    Without matplotlib (a dependency of star-reid, so only in a broken install) one warning
    and None: a missing picture must not end a training run at its first evaluation.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn(f"matplotlib is not installed: {path} not written (pip install matplotlib)", stacklevel=2)
        return None

    curves = cmc_curves(metrics, max_rank)
    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for curve in curves:
        ax.plot(curve.ranks, curve.cmc, marker="o", markersize=3, label=curve.label)
    ax.set_xlim(1, max_rank)
    ax.set_xticks([1, *range(5, max_rank + 1, 5)])
    ax.set_ylim(0, 100)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    title = ", ".join(str(metrics[k]) for k in ("dataset", "protocol") if metrics.get(k))
    ax.set_title(f"CMC{': ' + title if title else ''}")
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    return atomic_write(path, lambda f: fig.savefig(f, format="png"))
