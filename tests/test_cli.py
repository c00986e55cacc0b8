"""`star train / eval / extract / visrank / demo` through star.cli.main, and the `star` console script.

One tiny run (32x16 frames, 4-frame tracklets, resnet18 without pretrained weights,
1 epoch of 2 iterations on the CPU, one torch thread) is trained once per module and
shared by the eval / extract / visrank tests; the demo trains twice more, as small.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import star
from star.cli import main
from star.config import config_from_dict, load_config, read_run_info
from star.data.synthetic import MARKER
from star.demo import DEMO_CONFIG, demo_config
from star.engine.inference import run_config_from_checkpoint
from tiny_run import subprocess_env

REPO = Path(__file__).resolve().parent.parent
MODES = ("IR->RGB", "RGB->IR")

# The tiny run: most settings in the file, the rest as key=value overrides.
TINY_YAML = """\
seed: 0
data:
  dataset: synthetic
  height: 32
  width: 16
  num_ids: 2
  num_per_modality: 1
  num_workers: 0
  batches_per_epoch: 2
  synthetic: {ids: 12, tracklets: 2, cameras: 2, min_frames: 12, max_frames: 13, height: 32, width: 16}
model:
  seq_len: 4
  backbone: {name: resnet18, pretrained: null}
optim: {epochs: 3, warmup_epochs: 0, milestones: [1], lr: 0.01}
train: {device: cpu, eval_period: 0, log_period: 1, tensorboard: false, progress: true}
eval: {visrank_queries: 0}
"""

# `star demo` made tiny (the packaged synthetic.yaml is a few minutes of CPU training).
DEMO_TINY = [
    "optim.epochs=1",
    "data.batches_per_epoch=2",
    "data.num_workers=0",
    "train.progress=false",
    "train.tensorboard=false",
    "model.backbone.name=resnet18",
    "data.height=32",
    "data.width=16",
    "model.seq_len=4",
    "data.num_ids=2",
    "data.num_per_modality=1",
    "eval.visrank_queries=2",
    "data.synthetic={ids: 8, tracklets: 2, cameras: 2, min_frames: 12, max_frames: 13, height: 32, width: 16}",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def cli(capsys, *argv) -> tuple[int, str, str]:
    """``star.cli.main(argv)``: (exit code, stdout, stderr) of this call only."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_error(rc: int, err: str, *names, one_line: bool = True) -> str:
    """A failed command: nonzero exit code, no traceback, ``error: ...`` naming each of ``names``
    on the first stderr line (and nothing else on stderr with ``one_line``); returns that line."""
    assert rc != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("error: "), err
    if one_line:
        assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], (name, err)
    return lines[0]


def assert_table(text: str, metrics: dict) -> None:
    """The printed metrics table has one row per mode with metrics.json's R1 / mAP in percent."""
    assert re.search(r"^Mode\s+R1\s+R5\s+R10\s+R20\s+mAP\s+mINP$", text, re.M), text
    for mode in MODES:
        m = metrics["modes"][mode]
        row = re.search(rf"^{re.escape(mode)}\s+(\S+)\s+\S+\s+\S+\s+\S+\s+(\S+)\s+\S+$", text, re.M)
        assert row, (mode, text)
        assert row.groups() == (f"{100 * m['R1']:.2f}", f"{100 * m['mAP']:.2f}")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def run(synth_root, tmp_path_factory):
    """``star train --config tiny.yaml output_dir=... data.root=... optim.epochs=1 train.progress=false``."""
    base = tmp_path_factory.mktemp("run")
    config = base / "tiny.yaml"
    config.write_text(TINY_YAML)
    out_dir = base / "run"
    overrides = [f"output_dir={out_dir}", f"data.root={synth_root}", "optim.epochs=1", "train.progress=false"]
    argv = ["train", "--config", str(config), *overrides]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(argv)
    assert rc == 0, stderr.getvalue()
    return {
        "config": config,
        "overrides": overrides,
        "argv": argv,
        "out": out_dir,
        "root": synth_root,
        "stdout": stdout.getvalue(),
        "best": out_dir / "best.pt",
    }


# ----------------------------------------------------------------------------- star train


