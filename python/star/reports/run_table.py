"""``star table``: aggregate finished runs into one row per configuration, mean ± std over seeds.

Each run folder holds the ``config.yaml`` its training wrote (``star.config.run_info``)
and the ``metrics.json`` of its last evaluation (``star.engine.evaluator``). Runs are
grouped by their resolved configuration without the seed and without the settings
that do not change a result (``RESULT_INDEPENDENT``: folders, workers, logging...), so
the seeds of one ablation row form one row. ``group_by`` config keys replace that
grouping (rows = the values of those keys; other differences are reported in
``RunTable.notes``). Runs of a different dataset, protocol or re-ranking setting are
never averaged together: they always fall into different rows.

Numbers are in %: the mean over the row's runs and the sample standard deviation
(n - 1 in the denominator; none for a single run).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import RunConfig
from ..config.loader import RUN_KEY
from ..config.run_info import CONFIG_FILE
from ..config_tree import key_matches, keys_where
from ..dotted_keys import flatten
from ..errors import StarError
from .metrics_file import METRICS_FILE

TABLE_FORMATS = ("markdown", "csv", "latex")
METRICS = ("R1", "R5", "mAP", "mINP")
# Config keys left out of a row's grouping: the seed, which a row averages over, and the
# settings of a kind that does not change what a run computes (star.config_tree.Kind:
# where files are, the device and loader workers, what is logged or drawn); entries
# ending in "." are sections.
RESULT_INDEPENDENT: tuple[str, ...] = ("seed", *keys_where(RunConfig, lambda kind: not kind.changes_result))


class RunTableError(StarError, ValueError):
    """A run folder cannot be read, or the runs cannot be tabulated as asked."""


@dataclass
class Run:
    """One run folder: its flattened resolved config (without ``_run_``) and its metrics.json."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def split(self) -> tuple[str, str, bool]:
        """(dataset, protocol, rerank): runs that differ here are never averaged together."""
        m = self.metrics
        dataset = str(m.get("dataset") or self.config.get("data.dataset", ""))
        return dataset, str(m.get("protocol", "")), bool(m.get("rerank"))


@dataclass
class Row:
    label: str
    runs: list[Run]

    @property
    def split(self) -> tuple[str, str, bool]:
        return self.runs[0].split

    def stats(self, mode: str, metric: str) -> tuple[float, float | None, int] | None:
        """(mean %, sample std % or None, n) of ``metric`` in ``mode`` over the runs; None when any lacks it."""
        values = [run.metrics["modes"].get(mode, {}).get(metric) for run in self.runs]
        if any(v is None for v in values):
            return None
        values = [100 * float(v) for v in values]
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        return mean, std, n


@dataclass
class RunTable:
    rows: list[Row]
    modes: list[str]
    notes: list[str] = field(default_factory=list)


