"""Ratio table of a pytest-benchmark JSON file of bench_ops.py.

    python benchmarks/report.py ops.json [more.json ...] [--markdown]

Each row is one op, pass and device; times are the median over rounds, and
every ratio is "other implementation / fused" (compare only files of one run
on one machine). On CUDA, "fused GB/s" is the pass's compulsory bytes over the
fused time, and "% copy" that as a fraction of the device's measured
device-to-device copy bandwidth (bytes read + written).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def rows(benchmarks: list[dict]) -> list[dict]:
    table: dict[tuple, dict] = defaultdict(dict)
    for bench in benchmarks:
        info = bench["extra_info"]
        if "impl" not in info:
            continue
        key = (info["op"], info["pass_"], info["device"])
        table[key][info["impl"]] = bench["stats"]["median"] * 1e3
        if "peak_extra_mib" in info:
            table[key][f"{info['impl']}_mib"] = info["peak_extra_mib"]
        if info["impl"] == "fused" and "bytes" in info:
            gbps = info["bytes"] / bench["stats"]["median"] / 1e9
            table[key]["fused GB/s"] = gbps
            table[key]["% copy"] = 100 * gbps / info["copy_gbps"]
    out = []
    for (op, pass_, device), times in sorted(table.items()):
        row = {"op": op, "pass": pass_, "device": device, **times}
        for other in ("reference", "compiled", "pyg_gatconv"):
            if other in times and "fused" in times:
                row[f"{other}/fused"] = times[other] / times["fused"]
        out.append(row)
    return out


COLUMNS = [
    ("op", "{}"),
    ("pass", "{}"),
    ("device", "{}"),
    ("fused", "{:.3f}"),
    ("reference", "{:.3f}"),
    ("reference/fused", "{:.2f}x"),
    ("compiled", "{:.3f}"),
    ("compiled/fused", "{:.2f}x"),
    ("pyg_gatconv", "{:.3f}"),
    ("pyg_gatconv/fused", "{:.2f}x"),
    ("fused_mib", "{:.1f}"),
    ("reference_mib", "{:.1f}"),
    ("compiled_mib", "{:.1f}"),
    ("pyg_gatconv_mib", "{:.1f}"),
    ("fused GB/s", "{:.0f}"),
    ("% copy", "{:.0f}%"),
]


def format_table(table: list[dict], markdown: bool) -> str:
    present = [(name, fmt) for name, fmt in COLUMNS if any(name in row for row in table)]
    header = [
        name + (" ms" if name in ("fused", "reference", "compiled", "pyg_gatconv") else "") for name, _ in present
    ]
    body = [[fmt.format(row[name]) if name in row else "-" for name, fmt in present] for row in table]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    fmt_line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False))  # noqa: E731
    return "\n".join([fmt_line(header), *(fmt_line(r) for r in body)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_files", nargs="+", metavar="json_file")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    benchmarks = []
    for path in args.json_files:
        with open(path) as f:
            data = json.load(f)
        machine = data.get("machine_info", {})
        print(
            f"# {path}: {machine.get('cpu', {}).get('brand_raw', '?')}, {machine.get('python_version', '?')}, "
            f"{data.get('datetime', '?')}"
        )
        benchmarks += data["benchmarks"]
    print(format_table(rows(benchmarks), args.markdown))


if __name__ == "__main__":
    main()
