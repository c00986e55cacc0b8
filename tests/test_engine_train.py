"""star.engine.train: end-to-end run, checkpoints and resume, DDP, NaN guard, errors.

Everything runs on a tiny synthetic dataset (32x16 frames, 4-frame tracklets,
resnet18 without pretrained weights, a few iterations) with one torch thread.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from star.config import OptimConfig, RunConfig, load_config
from star.data import SynthConfig, generate_synthetic, train_loader
from star.data.errors import KeypointStoreError
from star.engine import Trainer, TrainingDiverged, train
from star.engine.checkpoint import (
    CHECKPOINT_VERSION,
    PRE_V3_BONE_EMBEDDING,
    CheckpointError,
    capture_rng_state,
    config_differences,
    load_checkpoint,
    preserved_rng,
    restore_rng_state,
    save_checkpoint,
)
from star.engine.checkpointer import Checkpointer
from star.engine.logs import drop_superseded, open_tensorboard, read_jsonl
from star.engine.loop import HookBase
from star.engine.schedule import build_optimizer, build_scheduler, lr_factor, param_groups
from star.engine.state import TrainingState
from star.engine.trainer import BuiltModel
from star.errors import OutputLockedError
from star.fileio import exclusive_dir_lock
from star.losses import StarLoss
from star.models import STAR
from tiny_run import SYNTH, config, deep_update, subprocess_env

TESTS = Path(__file__).resolve().parent
RUNNER = TESTS / "engine_train_runner.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def finished_run(synth_root, tmp_path_factory):
    """A 2-epoch run with pretrained backbone weights, grad clipping, TensorBoard, progress bar,
    evaluation after each epoch."""
    import torchvision

    base = tmp_path_factory.mktemp("finished")
    weights = base / "resnet18.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    cfg = RunConfig.from_dict(
        config(
            synth_root,
            base / "run",
            model={"backbone": {"pretrained": str(weights)}},
            optim={"grad_clip": 10.0},
            train={"eval_period": 1, "tensorboard": True, "progress": True},
        )
    )
    trainer = Trainer(cfg)
    summary = trainer.run()
    return cfg, trainer, summary


def test_end_to_end_run_writes_outputs(finished_run):
    cfg, trainer, summary = finished_run
    out = Path(cfg.output_dir)
    assert summary["epoch"] == 2 and summary["step"] == 4
    assert set(summary["modes"]) == {"IR->RGB", "RGB->IR"}
    assert 0 <= summary["mAP"] <= 1
    assert summary["mAP"] == pytest.approx(sum(m["mAP"] for m in summary["modes"].values()) / 2)

    metrics = json.loads((out / "metrics.json").read_text())
    for mode, m in summary["modes"].items():
        assert metrics["modes"][mode]["mAP"] == pytest.approx(m["mAP"])

    records = read_jsonl(out / "log.jsonl")
    steps = [r for r in records if r["type"] == "train"]
    assert [(r["epoch"], r["iter"], r["step"]) for r in steps] == [(1, 1, 1), (1, 2, 2), (2, 1, 3), (2, 2, 4)]
    for key in (
        "lr",
        "lr_pretrained",
        "loss",
        "loss_id",
        "loss_triplet",
        "loss_consistency",
        "time_per_iter",
        "memory_mb",
        "grad_norm",
    ):
        assert all(key in r for r in steps), key
    assert all(math.isfinite(r["loss"]) for r in steps)
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2] and evals[-1]["mAP"] == pytest.approx(summary["mAP"])
    best = max(evals, key=lambda r: r["mAP"])  # the first of equal ones: a tie does not improve
    assert summary["best_epoch"] == best["epoch"] and summary["best_mAP"] == pytest.approx(best["mAP"])
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2]
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tb").iterdir())
    assert load_config(out / "config.yaml") == cfg  # the resolved config, loadable again

    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and last["step"] == 4 and last["eval_pending"] is False
    assert states_equal(last["model"], trainer.model.state_dict())
    assert last["version"] == CHECKPOINT_VERSION and last["num_classes"] == trainer.num_classes
    assert last["config"] == cfg.to_dict()  # the typed config as it is: no num_classes in the model section
    for key in ("optimizer", "scheduler", "scaler", "sampler", "rng", "loader_generator"):
        assert key in last
    best = load_checkpoint(out / "best.pt")
    assert best["epoch"] == summary["best_epoch"]
    assert best["metrics"]["mAP"] == pytest.approx(summary["best_mAP"])
    assert not list(out.glob(".*.tmp"))


def test_pretrained_backbone_runs_at_reduced_lr(finished_run):
    cfg, trainer, _ = finished_run
    groups = {g["name"]: g for g in trainer.parts.optimizer.param_groups}
    assert set(groups) == {"new", "pretrained"}
    assert groups["pretrained"]["lr"] == pytest.approx(groups["new"]["lr"] * cfg.optim.pretrained_lr_mult)
    names = trainer.pretrained_names
    assert names and all(n.startswith("backbone.") for n in names)
    assert any(".stem" in n or "conv1" in n for n in names)  # the stems get the torchvision conv1


def test_rerun_of_finished_run_returns_its_metrics(finished_run, capsys):
    cfg, _, summary = finished_run
    out = Path(cfg.output_dir)
    n_records = len(read_jsonl(out / "log.jsonl"))
    again = train(cfg)
    assert again == summary
    assert "already finished" in capsys.readouterr().out
    assert [r["type"] for r in read_jsonl(out / "log.jsonl")[n_records:]] == []


def test_config_mismatch_with_checkpoint_is_a_clear_error(finished_run, synth_root, tmp_path):
    cfg, _, _ = finished_run
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((Path(cfg.output_dir) / "last.pt").read_bytes())
    changed = config(synth_root, out, model={"sequence": {"hidden_dim": 8}}, optim={"grad_clip": 10.0})
    changed["model"]["backbone"]["pretrained"] = cfg.model.backbone.pretrained
    with pytest.raises(CheckpointError, match=r"model\.sequence\.hidden_dim: checkpoint 16, now 8") as info:
        train(RunConfig.from_dict(changed))
    assert "train.resume=false" in str(info.value)
    assert not (out / "log.jsonl").exists()


def _resume_config(cfg: RunConfig, out: Path, root: Path, seed: int) -> RunConfig:
    """``cfg`` for one more epoch in ``out`` (holding a copy of ``cfg``'s ``last.pt``), reading
    the synthetic dataset at ``root`` generated with ``seed``."""
    out.mkdir()
    (out / "last.pt").write_bytes((Path(cfg.output_dir) / "last.pt").read_bytes())
    over = {
        "output_dir": str(out),
        "optim": {"epochs": 3},
        "train": {"progress": False},
        "data": {"root": str(root), "synthetic": {"seed": seed}},
    }
    return RunConfig.from_dict(deep_update(cfg.to_dict(), over))


def test_resume_on_other_data_with_the_same_identities_is_a_clear_error(finished_run, tmp_path):
    cfg, _, _ = finished_run
    other = tmp_path / "other"
    generate_synthetic(other, SynthConfig(**{**SYNTH, "seed": 1}))  # same names and identity count
    with pytest.raises(CheckpointError, match=r"was trained on other data: synthetic at .*this run reads") as info:
        train(_resume_config(cfg, tmp_path / "run", other, seed=1))
    assert str(other) in str(info.value) and "train.resume=false" in str(info.value)


def test_resume_from_a_moved_dataset_continues(finished_run, tmp_path, capsys):
    cfg, _, _ = finished_run
    moved = tmp_path / "moved"
    shutil.copytree(cfg.data.root, moved)
    summary = train(_resume_config(cfg, tmp_path / "run", moved, seed=cfg.data.synthetic.seed))
    assert "resumed from" in capsys.readouterr().out and summary["epoch"] == 3
    assert load_checkpoint(tmp_path / "run" / "last.pt")["dataset"]["root"] == str(moved)


def _as_format_version_1(state: dict) -> dict:
    """``state`` in the checkpoint layout before the typed model config (format version 1):
    ``num_classes`` also inside ``config.model``, the 8-key ``data.synthetic`` section."""
    config = copy.deepcopy(state["config"])
    config["model"]["num_classes"] = state["num_classes"]
    config["data"]["synthetic"] = {k: v for k, v in config["data"]["synthetic"].items() if k in SYNTH_V1_KEYS}
    model = dict(state["model"])  # the bone embedding's columns feature-major, as before version 3
    rows, cols = model[PRE_V3_BONE_EMBEDDING].shape
    model[PRE_V3_BONE_EMBEDDING] = model[PRE_V3_BONE_EMBEDDING].reshape(rows, -1, 3).transpose(1, 2).reshape(rows, cols)
    return {**state, "version": 1, "config": config, "model": model}


SYNTH_V1_KEYS = ("ids", "tracklets", "cameras", "min_frames", "max_frames", "height", "width", "seed")


def test_checkpoint_of_format_version_1_resumes_and_loads(finished_run, tmp_path, capsys):
    from star.engine.inference import load_trained_model

    cfg, trainer, _ = finished_run
    out = tmp_path / "run"
    out.mkdir()
    old_last = _as_format_version_1(load_checkpoint(Path(cfg.output_dir) / "last.pt"))
    assert "num_classes" in old_last["config"]["model"]
    save_checkpoint(old_last, out / "last.pt")
    save_checkpoint(_as_format_version_1(load_checkpoint(Path(cfg.output_dir) / "best.pt")), out / "best.pt")

    restored = load_trained_model(out / "best.pt", "cpu")
    assert restored.model.num_classes == trainer.num_classes
    best_weights = load_checkpoint(Path(cfg.output_dir) / "best.pt")["model"]
    assert states_equal(restored.model.state_dict(), best_weights)  # the bone embedding's columns moved back

    longer = copy.deepcopy(cfg)
    longer.output_dir, longer.optim.epochs, longer.train.progress = str(out), 3, False
    summary = train(longer)
    assert "resumed from" in capsys.readouterr().out and summary["epoch"] == 3
    new_last = load_checkpoint(out / "last.pt")
    assert new_last["version"] == CHECKPOINT_VERSION and "num_classes" not in new_last["config"]["model"]


def test_checkpoint_of_format_version_1_without_num_classes_is_a_clear_error(tmp_path):
    path = tmp_path / "old.pt"
    save_checkpoint({"version": 1, "model": {}, "config": {"model": {"seq_len": 4}}}, path)
    with pytest.raises(CheckpointError, match=r"checkpoint format version 1 records no num_classes"):
        load_checkpoint(path)


# ----------------------------------------------------------------------------- resume


def _run(cfg: dict, result: Path, tmp: Path, **env: str) -> subprocess.Popen:
    path = tmp / "config.json"
    path.write_text(json.dumps(cfg))
    log = open(result.with_suffix(".log"), "w")
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(path), str(result)],
        env=subprocess_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )


def _finish(proc: subprocess.Popen, result: Path, timeout: float = 240) -> str:
    rc = proc.wait(timeout=timeout)
    text = result.with_suffix(".log").read_text()
    assert rc == 0, text[-4000:]
    return text


@pytest.mark.slow
def test_killed_run_resumes_and_reproduces_an_uninterrupted_one(synth_root, tmp_path):
    over = {"optim": {"epochs": 3}, "train": {"eval_period": 2}, "data": {"num_workers": 1}}
    cfg_a = config(synth_root, tmp_path / "a", **over)
    cfg_b = config(synth_root, tmp_path / "b", **over)
    (tmp_path / "ta").mkdir()
    (tmp_path / "tb").mkdir()

    # Run B: paused (then SIGKILLed) in the loss of epoch 3, iteration 2 -- after the
    # checkpoints of epochs 1 and 2, the evaluation after epoch 2 and step 5 (logged).
    flag = tmp_path / "paused"
    proc_b = _run(
        cfg_b, tmp_path / "res_b1", tmp_path / "tb", STAR_TEST_PAUSE_AT_CALL="6", STAR_TEST_PAUSE_FILE=str(flag)
    )
    proc_a = _run(cfg_a, tmp_path / "res_a", tmp_path / "ta")  # uninterrupted reference
    deadline = time.monotonic() + 240
    while not flag.exists():
        assert proc_b.poll() is None, (tmp_path / "res_b1.log").read_text()[-4000:]
        assert time.monotonic() < deadline, "the run never reached the pause point"
        time.sleep(0.05)
    proc_b.send_signal(signal.SIGKILL)
    proc_b.wait(timeout=60)
    killed = load_checkpoint(tmp_path / "b" / "last.pt")
    assert killed["epoch"] == 2 and killed["step"] == 4 and killed["eval_pending"] is False
    assert killed["best"]["epoch"] == 2

    text = _finish(_run(cfg_b, tmp_path / "res_b2", tmp_path / "tb"), tmp_path / "res_b2")
    assert "resumed from" in text and "2/3 epochs done" in text
    _finish(proc_a, tmp_path / "res_a")

    summary_a = json.loads((tmp_path / "res_a" / "summary_rank0.json").read_text())
    summary_b = json.loads((tmp_path / "res_b2" / "summary_rank0.json").read_text())
    for s in (summary_a, summary_b):
        s.pop("eval_time"), s.pop("output_dir")
    assert summary_a == summary_b
    assert summary_b["epoch"] == 3 and summary_b["step"] == 6
    weights_a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    weights_b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert states_equal(weights_a, weights_b)
    metrics_a = json.loads((tmp_path / "a" / "metrics.json").read_text())["modes"]
    metrics_b = json.loads((tmp_path / "b" / "metrics.json").read_text())["modes"]
    assert metrics_a == metrics_b
    # The killed run's step 5 is in the log twice; the resumed record marks the first as
    # superseded, so a reader counts every step once.
    records_b = read_jsonl(tmp_path / "b" / "log.jsonl")
    assert [r["step"] for r in records_b if r["type"] == "train"] == [1, 2, 3, 4, 5, 5, 6]
    resumed = [r for r in records_b if r["type"] == "resumed"]
    assert [(r["step"], r["epoch"], r["eval_pending"]) for r in resumed] == [(4, 2, False)]

    # the resumed epoch saw the same batches and random draws: identical losses
    def losses(run: Path) -> list:
        records = drop_superseded(read_jsonl(run / "log.jsonl"))
        return [(r["step"], r["loss"]) for r in records if r["type"] == "train"]

    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert [r["epoch"] for r in drop_superseded(records_b) if r["type"] == "epoch"] == [1, 2, 3]


class KilledInEvaluation(Trainer):
    def evaluate(self, final):
        raise KeyboardInterrupt


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_interrupted_evaluation_is_redone_on_resume(synth_root, tmp_path):
    cfg = RunConfig.from_dict(config(synth_root, tmp_path / "run", optim={"epochs": 1}))
    with pytest.raises(KeyboardInterrupt):
        KilledInEvaluation(cfg).run()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 1 and state["eval_pending"] is True
    assert not (tmp_path / "run" / "metrics.json").exists()

    # a kill -9 during a checkpoint write leaves its temporary behind: the next run removes it
    stale = tmp_path / "run" / f".last.pt.{dead_pid()}.0123abcd.tmp"
    stale.write_bytes(b"partial checkpoint")
    summary = train(cfg)
    assert not stale.exists()
    assert summary["epoch"] == 1 and (tmp_path / "run" / "metrics.json").is_file()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["eval_pending"] is False
    assert states_equal(state["model"], load_checkpoint(tmp_path / "run" / "best.pt")["model"])
    records = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert len([r for r in records if r["type"] == "train"]) == 2  # not retrained
    assert [(r["type"], r.get("epoch")) for r in records[-2:]] == [("resumed", 1), ("eval", 1)]
    assert records[-2]["eval_pending"] is True


def _sleep(started, seconds: float) -> None:
    started.set()
    time.sleep(seconds)


def test_forked_workers_do_not_hold_the_output_lock(tmp_path):
    # DataLoader workers are forked while the trainer holds the lock; one that outlives its
    # killed parent must not keep the folder locked (the next run would fail naming a dead pid).
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    started = fork.Event()
    with exclusive_dir_lock(tmp_path, "star train"):
        worker = fork.Process(target=_sleep, args=(started, 30), daemon=True)
        worker.start()
        assert started.wait(30)  # the worker runs (and had the lock's descriptor at fork time)
    try:
        with exclusive_dir_lock(tmp_path, "star train"):  # free although the worker lives on
            assert worker.is_alive()
    finally:
        worker.kill()
        worker.join()


def test_second_training_into_a_locked_output_dir_fails_at_once(synth_root, tmp_path):
    out = tmp_path / "run"
    cfg = RunConfig.from_dict(config(synth_root, out))
    with exclusive_dir_lock(out, "star train"):  # the first run, still training
        match = rf"{re.escape(str(out))} is in use by another run \(star train, pid {os.getpid()} "
        with pytest.raises(OutputLockedError, match=match):
            Trainer(cfg).run()
    assert not (out / "log.jsonl").exists() and not (out / "last.pt").exists()


# ----------------------------------------------------------------------------- DDP


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_identical_parameters(synth_root, tmp_path):
    # pose_weight 0 leaves the pose classifier without gradient: needs find_unused_parameters
    cfg = config(
        synth_root, tmp_path / "run", optim={"epochs": 1}, data={"batches_per_epoch": 4}, loss={"pose_weight": 0.0}
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    result = tmp_path / "result"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nnodes",
            "1",
            "--nproc_per_node",
            "2",
            str(RUNNER),
            str(path),
            str(result),
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "find_unused_parameters=True" in proc.stdout and "pose_logits" in proc.stdout
    w0 = torch.load(result / "weights_rank0.pt", weights_only=True)
    w1 = torch.load(result / "weights_rank1.pt", weights_only=True)
    # BN running statistics are rank-local between DDP's buffer broadcasts; everything else must agree
    same = lambda w: {k: v for k, v in w.items() if "running_" not in k}  # noqa: E731
    assert states_equal(same(w0), same(w1))
    s0 = json.loads((result / "summary_rank0.json").read_text())
    s1 = json.loads((result / "summary_rank1.json").read_text())
    assert s0 == s1 and s0["step"] == 2  # 4 batches per epoch shared by 2 ranks
    records = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in records if r["type"] == "train"] == [1, 2]  # rank 0 logs alone
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert states_equal(ckpt["model"], w0)


# ----------------------------------------------------------------------------- NaN guard


class NanAtCall(StarLoss):
    """The loss (and its logged terms) of the ``call``-th computation is NaN."""

    def __init__(self, cfg, call: int):
        super().__init__(cfg)
        self.call, self.calls = call, 0

    def forward(self, outputs, pids):
        loss, terms = super().forward(outputs, pids)
        self.calls += 1
        if self.calls == self.call:
            nan = torch.tensor(float("nan"))
            loss = loss * float("nan")
            terms = {**terms, "triplet": nan, "total": nan}
        return loss, terms


class RecordingCheckpoints(Checkpointer):
    """Records every write, and whether all the model's tensors in it were finite."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved = []

    def write(self, state, path):
        super().write(state, path)
        finite = all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
        self.saved.append(
            (Path(path).name, state["epoch"], finite, hashlib.sha256(Path(path).read_bytes()).hexdigest())
        )


class DivergingTrainer(Trainer):
    def __init__(self, cfg, nan_call: int):
        super().__init__(cfg)
        self.nan_call = nan_call

    def build_loss(self):
        return NanAtCall(self.cfg.loss, self.nan_call)

    def build_checkpointer(self):
        self.recorder = RecordingCheckpoints(
            self.state, self.parts, self.cfg, self.out, self.dist, self.num_classes, self.training_data_identity()
        )
        return self.recorder


# 3 iterations per epoch, log period 2: the meters are checked after steps 2, 3 (epoch end), 4, 6, 8, 9.
# (NaN computation, (epoch, iteration, step, iterations checked) where it is found, epochs in last.pt)
DIVERGENCES = [
    (3, (1, 3, 3, 1), []),  # found by the epoch-end check, before the epoch's checkpoint
    (5, (2, 3, 6, 2), [1]),  # found at the period's end, which is the epoch's end too
    (7, (3, 2, 8, 2), [1, 2]),  # found one logging period later, mid-epoch
]


@pytest.mark.slow
@pytest.mark.parametrize("nan_call, found, written", DIVERGENCES)
def test_non_finite_loss_stops_within_a_log_period_and_never_reaches_a_checkpoint(
    synth_root, tmp_path, nan_call, found, written
):
    cfg = RunConfig.from_dict(
        config(
            synth_root,
            tmp_path / "run",
            optim={"epochs": 3},
            data={"batches_per_epoch": 3},
            train={"log_period": 2},
        )
    )
    trainer = DivergingTrainer(cfg, nan_call)
    epoch, iteration, step, iterations = found
    with pytest.raises(TrainingDiverged, match=rf"epoch {epoch}, iteration {iteration} .*triplet=nan") as info:
        trainer.run()
    err = info.value
    assert (err.epoch, err.iteration, err.step, err.iterations) == found
    assert math.isnan(err.terms["total"])
    last = tmp_path / "run" / "last.pt"
    saved = trainer.recorder.saved
    assert [(name, e) for name, e, _, _ in saved] == [("last.pt", e) for e in written]
    assert all(finite for _, _, finite, _ in saved)  # never written from the non-finite state
    if written:
        assert err.checkpoint == last and "intact" in str(err)
        assert saved[-1][3] == hashlib.sha256(last.read_bytes()).hexdigest()  # untouched since
        state = load_checkpoint(last)
        assert state["epoch"] == written[-1] and state["step"] == 3 * written[-1]
    else:
        assert err.checkpoint is None and not last.exists() and "no checkpoint" in str(err)
    assert not list((tmp_path / "run").glob(".*.tmp"))


# ----------------------------------------------------------------------------- no host copy per step


class CountingTensor(torch.Tensor):
    """A tensor that counts its device->host conversions (the ones that synchronise on CUDA)."""

    conversions = 0
    HOST_COPIES = {
        torch.Tensor.item,
        torch.Tensor.tolist,
        torch.Tensor.numpy,
        torch.Tensor.__float__,
        torch.Tensor.__int__,
        torch.Tensor.__bool__,
    }

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in cls.HOST_COPIES:
            CountingTensor.conversions += 1
        return super().__torch_function__(func, types, args, kwargs or {})


class CountingLoss(StarLoss):
    def forward(self, outputs, pids):
        loss, terms = super().forward(outputs, pids)
        return loss, {k: v.as_subclass(CountingTensor) for k, v in terms.items()}


class CountingTrainer(Trainer):
    def build_loss(self):
        return CountingLoss(self.cfg.loss)


@pytest.mark.slow
def test_a_step_makes_no_host_copy_and_logs_are_plain_lines_off_a_terminal(synth_root, tmp_path, capfd):
    # 2 epochs of 4 iterations, log period 3: the meters reach the host after steps 3, 4, 6 and 8
    cfg = RunConfig.from_dict(
        config(
            synth_root,
            tmp_path / "run",
            data={"batches_per_epoch": 4},
            train={"log_period": 3, "progress": True},
            optim={"grad_clip": 5.0},
        )
    )
    float(torch.tensor(1.0).as_subclass(CountingTensor))  # the seam counts a conversion
    assert CountingTensor.conversions == 1
    CountingTensor.conversions = 0
    CountingTrainer(cfg).run()
    assert CountingTensor.conversions == 8 // 3 + 2  # one per logging period and epoch end, none per step

    # stdout and stderr are captured, no terminal: no bar redraws, one line per logging period
    out, err = capfd.readouterr()
    assert "\r" not in out + err
    lines = [line for line in out.splitlines() if line.startswith("[epoch ")]
    assert [line.split("]")[0] for line in lines] == ["[epoch 1 iter 3/4", "[epoch 2 iter 2/4"]
    assert all(re.search(r"loss=[\d.]+ .*lr=\S+ [\d.]+ it/s ETA \d+:\d\d:\d\d mem=\d+M$", line) for line in lines)
    records = [r for r in read_jsonl(tmp_path / "run" / "log.jsonl") if r["type"] == "train"]
    assert [r["step"] for r in records] == [3, 6] and all("grad_norm" in r for r in records)
    assert "features: " in err  # the extraction's closing line, not a bar


# ----------------------------------------------------------------------------- build seams
# Each ``build_*`` of the trainer overridden alone in a subclass: the run uses what it returns.


class OneBatchPerEpoch(Trainer):
    def build_train_loader(self):
        return train_loader(
            self.data.train,
            self.keypoints,
            num_frames=4,
            num_ids=2,
            num_per_modality=1,
            height=32,
            width=16,
            num_workers=0,
            seed=0,
            num_batches=1,
        )


class TaggedSTAR(STAR):
    pass


class OwnModel(Trainer):
    def build_model(self):
        return BuiltModel(TaggedSTAR(self.cfg.model, self.num_classes), frozenset())


class PlainSGD(Trainer):
    def build_optimizer(self, model, pretrained_names):  # one unnamed group, no momentum
        return torch.optim.SGD(model.parameters(), lr=0.05)


class HalfLr(Trainer):
    def build_scheduler(self, optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)


class CallCountingLoss(StarLoss):
    calls = 0

    def forward(self, outputs, pids):
        CallCountingLoss.calls += 1
        return super().forward(outputs, pids)


class OwnLoss(Trainer):
    def build_loss(self):
        return CallCountingLoss(self.cfg.loss)


class OwnCheckpointer(Trainer):
    def build_checkpointer(self):
        self.recorder = RecordingCheckpoints(
            self.state, self.parts, self.cfg, self.out, self.dist, self.num_classes, self.training_data_identity()
        )
        return self.recorder


class StepRecorder(HookBase):
    def __init__(self, state: TrainingState):
        self.state, self.steps = state, []

    def after_step(self):
        self.steps.append((self.state.epoch, self.state.iter, self.state.step))


class ExtraHook(Trainer):
    def build_hooks(self):
        self.recorder = StepRecorder(self.state)
        return [*super().build_hooks(), self.recorder]


def _lrs(trainer) -> list:
    return [r["lr"] for r in read_jsonl(trainer.out / "log.jsonl") if r["type"] == "train"]


BUILD_OVERRIDES = {
    "build_train_loader": (OneBatchPerEpoch, lambda t, s: t.iters_per_epoch == 1 and s["step"] == 1),
    "build_model": (OwnModel, lambda t, s: isinstance(t.model, TaggedSTAR) and not t.pretrained_names),
    "build_optimizer": (
        PlainSGD,
        lambda t, s: (
            len(t.parts.optimizer.param_groups) == 1
            and t.parts.optimizer.param_groups[0]["momentum"] == 0
            and t.parts.optimizer.param_groups[0]["initial_lr"] == 0.05
        ),
    ),
    "build_scheduler": (HalfLr, lambda t, s: _lrs(t) == [0.005, 0.005]),
    "build_loss": (OwnLoss, lambda t, s: CallCountingLoss.calls == 2),
    "build_checkpointer": (
        OwnCheckpointer,
        lambda t, s: [name for name, *_ in t.recorder.saved] == ["last.pt", "best.pt", "last.pt"],
    ),
    "build_hooks": (ExtraHook, lambda t, s: t.recorder.steps == [(0, 0, 1), (0, 1, 2)]),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(BUILD_OVERRIDES))
def test_each_build_method_can_be_overridden_alone(synth_root, tmp_path, method):
    cls, took_effect = BUILD_OVERRIDES[method]
    assert method in vars(cls) and [m for m in vars(cls) if m.startswith("build")] == [method]
    CallCountingLoss.calls = 0
    trainer = cls(RunConfig.from_dict(config(synth_root, tmp_path / "run", optim={"epochs": 1})))
    summary = trainer.run()
    assert summary["epoch"] == 1 and math.isfinite(summary["mAP"])
    assert took_effect(trainer, summary)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["eval_pending"] is False and states_equal(last["model"], trainer.model.state_dict())


# ----------------------------------------------------------------------------- errors


def test_missing_dataset_is_a_clear_error_before_any_output(tmp_path):
    root = tmp_path / "no-such-dataset"
    cfg = RunConfig.from_dict(config(root, tmp_path / "run", data={"dataset": "hitsz-vcm"}))
    with pytest.raises(Exception, match=str(root)):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_missing_keypoint_store_is_a_clear_error(synth_root, tmp_path):
    missing = tmp_path / "kp"
    cfg = RunConfig.from_dict(config(synth_root, tmp_path / "run", data={"keypoints": str(missing)}))
    with pytest.raises(KeypointStoreError, match=str(missing)):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_output_dir_that_is_a_file_is_a_clear_error(synth_root, tmp_path):
    out = tmp_path / "file"
    out.write_text("x")
    with pytest.raises(NotADirectoryError, match="output_dir"):
        train(RunConfig.from_dict(config(synth_root, out)))


def test_required_pretrained_weights_missing(synth_root, tmp_path):
    missing = tmp_path / "nope.pth"
    cfg = config(
        synth_root, tmp_path / "run", model={"backbone": {"pretrained": str(missing), "require_pretrained": True}}
    )
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        train(RunConfig.from_dict(cfg))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_device_without_cuda(synth_root, tmp_path):
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        train(RunConfig.from_dict(config(synth_root, tmp_path / "run", train={"device": "cuda"})))


class StopAfterData(Trainer):
    def build_model(self):
        raise RuntimeError("stop here")


def test_synthetic_dataset_is_generated_when_root_is_empty(tmp_path, capsys):
    root = tmp_path / "synth"
    with pytest.raises(RuntimeError, match="stop here"):
        StopAfterData(RunConfig.from_dict(config(root, tmp_path / "run"))).run()
    assert f"generating the synthetic dataset in {root}" in capsys.readouterr().out
    written = json.loads((root / "synthetic.json").read_text())
    assert {k: written[k] for k in SYNTH} == SYNTH  # the configured data.synthetic (a SynthConfig)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- units


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}, "epoch": 1}, path)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "epoch": 2}, path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    assert load_checkpoint(path)["epoch"] == 1


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(bad)