def test_train_writes_outputs_and_prints_table(run):
    out = run["out"]
    for name in ("last.pt", "best.pt", "metrics.json", "config.yaml", "log.jsonl"):
        assert (out / name).is_file(), name
    metrics = read_json(out / "metrics.json")
    assert set(metrics["modes"]) == set(MODES)
    printed = run["stdout"]
    assert "[epoch 1 iter 2/2]" in printed and "[epoch 2" not in printed  # the overrides took effect
    assert_table(printed, metrics)
    mean = sum(metrics["modes"][m]["mAP"] for m in MODES) / 2
    assert f"done: mean mAP {mean:.2%} after epoch 1; outputs in {out}" in printed


def test_train_rerun_reports_finished_run_without_training(run, capsys):
    out = run["out"]
    stamps = {name: (out / name).stat().st_mtime_ns for name in ("last.pt", "best.pt", "metrics.json")}
    log_lines = (out / "log.jsonl").read_text().count("\n")
    rc, printed, _ = cli(capsys, *run["argv"])
    assert rc == 0
    assert "training already finished (1/1 epochs)" in printed
    assert "[epoch" not in printed and "evaluating" not in printed
    mean = sum(m["mAP"] for m in read_json(out / "metrics.json")["modes"].values()) / 2
    assert f"done: mean mAP {mean:.2%} after epoch 1" in printed
    assert {name: (out / name).stat().st_mtime_ns for name in stamps} == stamps
    assert '"type": "train"' not in "\n".join((out / "log.jsonl").read_text().splitlines()[log_lines:])


def test_saved_config_records_run_info_and_loads_back(run):
    saved = run["out"] / "config.yaml"
    info = read_run_info(saved)
    assert info["star_version"] == star.__version__
    assert re.fullmatch(r"unknown|[0-9a-f]{40}(-dirty)?", info["git_sha"]), info["git_sha"]
    expected = load_config(run["config"], run["overrides"])
    assert load_config(saved) == expected
    assert expected.optim.epochs == 1 and expected.data.root == str(run["root"])
    # ... and the config that `star eval --checkpoint` takes from the checkpoint is the same one
    assert config_from_dict(run_config_from_checkpoint(run["best"])) == expected


# ----------------------------------------------------------------------------- eval / extract / visrank


def test_eval_checkpoint_both_modes_same_metrics_as_training(run, tmp_path, capsys):
    rc, printed, err = cli(capsys, "eval", "--checkpoint", run["best"], "--output-dir", tmp_path / "eval")
    assert rc == 0, err
    metrics = read_json(tmp_path / "eval" / "metrics.json")
    assert set(metrics["modes"]) == set(MODES)
    assert metrics == read_json(run["out"] / "metrics.json")  # same model, same data: same numbers
    assert_table(printed, metrics)
    assert f"wrote {tmp_path / 'eval' / 'metrics.json'}" in printed


def test_extract_then_eval_features_same_metrics(run, tmp_path, capsys):
    npz = tmp_path / "f.npz"
    rc, printed, err = cli(capsys, "extract", "--checkpoint", run["best"], "--out", npz)
    assert rc == 0, err
    training = read_json(run["out"] / "metrics.json")
    nq, ng = training["num_query"], training["num_gallery"]
    assert f"wrote {npz}: query {nq} x 512, gallery {ng} x 512" in printed

    with np.load(npz, allow_pickle=False) as z:
        assert sorted(map(str, z["splits"])) == ["gallery", "query"]
        for split, n, modality in (("query", nq, 0), ("gallery", ng, 1)):  # HITSZ-VCM layout: IR query, RGB gallery
            assert z[f"{split}_feats"].shape == (n, 512) and z[f"{split}_feats"].dtype == np.float32
            for field in ("pids", "camids", "modalities"):
                assert z[f"{split}_{field}"].shape == (n,) and z[f"{split}_{field}"].dtype == np.int64
            assert (z[f"{split}_modalities"] == modality).all()
            paths = [str(p) for p in z[f"{split}_paths"]]
            assert len(paths) == n and all(Path(p).is_file() for p in paths)

    rc, printed, err = cli(
        capsys, "eval", "--config", run["out"] / "config.yaml", "--features", npz, "--output-dir", tmp_path / "eval"
    )
    assert rc == 0, err
    metrics = read_json(tmp_path / "eval" / "metrics.json")
    assert metrics == training
    assert_table(printed, metrics)


