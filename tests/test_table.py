"""star table: runs grouped into ablation rows, mean ± std over seeds, splits by dataset/protocol, errors."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from pathlib import Path

import pytest

from star.cli import main
from star.config import RunConfig, save_run_info
from star.reports.run_table import RunTableError, build_table, format_run_table, read_run, run_table

MODES = ("IR->RGB", "RGB->IR")


def make_run(
    root: Path,
    name: str,
    *,
    seed: int = 0,
    mAP: float = 0.2,
    r1: float = 0.1,
    dataset="synthetic",
    protocol="hitsz-vcm",
    rerank=False,
    config: dict | None = None,
    modes=MODES,
) -> Path:
    """A run folder as training leaves it: config.yaml (star.config.run_info) and metrics.json."""
    out = root / name
    tree = {"output_dir": str(out), "seed": seed, "data": {"dataset": "synthetic", "root": str(root / "data")}}
    for key, value in (config or {}).items():  # "a.b": v -> nested
        node = tree
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    save_run_info(RunConfig.from_dict(tree), out)
    metrics = {
        "dataset": dataset,
        "protocol": protocol,
        "rerank": rerank,
        "modes": {
            m: {"R1": r1 + i / 100, "R5": 0.5, "R10": 0.7, "R20": 0.9, "mAP": mAP + i / 100, "mINP": 0.05, "cmc": [r1]}
            for i, m in enumerate(modes)
        },
    }
    (out / "metrics.json").write_text(json.dumps(metrics))
    return out


BASELINE = {"model.frame_correction.enabled": False, "model.sequence.enabled": False}


@pytest.fixture
def ablation(tmp_path):
    """3 seeds of STAR, 2 of the baseline (also with another loader worker count, which must not split rows)."""
    runs = [make_run(tmp_path, f"star_{s}", seed=s, mAP=m) for s, m in ((0, 0.19), (1, 0.22), (2, 0.20))]
    runs += [
        make_run(tmp_path, f"baseline_{s}", seed=s, mAP=m, config={**BASELINE, "data.num_workers": 1 + s})
        for s, m in ((0, 0.055), (1, 0.064))
    ]
    return runs


def test_seeds_of_one_config_are_one_row_with_mean_and_sample_std(ablation):
    table = build_table([read_run(p) for p in ablation])
    assert [(row.label, len(row.runs)) for row in table.rows] == [("star", 3), ("baseline", 2)]
    assert table.modes == list(MODES)
    mean, std, n = table.rows[0].stats("IR->RGB", "mAP")
    values = [19.0, 22.0, 20.0]
    assert n == 3 and mean == pytest.approx(sum(values) / 3)
    assert std == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / 2))
    assert table.rows[1].stats("RGB->IR", "mAP")[0] == pytest.approx((6.5 + 7.4) / 2)
    assert any("model.sequence.enabled" in note for note in table.notes)


def test_markdown_table(ablation):
    text, _ = run_table(ablation)
    lines = text.splitlines()
    assert lines[0].startswith("| config | dataset | protocol | n | seeds | IR->RGB R1 | IR->RGB R5 | IR->RGB mAP")
    assert len(lines) == 4
    star = lines[2].split(" | ")
    assert star[0] == "| star" and star[3:5] == ["3", "0,1,2"]
    assert "20.33 ± 1.53" in lines[2]  # IR->RGB mAP of 19, 22, 20


def test_csv_and_latex(ablation):
    text, _ = run_table(ablation, "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["config"] for r in rows] == ["star", "baseline"]
    assert float(rows[0]["IR->RGB mAP mean"]) == pytest.approx(20.3333, abs=1e-4)
    assert float(rows[1]["RGB->IR mAP std"]) == pytest.approx(math.sqrt(2 * 0.45**2), abs=1e-4)
    single, _ = run_table(ablation[:1], "csv")
    assert list(csv.DictReader(io.StringIO(single)))[0]["IR->RGB mAP std"] == ""  # one run: no std
    latex, _ = run_table(ablation, "latex")
    assert latex.startswith(r"\begin{tabular}") and latex.endswith(r"\end{tabular}")
    assert r"IR$\to$RGB mAP" in latex and r"$20.33 \pm 1.53$" in latex


def test_dataset_protocol_and_rerank_are_never_averaged_together(tmp_path):
    runs = [
        make_run(tmp_path, "a_0", seed=0, protocol="hitsz-vcm"),
        make_run(tmp_path, "a_1", seed=1, protocol="hitsz-vcm"),
        make_run(tmp_path, "b_1", seed=2, protocol="bupt-official-dropped"),
        make_run(tmp_path, "c_1", seed=3, dataset="bupt"),
        make_run(tmp_path, "d_1", seed=4, rerank=True),
    ]
    table = build_table([read_run(p) for p in runs])
    assert [len(r.runs) for r in table.rows] == [2, 1, 1, 1]
    assert {r.split for r in table.rows} == {
        ("synthetic", "hitsz-vcm", False),
        ("synthetic", "bupt-official-dropped", False),
        ("bupt", "hitsz-vcm", False),
        ("synthetic", "hitsz-vcm", True),
    }
    # --group-by cannot merge them either
    grouped = build_table([read_run(p) for p in runs], group_by=["data.dataset"])
    assert len(grouped.rows) == 4
    assert "+ re-ranking" in format_run_table(grouped)


def test_group_by_a_key_and_report_what_else_differs(ablation, tmp_path):
    extra = make_run(tmp_path, "star_lr", seed=5, config={"optim.lr": 0.5})
    table = build_table([read_run(p) for p in [*ablation, extra]], group_by=["model.sequence.enabled"])
    assert [(row.label, len(row.runs)) for row in table.rows] == [
        ("model.sequence.enabled=True", 4),
        ("model.sequence.enabled=False", 2),
    ]
    assert table.notes == ["row model.sequence.enabled=True: averages runs that also differ in optim.lr"]


def test_other_configs_are_other_rows_with_unique_labels(tmp_path):
    runs = [make_run(tmp_path / "x", "run", seed=0), make_run(tmp_path / "y", "run", seed=0, config={"optim.lr": 0.5})]
    table = build_table([read_run(p) for p in runs])
    assert [row.label for row in table.rows] == ["run", "run #2"]
    assert table.notes == ["rows differ in: optim.lr (run: 0.1, run #2: 0.5)"]


def test_errors_name_the_folder_or_file(tmp_path, ablation):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    (no_config / "metrics.json").write_text(json.dumps({"modes": {"IR->RGB": {"mAP": 0.1}}}))
    broken = make_run(tmp_path, "broken", seed=9)
    (broken / "metrics.json").write_text("{not json")
    modeless = make_run(tmp_path, "modeless", seed=9)
    (modeless / "metrics.json").write_text(json.dumps({"dataset": "synthetic"}))
    wordy = make_run(tmp_path, "wordy", seed=9)
    (wordy / "metrics.json").write_text(json.dumps({"modes": {"IR->RGB": {"mAP": "12.5%", "R1": 0.1}}}))
    flat = make_run(tmp_path, "flat", seed=9)
    (flat / "metrics.json").write_text(json.dumps({"modes": {"IR->RGB": 0.2}}))
    twin = tmp_path / "twin"
    twin.mkdir()
    for name in ("config.yaml", "metrics.json"):
        (twin / name).write_bytes((ablation[0] / name).read_bytes())
    cases = [
        ([tmp_path / "nowhere"], "run folder not found: .*nowhere"),
        ([empty], "empty holds no metrics.json"),
        ([no_config], "no_config holds no config.yaml"),
        ([broken], "cannot read metrics .*broken/metrics.json"),
        ([modeless], "modeless/metrics.json holds no per-mode metrics"),
        ([wordy], r"wordy/metrics.json: IR->RGB mAP must be a number, got '12.5%'"),
        ([flat], r"flat/metrics.json: mode 'IR->RGB' is not a mapping of metrics, got 0.2"),
        ([ablation[0], twin], "star_0 and .*twin are the same configuration with the same seed"),
        ([], "no run folders"),
    ]
    for dirs, message in cases:
        with pytest.raises(RunTableError, match=message):
            run_table(dirs)
    with pytest.raises(RunTableError, match="--group-by model.wings: no such config key"):
        run_table(ablation, group_by=["model.wings"])
    with pytest.raises(RunTableError, match="unknown table format 'html'; choose one of markdown, csv, latex"):
        run_table(ablation, "html")


def test_cli_table(ablation, tmp_path, capsys):
    assert main(["table", *map(str, ablation), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("config,dataset,protocol,n,seeds,")
    assert len(captured.out.splitlines()) == 3 and captured.err.startswith("note: rows differ in")
    assert main(["table", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: run folder not found")


def test_a_trained_runs_own_files_are_read(tmp_path):
    """config.yaml as save_run_info writes it (with its _run_ header) and metrics.json round-trip."""
    run = make_run(tmp_path, "r", seed=3, config={"model.seq_len": 6})
    loaded = read_run(run)
    assert loaded.seed == 3 and loaded.config["model.seq_len"] == 6
    assert not any(k.startswith("_run_") for k in loaded.config)
    assert copy.deepcopy(loaded.metrics)["modes"]["IR->RGB"]["mAP"] == pytest.approx(0.2)