def test_rng_state_round_trip_and_preserved_rng(tmp_path):
    import random

    import numpy as np

    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    save_checkpoint({"model": {}, "rng": capture_rng_state()}, tmp_path / "s.pt")
    loaded = load_checkpoint(tmp_path / "s.pt")["rng"]  # a weights_only load of plain data
    expected = draws()
    restore_rng_state(loaded)
    with preserved_rng():
        draws(), torch.randn(10), np.random.randn(10)
    assert draws() == expected


def test_config_differences_ignores_resumable_settings():
    a = {
        "seed": 0,
        "output_dir": "x",
        "train": {"eval_period": 1},
        "optim": {"epochs": 10, "lr": 0.1},
        "model": {"seq_len": 12},
    }
    b = deep_update(
        a, {"output_dir": "y", "train": {"eval_period": 5}, "optim": {"epochs": 20, "lr": 0.2}, "model": {"seq_len": 6}}
    )
    assert config_differences(a, b) == ["model.seq_len: checkpoint 12, now 6", "optim.lr: checkpoint 0.1, now 0.2"]


def test_lr_schedule_warmup_and_milestones():
    cfg = OptimConfig(lr=0.1, epochs=10, warmup_epochs=2, warmup_start_factor=0.01, milestones=(4, 7), gamma=0.1)
    ipe = 5
    assert lr_factor(0, ipe, cfg) == pytest.approx(0.01)
    assert lr_factor(5, ipe, cfg) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(10, ipe, cfg) == pytest.approx(1.0)  # epoch 2 (0-based): warm-up over
    assert lr_factor(19, ipe, cfg) == pytest.approx(1.0)
    assert lr_factor(20, ipe, cfg) == pytest.approx(0.1)  # first iteration of epoch 4
    assert lr_factor(35, ipe, cfg) == pytest.approx(0.01)
    no_warmup = OptimConfig(warmup_epochs=0, milestones=())
    assert lr_factor(0, ipe, no_warmup) == 1.0

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    groups = param_groups(model, cfg, {"0.weight", "0.bias"})
    assert [g["name"] for g in groups] == ["new", "pretrained"]
    assert groups[1]["lr"] == pytest.approx(0.1 * cfg.pretrained_lr_mult) and len(groups[1]["params"]) == 2
    assert [g["name"] for g in param_groups(model, cfg)] == ["new"]
    opt = build_optimizer(model, cfg, {"0.weight", "0.bias"})
    sched = build_scheduler(opt, cfg, ipe)
    lrs = []
    for _ in range(21):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx([0.001, 0.0001]) and lrs[20] == pytest.approx([0.01, 0.001])
    restored = build_scheduler(build_optimizer(model, cfg), cfg, ipe)
    restored.load_state_dict(sched.state_dict())
    assert restored.last_epoch == 21