def test_visrank_writes_decodable_pictures(run, tmp_path, capsys):
    out = tmp_path / "V"
    rc, printed, err = cli(capsys, "visrank", "--checkpoint", run["best"], "--out", out, "--num-queries", 2)
    assert rc == 0, err
    assert f"wrote 2 rank-list pictures to {out}" in printed
    pictures = sorted(out.glob("*.png"))
    assert len(pictures) == 2
    for picture in pictures:
        image = cv2.imread(str(picture), cv2.IMREAD_COLOR)
        assert image is not None and image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0


# ----------------------------------------------------------------------------- star demo


def test_demo_config_is_the_packaged_yaml(tmp_path, monkeypatch):
    assert DEMO_CONFIG == Path(star.__file__).resolve().parent / "config" / "synthetic.yaml"
    packaged = load_config(DEMO_CONFIG)
    cfg = demo_config(tmp_path / "out", tmp_path / "data", ["seed=3"])
    assert (cfg.output_dir, cfg.data.root, cfg.seed) == (str(tmp_path / "out"), str(tmp_path / "data"), 3)
    assert (
        dataclasses.replace(
            cfg,
            output_dir=packaged.output_dir,
            seed=packaged.seed,
            data=dataclasses.replace(cfg.data, root=packaged.data.root),
        )
        == packaged
    )
    assert cfg.data.dataset == "synthetic" and cfg.model.backbone.name == "resnet18"
    assert load_config(REPO / "configs" / "synthetic.yaml") == packaged  # the repo's copy is the same config

    monkeypatch.setenv("STAR_CACHE_DIR", str(tmp_path / "cache"))
    default = demo_config()
    assert default.data.root == str(tmp_path / "cache" / "synthetic") and default.output_dir == "runs/demo"


@pytest.mark.slow
def test_demo_generates_the_dataset_once_trains_and_prints_table(tmp_path, capsys):
    data = tmp_path / "cache" / "synthetic"  # missing: the demo generates it
    rc, printed, err = cli(capsys, "demo", "--out", tmp_path / "d1", "--data", data, *DEMO_TINY)
    assert rc == 0, err
    assert f"generating the synthetic dataset in {data}" in printed
    assert (data / MARKER).is_file()
    assert read_json(data / MARKER)["ids"] == 8  # data.synthetic override used
    metrics = read_json(tmp_path / "d1" / "metrics.json")
    assert_table(printed, metrics)
    assert re.search(r"demo finished in \d+ s: mean mAP [\d.]+%", printed)
    assert str(tmp_path / "d1") in printed
    assert len(list((tmp_path / "d1" / "visrank").glob("*.png"))) == 2
    assert (tmp_path / "d1" / "best.pt").is_file() and (tmp_path / "d1" / "config.yaml").is_file()

    # A second demo with another run folder reuses the cached dataset.
    files = [data / MARKER, *sorted(data.rglob("*.jpg"))[:3]]
    stamps = [f.stat().st_mtime_ns for f in files]
    rc, printed, err = cli(capsys, "demo", "--out", tmp_path / "d2", "--data", data, *DEMO_TINY)
    assert rc == 0, err
    assert "generating" not in printed and "demo finished" in printed
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert (tmp_path / "d2" / "metrics.json").is_file()


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("where", ["file", "override"])
def test_error_unknown_config_key(run, tmp_path, capsys, where):
    if where == "file":
        config = tmp_path / "typo.yaml"
        config.write_text(TINY_YAML.replace("lr: 0.01", "lrr: 0.01"))
        argv = ["train", "--config", config]
    else:
        argv = ["train", "--config", run["config"], f"output_dir={tmp_path / 'out'}", "optim.lrr=0.01"]
    rc, _, err = cli(capsys, *argv)
    line = assert_error(rc, err, "optim.lrr", "valid keys", "lr, momentum, weight_decay")
    assert (str(config) if where == "file" else "override 'optim.lrr=0.01'") in line
    assert not (tmp_path / "out").exists()


def test_error_unknown_nested_model_key_in_override(run, tmp_path, capsys):
    rc, _, err = cli(
        capsys, "train", "--config", run["config"], f"output_dir={tmp_path / 'out'}", "model.backbone.nam=resnet50"
    )
    assert_error(rc, err, "model.backbone.nam", "valid keys", "name, pretrained")


def test_error_missing_config_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    rc, _, err = cli(capsys, "train", "--config", missing)
    assert_error(rc, err, "config file not found", missing)


