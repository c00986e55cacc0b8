"""The pictures of ``star explain`` (docs/explain.md), drawn from an explain.json mapping.

- ``body_parts.png``: a COCO-17 body per modality, each joint drawn by its contribution
  (colour and size on one scale per row): the graph attention it receives, and the
  saliency of the embedding w.r.t. its keypoint;
- ``pooling_mix.png``: per exponent p of the guided pooling, grouped bars per modality:
  the mean weight (std over channels as error bars) and the share of channels it dominates;
- ``correction.png``: ||F' - F|| per frame position, and against the frame's mean
  keypoint confidence.

A picture is drawn only when some modality has its section; an absent section shows its
reason in place. matplotlib is imported inside ``write_figures`` (``import star`` stays
light) and used through the Agg canvas, with no pyplot state, as in ``cmc_plot``; every
file is written atomically.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from star_ext.graph import COCO_BONES

from ..fileio import atomic_write

BODY_PARTS_FILE = "body_parts.png"
POOLING_FILE = "pooling_mix.png"
CORRECTION_FILE = "correction.png"
FIGURE_FILES = (BODY_PARTS_FILE, POOLING_FILE, CORRECTION_FILE)

# A standing person seen from the front (x to the viewer's right, y up): the person's
# left side is on the right of the picture. Face joints are spread a little so their
# markers stay apart.
BODY_TEMPLATE: tuple[tuple[float, float], ...] = (
    (0.0, 1.6),  # nose
    (0.13, 1.77),
    (-0.13, 1.77),  # eyes (left, right)
    (0.28, 1.64),
    (-0.28, 1.64),  # ears
    (0.42, 1.36),
    (-0.42, 1.36),  # shoulders
    (0.56, 1.02),
    (-0.56, 1.02),  # elbows
    (0.64, 0.68),
    (-0.64, 0.68),  # wrists
    (0.24, 0.84),
    (-0.24, 0.84),  # hips
    (0.27, 0.44),
    (-0.27, 0.44),  # knees
    (0.29, 0.04),
    (-0.29, 0.04),  # ankles
)
MODALITY_COLORS = {"IR": "#c0392b", "RGB": "#2471a3"}
MARKER_AREA = (30.0, 300.0)  # points^2 of the smallest and largest value of a row


def _canvas(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _absent(ax, reason: str) -> None:
    import textwrap

    ax.text(
        0.5,
        0.5,
        "absent:\n" + textwrap.fill(reason, 34),
        ha="center",
        va="center",
        fontsize=8,
        color="0.35",
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _save_with_legend(fig, ax, path: Path) -> Path:
    """One legend (of ``ax``'s labelled artists) under the title, outside the panels."""
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    fig.legend(
        *ax.get_legend_handles_labels(),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.93),
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    return atomic_write(path, lambda f: fig.savefig(f, format="png"))


def _has(explanation: Mapping[str, Any], section: str) -> bool:
    return any(m.get(section) is not None for m in explanation["modalities"].values())


# ----------------------------------------------------------------------------- body parts
BODY_ROWS = (  # (section, its per-joint values, row title, colour bar label)
    ("attention", lambda s: s["mean"], "graph attention received (both layers; 1 = a node's average)", "weight"),
    ("saliency", lambda s: s["total"], "saliency: ||d embedding / d (x, y, conf)||", "norm"),
)


def _marker_area(value: float, low: float, high: float) -> float:
    span = (high - low) or 1.0
    return MARKER_AREA[0] + (value - low) / span * (MARKER_AREA[1] - MARKER_AREA[0])


def _body_panel(ax, values, low: float, high: float, cmap, norm) -> None:
    xs = [p[0] for p in BODY_TEMPLATE]
    ys = [p[1] for p in BODY_TEMPLATE]
    for i, j in COCO_BONES:
        ax.plot([xs[i], xs[j]], [ys[i], ys[j]], color="0.75", linewidth=2, zorder=1)
    sizes = [_marker_area(v, low, high) for v in values]
    ax.scatter(xs, ys, s=sizes, c=values, cmap=cmap, norm=norm, edgecolors="black", linewidths=0.6, zorder=2)
    ax.text(0.02, 0.01, "person's right", transform=ax.transAxes, fontsize=7, color="0.4")
    ax.text(0.98, 0.01, "person's left", transform=ax.transAxes, fontsize=7, color="0.4", ha="right")
    ax.set_xlim(-0.85, 0.85)
    ax.set_ylim(-0.12, 1.92)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _scale_panel(fig, ax, low: float, high: float, cmap, norm, label: str) -> None:
    """The row's legend: marker sizes for three values above a colour bar."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.lines import Line2D

    ax.axis("off")
    handles = [
        Line2D(
            [],
            [],
            linestyle="",
            marker="o",
            markersize=_marker_area(v, low, high) ** 0.5,
            markerfacecolor=cmap(norm(v)),
            markeredgecolor="black",
            label=f"{v:.3g}",
        )
        for v in (low, (low + high) / 2, high)
    ]
    ax.legend(
        handles=handles,
        loc="upper center",
        fontsize=7,
        title="size",
        title_fontsize=7,
        labelspacing=1.4,
        borderpad=0.9,
        frameon=False,
    )
    bar = ax.inset_axes((0.3, 0.04, 0.18, 0.5))
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=bar)
    bar.tick_params(labelsize=7)
    bar.set_title(label, fontsize=7)


def _draw_body_parts(explanation: Mapping[str, Any], path: Path) -> Path:
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    modalities = explanation["modalities"]
    joints = explanation["joints"]
    rows = [row for row in BODY_ROWS if _has(explanation, row[0])]
    fig = _canvas(2.5 * len(modalities) + 1.3, 3.5 * len(rows) + 0.4)
    axes = fig.subplots(
        len(rows), len(modalities) + 1, squeeze=False, gridspec_kw={"width_ratios": [1] * len(modalities) + [0.5]}
    )
    cmap = colormaps["viridis"]
    for r, (section, pick, _title, label) in enumerate(rows):
        present = [pick(m[section]) for m in modalities.values() if m.get(section) is not None]
        low, high = min(min(v) for v in present), max(max(v) for v in present)
        norm = Normalize(low, high if high > low else low + 1)
        for c, (name, m) in enumerate(modalities.items()):
            ax = axes[r][c]
            if m.get(section) is None:
                ax.set_title(name, fontsize=9)
                _absent(ax, m["absent"].get(section, "not measured"))
                continue
            values = pick(m[section])
            top = joints[max(range(len(values)), key=values.__getitem__)].replace("_", " ")
            ax.set_title(f"{name} (top: {top})", fontsize=9)
            _body_panel(ax, values, low, high, cmap, norm)
        _scale_panel(fig, axes[r][-1], low, high, cmap, norm, label)
    # A fixed layout: tight_layout cannot place the legend column's inset colour bars.
    fig.subplots_adjust(
        left=0.02, right=0.98, top=1 - 0.75 / fig.get_figheight(), bottom=0.02, wspace=0.08, hspace=0.32
    )
    for r, row in enumerate(rows):
        box = axes[r][0].get_position()
        fig.text(box.x0, box.y1 + 0.32 / fig.get_figheight(), row[2], fontsize=9, fontweight="bold")
    fig.suptitle(f"{explanation['dataset']} ({explanation['split']}): body-part contribution", fontsize=10)
    return atomic_write(path, lambda f: fig.savefig(f, format="png"))


# ----------------------------------------------------------------------------- pooling and correction
def _draw_pooling(explanation: Mapping[str, Any], path: Path) -> Path:
    modalities = {n: m for n, m in explanation["modalities"].items() if m.get("pooling") is not None}
    fig = _canvas(8.6, 3.4)
    weight_ax, share_ax = fig.subplots(1, 2)
    width = 0.8 / len(modalities)
    for k, (name, m) in enumerate(modalities.items()):
        mix = m["pooling"]
        at = [i - 0.4 + width * (k + 0.5) for i in range(len(mix["exponents"]))]
        color = MODALITY_COLORS.get(name)
        weight_ax.bar(at, mix["weight_mean"], width, yerr=mix["weight_std"], capsize=3, color=color, label=name)
        share_ax.bar(at, [100 * v for v in mix["dominant_share"]], width, color=color, label=name)
    exponents = next(iter(modalities.values()))["pooling"]["exponents"]
    for ax, ylabel, title in (
        (weight_ax, "weight", "weight on each exponent (mean ± std over channels)"),
        (share_ax, "channels (%)", "channels whose largest weight is on p"),
    ):
        ax.set_xticks(range(len(exponents)), [f"p = {p:g}" for p in exponents])
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    weight_ax.axhline(1 / len(exponents), color="0.5", linestyle=":", linewidth=1, label="uniform")
    fig.suptitle(f"{explanation['dataset']} ({explanation['split']}): guided GeM pooling, exponent mix", fontsize=10)
    return _save_with_legend(fig, weight_ax, path)


def _draw_correction(explanation: Mapping[str, Any], path: Path) -> Path:
    modalities = {n: m for n, m in explanation["modalities"].items() if m.get("correction") is not None}
    fig = _canvas(8.6, 3.4)
    position_ax, conf_ax = fig.subplots(1, 2)
    for name, m in modalities.items():
        prof = m["correction"]
        color = MODALITY_COLORS.get(name)
        t = list(range(1, len(prof["position_mean"]) + 1))
        mean, std = prof["position_mean"], prof["position_std"]
        position_ax.plot(t, mean, marker="o", color=color, label=name)
        position_ax.fill_between(
            t,
            [a - b for a, b in zip(mean, std, strict=False)],
            [a + b for a, b in zip(mean, std, strict=False)],
            color=color,
            alpha=0.15,
        )
        edges = prof["bin_edges"]
        points = [
            ((edges[i] + edges[i + 1]) / 2, v, n)
            for i, (v, n) in enumerate(zip(prof["bin_mean"], prof["bin_frames"], strict=False))
            if v is not None
        ]
        r = "n/a" if prof["correlation"] is None else f"{prof['correlation']:+.2f}"
        conf_ax.plot(
            [p[0] for p in points], [p[1] for p in points], marker="o", color=color, label=f"{name}: Pearson r = {r}"
        )
        for x, y, n in points:
            conf_ax.annotate(
                f"{n}", (x, y), xytext=(0, 5), textcoords="offset points", ha="center", fontsize=6, color=color
            )
    position_ax.set_xlabel("frame position t")
    position_ax.set_ylabel(r"$\|F'_t - F_t\|$ (mean ± std)")
    position_ax.set_title("correction per frame position", fontsize=9)
    position_ax.set_xticks(t)
    conf_ax.set_xlabel("mean keypoint confidence of the frame (bin centre)")
    conf_ax.set_ylabel(r"mean $\|F' - F\|$")
    conf_ax.set_title("correction vs keypoint confidence (numbers: frames)", fontsize=9)
    conf_ax.set_xlim(0, 1)
    conf_ax.margins(y=0.15)  # room for the frame counts above the points
    for ax in (position_ax, conf_ax):
        ax.grid(True, alpha=0.3)
    conf_ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{explanation['dataset']} ({explanation['split']}): frame correction", fontsize=10)
    return _save_with_legend(fig, position_ax, path)


FIGURES = (
    (BODY_PARTS_FILE, ("attention", "saliency"), _draw_body_parts),
    (POOLING_FILE, ("pooling",), _draw_pooling),
    (CORRECTION_FILE, ("correction",), _draw_correction),
)


def write_figures(explanation: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Draw the pictures of ``explanation`` (an explain.json mapping) into ``out_dir`` (which
    exists); returns the paths written. Without matplotlib: one warning and none."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        warnings.warn(
            f"matplotlib is not installed: no explain pictures in {out_dir} (pip install matplotlib)", stacklevel=2
        )
        return []
    out = Path(out_dir)
    return [
        draw(explanation, out / name) for name, sections, draw in FIGURES if any(_has(explanation, s) for s in sections)
    ]