def test_adam_option_keeps_groups_and_schedule():
    cfg = OptimConfig(name="adam", lr=1e-3, warmup_epochs=0, milestones=(1,), gamma=0.5)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    opt = build_optimizer(model, cfg, {"0.weight", "0.bias"})
    assert isinstance(opt, torch.optim.Adam)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-3 * cfg.pretrained_lr_mult])
    sched = build_scheduler(opt, cfg, iters_per_epoch=2)
    for _ in range(2):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="optim.name must be one of sgd, adam, adamw, got 'rmsprop'"):
        OptimConfig(name="rmsprop")


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_weight_decay_on_an_unused_tensor(name):
    # A tensor with no loss gradient: Adam's L2 term is normalised away and moves it by ~lr per
    # step (to zero within |w| / lr steps); AdamW shrinks it by the factor (1 - lr * wd) per step.
    cfg = OptimConfig(name=name, lr=1e-2, weight_decay=5e-4, warmup_epochs=0, milestones=())
    w = torch.nn.Parameter(torch.full((4,), 0.5))
    opt = build_optimizer(torch.nn.ParameterList([w]), cfg)
    for _ in range(20):
        w.grad = torch.zeros_like(w)
        opt.step()
    if name == "adam":  # ~lr per step (a little less: v remembers the larger early gradients)
        assert w.detach() == pytest.approx(torch.full((4,), 0.5 - 20 * 1e-2), rel=0.05)
    else:
        assert w.detach() == pytest.approx(torch.full((4,), 0.5 * (1 - 1e-2 * 5e-4) ** 20), rel=1e-6)