@pytest.mark.parametrize("command", ["eval", "extract", "visrank"])
def test_error_missing_checkpoint(tmp_path, capsys, command):
    missing = tmp_path / "best.pt"
    extra = {"eval": [], "extract": ["--out", tmp_path / "f.npz"], "visrank": ["--out", tmp_path / "V"]}[command]
    rc, _, err = cli(capsys, command, "--checkpoint", missing, *extra)
    assert_error(rc, err, "checkpoint not found", missing)
    assert not (tmp_path / "f.npz").exists() and not (tmp_path / "V").exists()


def random_file(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def test_error_random_file_as_checkpoint(tmp_path, capsys):
    bogus = random_file(tmp_path / "model.pt")
    rc, _, err = cli(capsys, "eval", "--checkpoint", bogus)
    assert_error(rc, err, bogus, "checkpoint", one_line=False)


def test_error_random_file_as_checkpoint_is_one_line(tmp_path, capsys):
    bogus = random_file(tmp_path / "model.pt")
    rc, _, err = cli(capsys, "eval", "--checkpoint", bogus)
    assert_error(rc, err, bogus, "checkpoint")


@pytest.mark.parametrize("content", [{"weights": [1, 2]}, [1, 2, 3]], ids=["dict", "list"])
def test_error_torch_file_that_is_not_a_star_checkpoint(tmp_path, capsys, content):
    other = tmp_path / "other.pt"
    torch.save(content, other)
    rc, _, err = cli(capsys, "extract", "--checkpoint", other, "--out", tmp_path / "f.npz")
    assert_error(rc, err, other, "is not a star training checkpoint")


def test_error_wrong_data_root(run, tmp_path, capsys):
    missing = tmp_path / "no-such-dataset"
    # eval: the checkpoint's config with another data.root
    rc, _, err = cli(capsys, "eval", "--checkpoint", run["best"], f"data.root={missing}")
    assert_error(rc, err, missing, "not found", one_line=False)  # line 1 names the path, then the expected layout
    # train on a real dataset name: nothing is generated and output_dir is not created
    rc, _, err = cli(
        capsys,
        "train",
        "--config",
        run["config"],
        "data.dataset=hitsz-vcm",
        f"data.root={missing}",
        f"output_dir={tmp_path / 'out'}",
    )
    assert_error(rc, err, missing, "HITSZ-VCM layout not found", one_line=False)
    # train on the synthetic dataset with a root that holds something else: not overwritten
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a dataset\n")
    rc, _, err = cli(capsys, "train", "--config", run["config"], f"data.root={junk}", f"output_dir={tmp_path / 'out'}")
    assert_error(rc, err, junk, one_line=False)
    assert sorted(p.name for p in junk.iterdir()) == ["notes.txt"]
    assert not missing.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["eval", "visrank"])
def test_error_features_without_config(run, tmp_path, capsys, command):
    npz = tmp_path / "f.npz"
    npz.write_bytes(b"")  # never read: the missing --config is reported first
    extra = ["--out", tmp_path / "V"] if command == "visrank" else []
    rc, _, err = cli(capsys, command, "--features", npz, *extra)
    assert_error(rc, err, "--config")


def test_error_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval"])  # neither --checkpoint nor --features
    assert exc.value.code == 2
    assert "--checkpoint" in capsys.readouterr().err


# ---------------------------------------------------------------- eval / extract / visrank inputs and outputs


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(MODES)]


def test_eval_honours_neck_feat_and_rejects_architecture_overrides(run, tmp_path, capsys):
    # The tiny run's BN neck has hardly moved from identity after 2 steps, so the tables may agree;
    # the embeddings themselves must not.
    feats = {}
    for neck in ("after", "before"):
        rc, _, err = cli(
            capsys, "extract", "--checkpoint", run["best"], f"model.neck_feat={neck}", "--out", tmp_path / f"{neck}.npz"
        )
        assert rc == 0, err
        with np.load(tmp_path / f"{neck}.npz") as z:
            feats[neck] = z["query_feats"]
    assert not np.array_equal(feats["after"], feats["before"])
    rc, table, err = cli(capsys, "eval", "--checkpoint", run["best"], "model.neck_feat=before")
    assert rc == 0, err
    assert len(_table_rows(table)) == len(MODES)
    rc, _, err = cli(capsys, "eval", "--checkpoint", run["best"], "model.backbone.name=resnet34", "model.seq_len=6")
    assert_error(
        rc,
        err,
        run["best"],
        "model.backbone.name: checkpoint 'resnet18', now 'resnet34'",
        "model.seq_len: checkpoint 4, now 6",
        "model.neck_feat",
    )
    other = tmp_path / "other.yaml"
    other.write_text(TINY_YAML.replace("name: resnet18", "name: resnet34"))
    rc, _, err = cli(
        capsys,
        "extract",
        "--config",
        other,
        "--checkpoint",
        run["best"],
        *run["overrides"][1:2],
        "--out",
        tmp_path / "f.npz",
    )
    assert_error(rc, err, "model.backbone.name")
    assert not (tmp_path / "f.npz").exists()


