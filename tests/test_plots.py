"""cmc.png: the curve data come from the metrics, the file is a real PNG, every metrics.json gets one."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from star.engine import evaluate_features
from star.reports import Features, write_metrics
from star.reports.cmc_plot import CMC_PLOT_FILE, PLOT_RANKS, cmc_curves, write_cmc_plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def metrics(cmc_a, cmc_b) -> dict:
    return {
        "dataset": "synthetic",
        "protocol": "hitsz-vcm",
        "modes": {
            "IR->RGB": {"R1": cmc_a[0], "mAP": 0.4321, "mINP": 0.1234, "cmc": cmc_a},
            "RGB->IR": {"R1": cmc_b[0], "mAP": 0.5, "mINP": None, "cmc": cmc_b},
        },
    }


def test_curve_data_come_from_the_metrics():
    a = [i / 30 for i in range(1, 31)]  # 30 ranks: only the first 20 are plotted
    b = [0.5, None, 1.0]  # a NaN in metrics.json is null
    curves = cmc_curves(metrics(a, b))
    assert [c.mode for c in curves] == ["IR->RGB", "RGB->IR"]
    assert curves[0].ranks == tuple(range(1, PLOT_RANKS + 1))
    assert curves[0].cmc == pytest.approx([100 * v for v in a[:PLOT_RANKS]])
    assert curves[1].ranks == (1, 2, 3) and curves[1].cmc[0] == 50.0 and math.isnan(curves[1].cmc[1])
    assert curves[0].label == "IR->RGB: R1 3.33, mAP 43.21, mINP 12.34"
    assert curves[1].label == "RGB->IR: R1 50.00, mAP 50.00, mINP n/a"


def test_write_cmc_plot_is_a_png_of_sensible_size_written_atomically(tmp_path):
    path = write_cmc_plot(metrics([0.2, 0.6, 1.0], [0.1, 0.3, 0.9]), tmp_path / "cmc.png")
    width, height = png_size(path)
    assert 400 <= width <= 2000 and 300 <= height <= 2000
    assert path.stat().st_size > 10_000  # axes, two curves and a legend, not an empty canvas
    assert [p.name for p in tmp_path.iterdir()] == ["cmc.png"]


def _line_row(path) -> float:
    """Mean image row of the long horizontal runs of matplotlib's first colour (C0 = #1f77b4)."""
    import matplotlib.image

    rgb = (matplotlib.image.imread(path)[..., :3] * 255).round().astype(int)
    blue = np.all(np.abs(rgb - np.array([0x1F, 0x77, 0xB4])) <= 12, axis=-1)
    rows = np.flatnonzero(blue.sum(axis=1) > rgb.shape[1] // 3)
    assert len(rows), "no long line of the curve colour"
    return float(rows.mean())


def test_curves_are_drawn_where_the_data_say(tmp_path):
    rows = {}
    for level in (0.25, 0.75):
        m = {"modes": {"A": {"R1": level, "mAP": level, "mINP": level, "cmc": [level] * 20}}}
        rows[level] = _line_row(write_cmc_plot(m, tmp_path / f"{level}.png"))
    # a flat CMC at 75 % is drawn higher (smaller row) than one at 25 %, by about half the axes height
    assert rows[0.25] - rows[0.75] > 100


def _random_features(g: torch.Generator, n: int, camera: int, prefix: str) -> Features:
    """``n`` random unit embeddings of 3 identities (pid i % 3), all on camera and modality ``camera``."""
    return Features(
        torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=1),
        np.arange(n) % 3,
        np.full(n, camera, dtype=np.int64),
        np.full(n, camera, dtype=np.int64),
        [f"{prefix}{i}" for i in range(n)],
    )


def test_every_metrics_json_gets_a_cmc_png_beside_it(tmp_path):
    g = torch.Generator().manual_seed(0)
    q = _random_features(g, 6, 0, "q")
    gal = _random_features(g, 9, 1, "g")
    result = evaluate_features(q, gal, protocol="hitsz-vcm", dataset="synthetic")
    written = write_metrics(result, tmp_path / "eval" / "metrics.json")
    png = tmp_path / "eval" / CMC_PLOT_FILE
    assert png_size(png)[0] > 0
    saved = json.loads(written.read_text())
    curves = cmc_curves(saved)
    assert [c.mode for c in curves] == list(result.results)
    for curve in curves:
        assert curve.cmc == pytest.approx([100 * float(v) for v in result.results[curve.mode].cmc[:PLOT_RANKS]])


@pytest.mark.slow  # fresh interpreters importing star: 4-5 s
def test_import_star_stays_light_and_a_missing_matplotlib_only_warns(tmp_path):
    script = f"""
import sys, warnings
import star, star.reports.cmc_plot as plot
assert "matplotlib" not in sys.modules, "matplotlib imported eagerly"
sys.modules["matplotlib"] = None  # as if not installed
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert plot.write_cmc_plot({{"modes": {{}}}}, {str(tmp_path / "x.png")!r}) is None
assert any("matplotlib is not installed" in str(w.message) for w in caught), caught
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert not (tmp_path / "x.png").exists()