def _load(path: Path, what: str, parse) -> Any:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunTableError(
            f"{path.parent} holds no {path.name}: not a finished run folder (pass run folders, e.g. runs/abl/*)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunTableError(f"cannot read {what} {path}: {first}") from None


def read_run(run_dir: str | os.PathLike[str]) -> Run:
    """The config and metrics of ``run_dir``; ``RunTableError`` naming the folder or file otherwise."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunTableError(f"run folder not found: {path}")
    metrics = _load(path / METRICS_FILE, "metrics", json.loads)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("modes"), dict) or not metrics["modes"]:
        raise RunTableError(f"{path / METRICS_FILE} holds no per-mode metrics (no 'modes' mapping)")
    _check_metric_values(path / METRICS_FILE, metrics["modes"])
    config = _load(path / CONFIG_FILE, "config", yaml.safe_load)
    if not isinstance(config, dict):
        raise RunTableError(f"{path / CONFIG_FILE} is not a run configuration (not a mapping)")
    config.pop(RUN_KEY, None)
    return Run(path, flatten(config), metrics)


def _check_metric_values(path: Path, modes: dict[str, Any]) -> None:
    """Each mode a mapping whose table metrics are numbers (or null = missing), so a hand-edited
    or foreign file is named here rather than failing inside the arithmetic."""
    for mode, values in modes.items():
        if not isinstance(values, dict):
            raise RunTableError(f"{path}: mode {mode!r} is not a mapping of metrics, got {values!r}")
        for metric in METRICS:
            value = values.get(metric)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise RunTableError(f"{path}: {mode} {metric} must be a number, got {value!r}")


def _independent(key: str) -> bool:
    return key_matches(key, RESULT_INDEPENDENT)


def _config_key(run: Run) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in run.config.items() if not _independent(k)))


def _differing(runs: Sequence[Run]) -> list[str]:
    """Config keys (other than result-independent ones) whose values are not the same in all ``runs``."""
    keys = sorted({k for run in runs for k in run.config if not _independent(k)})
    missing = object()
    return [k for k in keys if len({repr(run.config.get(k, missing)) for run in runs}) > 1]


def _name_label(runs: Sequence[Run]) -> str:
    """The common start of the run folder names, e.g. star_0, star_1 -> "star"."""
    names = [run.path.resolve().name for run in runs]
    common = os.path.commonprefix(names).rstrip("_-. ")
    return common or names[0]


def build_table(runs: Sequence[Run], group_by: Sequence[str] = ()) -> RunTable:
    """Group ``runs`` into rows (see the module docstring); two runs of one row with the same seed are an error."""
    if not runs:
        raise RunTableError("no run folders given")
    for key in group_by:
        lacking = [str(run.path) for run in runs if key not in run.config]
        if lacking:
            raise RunTableError(f"--group-by {key}: no such config key in {lacking[0]}/{CONFIG_FILE}")
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        row_key = tuple(repr(run.config[k]) for k in group_by) if group_by else _config_key(run)
        groups.setdefault((run.split, row_key), []).append(run)
    rows, notes, labels = [], [], set()
    for members in groups.values():
        seeds: dict[str, Path] = {}
        for run in members:
            if repr(run.seed) in seeds:
                raise RunTableError(
                    f"{seeds[repr(run.seed)]} and {run.path} are the same configuration with the same seed "
                    f"({run.seed}); pass one of them"
                )
            seeds[repr(run.seed)] = run.path
        if group_by:
            label = ", ".join(f"{k}={members[0].config[k]}" for k in group_by)
            averaged = [k for k in _differing(members) if k != "seed"]
            if averaged:
                notes.append(f"row {label}: averages runs that also differ in {', '.join(averaged)}")
        else:
            label = _name_label(members)
        unique, n = label, 2
        while unique in labels:
            unique, n = f"{label} #{n}", n + 1
        labels.add(unique)
        rows.append(Row(unique, members))
    if not group_by and len(rows) > 1:
        differ = [k for k in _differing([row.runs[0] for row in rows]) if k != "seed"]
        if differ:
            notes.append(
                "rows differ in: "
                + "; ".join(
                    f"{k} ({', '.join(f'{row.label}: {row.runs[0].config.get(k)}' for row in rows)})" for k in differ
                )
            )
    modes = list(dict.fromkeys(mode for run in runs for mode in run.metrics["modes"]))
    return RunTable(rows, modes, notes)


# ----------------------------------------------------------------------------- formatting


def _header(table: RunTable) -> list[str]:
    return ["config", "dataset", "protocol", "n", "seeds", *(f"{mode} {m}" for mode in table.modes for m in METRICS)]


def _fixed_cells(row: Row) -> list[str]:
    dataset, protocol, rerank = row.split
    seeds = ",".join(str(run.seed) for run in row.runs)
    return [row.label, dataset, protocol + (" + re-ranking" if rerank else ""), str(len(row.runs)), seeds]


def _mean_std(stats: tuple[float, float | None, int] | None, pm: str) -> str:
    if stats is None:
        return "-"
    mean, std, _ = stats
    return f"{mean:.2f}" if std is None else f"{mean:.2f}{pm}{std:.2f}"


def _markdown(table: RunTable) -> str:
    header = _header(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        cells = [_mean_std(row.stats(mode, m), " ± ") for mode in table.modes for m in METRICS]
        lines.append("| " + " | ".join(_fixed_cells(row) + cells) + " |")
    return "\n".join(lines)


def _csv(table: RunTable) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    metric_columns = [f"{mode} {m} {part}" for mode in table.modes for m in METRICS for part in ("mean", "std")]
    writer.writerow(_header(table)[:5] + metric_columns)
    for row in table.rows:
        cells = []
        for mode in table.modes:
            for m in METRICS:
                stats = row.stats(mode, m)
                mean, std = (None, None) if stats is None else stats[:2]
                cells += ["" if mean is None else f"{mean:.4f}", "" if std is None else f"{std:.4f}"]
        writer.writerow(_fixed_cells(row) + cells)
    return buffer.getvalue().rstrip("\n")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    ">": r"$>$",
    "<": r"$<$",
}


def _latex_text(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text.replace("->", "\x00")).replace("\x00", r"$\to$")


def _latex(table: RunTable) -> str:
    header = _header(table)
    lines = [
        r"\begin{tabular}{" + "lllrl" + "r" * (len(header) - 5) + "}",
        r"\hline",
        " & ".join(_latex_text(h) for h in header) + r" \\",
        r"\hline",
    ]
    for row in table.rows:
        cells = [_mean_std(row.stats(mode, m), r" \pm ") for mode in table.modes for m in METRICS]
        cells = [c if c == "-" else f"${c}$" for c in cells]
        lines.append(" & ".join([_latex_text(c) for c in _fixed_cells(row)] + cells) + r" \\")
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines)


def format_run_table(table: RunTable, fmt: str = "markdown") -> str:
    """``table`` as markdown (mean ± std in %), csv (mean and std columns) or latex (a tabular)."""
    formatters = {"markdown": _markdown, "csv": _csv, "latex": _latex}
    if fmt not in formatters:
        raise RunTableError(f"unknown table format {fmt!r}; choose one of {', '.join(TABLE_FORMATS)}")
    return formatters[fmt](table)


def run_table(
    run_dirs: Sequence[str | os.PathLike[str]], fmt: str = "markdown", group_by: Sequence[str] = ()
) -> tuple[str, list[str]]:
    """``star table``: (the formatted table of ``run_dirs``, notes for the user)."""
    table = build_table([read_run(d) for d in run_dirs], group_by)
    return format_run_table(table, fmt), table.notes


__all__ = [
    "Run",
    "Row",
    "RunTable",
    "RunTableError",
    "read_run",
    "build_table",
    "format_run_table",
    "run_table",
    "TABLE_FORMATS",
    "RESULT_INDEPENDENT",
]