@pytest.mark.parametrize("defect", ["missing-key", "truncated", "garbage"])
def test_eval_bad_features_file_is_one_error_line(run, tmp_path, capsys, defect):
    good = tmp_path / "good.npz"
    rc, _, err = cli(capsys, "extract", "--checkpoint", run["best"], "--out", good)
    assert rc == 0, err
    bad = tmp_path / "bad.npz"
    if defect == "missing-key":
        arrays = dict(np.load(good))
        del arrays["gallery_pids"]
        np.savez(bad, **arrays)
    elif defect == "truncated":
        bad.write_bytes(good.read_bytes()[:500])
    else:
        random_file(bad)
    for command, extra in (("eval", []), ("visrank", ["--out", tmp_path / "V"])):
        rc, _, err = cli(capsys, command, "--config", run["out"] / "config.yaml", "--features", bad, *extra)
        assert_error(rc, err, bad, *(["gallery_pids"] if defect == "missing-key" else []))


def test_features_of_another_dataset_are_refused_naming_both(run, tmp_path, capsys):
    good = tmp_path / "good.npz"
    rc, _, err = cli(capsys, "extract", "--checkpoint", run["best"], "--out", good)
    assert rc == 0, err
    arrays = dict(np.load(good))
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps({**meta, "dataset": "bupt"}))
    other = tmp_path / "other.npz"
    np.savez(other, **arrays)
    for command, extra in (("eval", []), ("visrank", ["--out", tmp_path / "V"])):
        rc, _, err = cli(capsys, command, "--config", run["out"] / "config.yaml", "--features", other, *extra)
        assert_error(rc, err, other, "'bupt'", "'synthetic'")


def test_output_path_errors_name_the_path(run, tmp_path, capsys):
    folder = tmp_path / "existing"
    folder.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, _, err = cli(capsys, "extract", "--checkpoint", run["best"], "--out", folder)
    assert_error(rc, err, folder, "is an existing folder")
    rc, _, err = cli(capsys, "extract", "--checkpoint", run["best"], "--out", afile / "x.npz")
    assert_error(rc, err, afile, "is a file, not a folder")
    rc, _, err = cli(capsys, "visrank", "--checkpoint", run["best"], "--out", afile)
    assert_error(rc, err, afile, "is a file")
    rc, _, err = cli(capsys, "eval", "--checkpoint", run["best"], "--output-dir", afile)
    assert_error(rc, err, afile, "is a file, not a folder")
    assert afile.read_text() == "x" and list(folder.iterdir()) == []


def test_a_bug_shows_its_traceback_and_star_debug_shows_user_errors_too(tmp_path, capsys, monkeypatch):
    from star.cli import exit_status

    def broken():
        raise ValueError("a bug, not a user error")

    with pytest.raises(ValueError, match="a bug"):
        exit_status(broken)
    monkeypatch.setenv("STAR_DEBUG", "1")
    missing = tmp_path / "nope.yaml"
    rc, _, err = cli(capsys, "train", "--config", missing)
    assert rc == 1 and "Traceback" in err and err.strip().splitlines()[-1] == f"error: config file not found: {missing}"


def test_diverged_training_exits_3_with_one_line(capsys):
    from star.cli import exit_status
    from star.engine import TrainingDiverged

    def diverge():
        raise TrainingDiverged(1, 2, 1, {"loss": float("nan")}, None)

    rc = exit_status(diverge)
    assert_error(rc, capsys.readouterr().err, "training diverged", "epoch 1, iteration 2")
    assert rc == 3