def test_tensorboard_missing_gives_one_warning(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.warns(UserWarning, match="tensorboard is not importable"):
        assert open_tensorboard(tmp_path / "tb") is None


def test_drop_superseded_keeps_each_step_epoch_and_evaluation_once():
    killed = [
        {"type": "train", "step": 1},
        {"type": "train", "step": 2},
        {"type": "epoch", "epoch": 1},
        {"type": "eval", "epoch": 1},
        {"type": "train", "step": 3},  # killed in epoch 2, after step 3
    ]
    redone = [{"type": "resumed", "step": 2, "epoch": 1, "eval_pending": False}, {"type": "train", "step": 3}]
    assert drop_superseded(killed + redone) == killed[:4] + redone[1:]
    # killed after logging the evaluation of epoch 1 but before last.pt recorded it: evaluated again
    pending = [{"type": "resumed", "step": 2, "epoch": 1, "eval_pending": True}, {"type": "eval", "epoch": 1}]
    assert drop_superseded(killed[:4] + pending) == killed[:3] + pending[1:]


def test_optimizer_is_fused_on_cuda_only():
    model = torch.nn.Linear(3, 2)
    for name in ("sgd", "adam", "adamw"):  # CPU parameters: torch's default implementation, as before
        assert not build_optimizer(model, OptimConfig(name=name)).defaults.get("fused")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_grad_scaler_steps_the_fused_optimizer_without_a_host_sync(name):
    model = torch.nn.Linear(8, 4).cuda()
    opt = build_optimizer(model, OptimConfig(name=name, momentum=0.9))
    assert opt.defaults["fused"] is True
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(16, 8, device="cuda")
    for step in range(3):
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model(x).float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        torch.cuda.set_sync_debug_mode("error" if step else "default")  # the first step creates the state
        try:
            scaler.step(opt)
            scaler.update()
        finally:
            torch.cuda.set_sync_debug_mode("default")