def test_eval_bad_device_is_one_error_line(run, capsys):
    rc, _, err = cli(capsys, "eval", "--checkpoint", run["best"], "train.device=gpu0")
    assert_error(rc, err, "train.device", "'gpu0'")


def train_cli(capsys, run, out, *overrides) -> tuple[int, str, str]:
    """``cli``: ``star train`` on the module run's config and dataset into ``out``, ``overrides`` appended."""
    return cli(capsys, "train", "--config", run["config"], f"output_dir={out}", f"data.root={run['root']}", *overrides)


# Library settings errors are StarErrors (the CLI has no per-command exception lists): one line each.
@pytest.mark.parametrize("device", ["gpu0", *([] if torch.cuda.is_available() else ["cuda"])])
def test_train_bad_device_is_one_error_line(run, tmp_path, capsys, device):
    rc, _, err = train_cli(capsys, run, tmp_path / "out", f"train.device={device}")
    assert_error(rc, err, "train.device", repr(device))


@pytest.mark.parametrize(
    "overrides, names",
    [
        (["model.backbone.pretrained=/nope/w.pth", "model.backbone.require_pretrained=true"], ["/nope/w.pth"]),
        (["data.num_ids=50"], ["at least 50 identities", "data.num_ids"]),
    ],
)
def test_train_bad_weights_or_batch_size_is_one_error_line(run, tmp_path, capsys, overrides, names):
    rc, _, err = train_cli(capsys, run, tmp_path / "out", *overrides)
    assert_error(rc, err, *names)


def test_train_output_dir_that_is_a_file_is_one_error_line(run, tmp_path, capsys):
    out = tmp_path / "afile"
    out.write_text("x")
    rc, _, err = train_cli(capsys, run, out)
    assert_error(rc, err, "output_dir", out)


@pytest.mark.parametrize(
    "argv, names",
    [
        (["--ids", "1"], ["ids = 1", "[2, 9999]"]),
        (["--min-frames", "9", "--max-frames", "4"], ["min_frames <= max_frames"]),
    ],
)
def test_synth_bad_setting_is_one_error_line(tmp_path, capsys, argv, names):
    rc, _, err = cli(capsys, "synth", "--out", tmp_path / "S", *argv)
    assert_error(rc, err, *names)
    assert not (tmp_path / "S").exists()


def test_synth_out_that_is_a_file_is_one_error_line(tmp_path, capsys):
    out = tmp_path / "afile"
    out.write_text("x")
    rc, _, err = cli(capsys, "synth", "--out", out)
    assert_error(rc, err, out, "not a directory")


@pytest.mark.parametrize(
    "argv, names",
    [
        (["--shard", "5/2"], ["--shard", "5/2"]),
        (["--shard", "x"], ["--shard", "'x'"]),
        (["--batch", "0"], ["batch=0"]),
    ],
)
def test_pose_bad_setting_is_one_error_line(run, tmp_path, capsys, argv, names):
    rc, _, err = cli(
        capsys, "pose", "--dataset", "synthetic", "--root", run["root"], "--out", tmp_path / "K", "--quiet", *argv
    )
    assert_error(rc, err, *names)


def test_visrank_options_are_checked_before_extraction(run, tmp_path, capsys):
    rc, _, err = cli(capsys, "visrank", "--checkpoint", run["best"], "--out", tmp_path / "V", "--topk", 0)
    assert_error(rc, err, "topk >= 1")
    assert not (tmp_path / "V").exists()


# ----------------------------------------------------------------------------- the console script


@pytest.mark.slow
def test_console_script_entry_point(tmp_path):
    exe = Path(sys.executable).with_name("star")
    if not exe.is_file():
        pytest.skip(f"no `star` console script next to {sys.executable}")
    env = subprocess_env()
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"star-reid {star.__version__}"

    missing = tmp_path / "nope.yaml"
    done = subprocess.run(
        [exe, "train", "--config", str(missing)], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == f"error: config file not found: {missing}"
    assert done.stdout == ""


@pytest.mark.slow
def test_python_dash_m_star_cli_runs_the_command(tmp_path):
    # the form torchrun launches (`torchrun ... -m star.cli train ...`)
    missing = tmp_path / "nope.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "star.cli", "train", "--config", str(missing)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and done.stderr.strip() == f"error: config file not found: {missing}"
