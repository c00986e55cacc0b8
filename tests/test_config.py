"""Tests of star.config: YAML inheritance, overrides, errors, the shipped configs, saved run info."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

import star
from star.config import (
    ConfigError,
    RunConfig,
    config_to_dict,
    format_config,
    git_sha,
    load_config,
    read_run_info,
    save_run_info,
)
from star.models import ModelConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CONFIG_FILES = sorted(CONFIGS.rglob("*.yaml"))
HITSZ_ROWS = ["baseline", "frame_level", "sequence_level", "star"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --- defaults and inheritance ---------------------------------------------------


def test_none_is_the_defaults_with_model_spelled_out():
    cfg = load_config(None)
    assert cfg.data == RunConfig().data and cfg.optim == RunConfig().optim
    assert cfg.model.backbone.name == "resnet50" and not hasattr(cfg.model, "num_classes")
    assert cfg.model == RunConfig().model == ModelConfig()


def test_multi_level_inheritance_and_deep_merge(tmp_path):
    write(
        tmp_path / "a.yaml", "seed: 1\ndata: {num_ids: 4, height: 64, width: 32}\nmodel: {backbone: {name: resnet34}}"
    )
    b = "_base_: ../a.yaml\nseed: 2\ndata: {height: 128}\nmodel: {backbone: {last_stride: 2}}"
    write(tmp_path / "sub/b.yaml", b)
    write(tmp_path / "sub/deeper/c.yaml", "_base_: ../b.yaml\ndata: {width: 48}\noptim: {milestones: [5]}\n")
    cfg = load_config(tmp_path / "sub/deeper/c.yaml")
    assert cfg.seed == 2  # b overrides a
    assert (cfg.data.num_ids, cfg.data.height, cfg.data.width) == (4, 128, 48)  # merged across three files
    assert cfg.model.backbone.name == "resnet34" and cfg.model.backbone.last_stride == 2
    assert cfg.optim.milestones == (5,)  # lists are replaced, not merged
    assert cfg.data.dataset == "hitsz-vcm"  # untouched keys keep the defaults


def test_list_of_bases_later_wins_and_file_wins(tmp_path):
    write(tmp_path / "one.yaml", "seed: 1\ndeterministic: true\noptim: {lr: 0.5, epochs: 30}\n")
    write(tmp_path / "two.yaml", "seed: 2\noptim: {lr: 0.2}\n")
    write(tmp_path / "top.yaml", "_base_: [one.yaml, two.yaml]\noptim: {epochs: 40}\n")
    cfg = load_config(tmp_path / "top.yaml")
    assert cfg.seed == 2 and cfg.deterministic is True
    assert cfg.optim.lr == 0.2 and cfg.optim.epochs == 40


def test_diamond_is_not_a_cycle(tmp_path):
    write(tmp_path / "root.yaml", "seed: 7\n")
    write(tmp_path / "l.yaml", "_base_: root.yaml\n")
    write(tmp_path / "r.yaml", "_base_: root.yaml\n")
    write(tmp_path / "top.yaml", "_base_: [l.yaml, r.yaml]\n")
    assert load_config(tmp_path / "top.yaml").seed == 7


def test_scalar_replaces_mapping_and_empty_section(tmp_path):
    write(tmp_path / "base.yaml", "data:\n  keypoints: kp\n")
    write(tmp_path / "top.yaml", "_base_: base.yaml\ndata:\n  keypoints: null\ntrain:\n")
    cfg = load_config(tmp_path / "top.yaml")
    assert cfg.data.keypoints is None and cfg.train == RunConfig().train


# --- overrides -------------------------------------------------------------------


def test_overrides_types_nested_and_null(tmp_path):
    write(tmp_path / "c.yaml", "data: {keypoints: somewhere}\n")
    cfg = load_config(
        tmp_path / "c.yaml",
        [
            "optim.milestones=[3,5]",
            "train.amp=false",
            "data.keypoints=null",
            "optim.lr=1e-3",  # YAML 1.1 reads this as a string; float fields convert it
            "optim.epochs=7",
            "optim.warmup_epochs=1",
            "model.backbone.name=resnet18",
            "model.pooling.exponents=[1, 3]",
            "output_dir=runs/x=y",  # only the first '=' splits
            "model.sequence={enabled: false, hidden_dim: 8}",  # a mapping merges into the section
            "loss={pose_weight: 0, consistency_weight: 0}",  # the terms of the sequence level (loss_terms)
        ],
    )
    assert cfg.optim.milestones == (3, 5)
    assert cfg.train.amp is False and cfg.data.keypoints is None
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.epochs == 7
    assert cfg.output_dir == "runs/x=y"
    model = cfg.model
    assert model.backbone.name == "resnet18" and model.pooling.exponents == (1.0, 3.0)
    assert model.sequence.enabled is False and model.sequence.hidden_dim == 8
    assert model.sequence.out_dim == 12  # the rest of the section is kept


def test_overrides_apply_after_files_in_order():
    cfg = load_config(None, ["seed=1", "seed=3"])
    assert cfg.seed == 3


@pytest.mark.parametrize(
    "override, names, valid",
    [
        ("data.nme=3", "data.nme", ["dataset", "root", "num_ids", "synthetic"]),
        ("nme=3", "nme", ["output_dir", "data", "model", "eval"]),
        ("model.backbone.nme=x", "model.backbone.nme", ["name", "pretrained", "last_stride"]),
        ("model.nme=x", "model.nme", ["seq_len", "backbone", "frame_correction"]),
        ("model.num_classes=3", "model.num_classes", ["seq_len", "pooling"]),
        ("data.synthetic.nme=1", "data.synthetic.nme", ["ids", "seed"]),
    ],
)
def test_unknown_override_key_lists_valid_keys(override, names, valid):
    with pytest.raises(ConfigError, match=re.escape(names)) as info:
        load_config(None, [override])
    message = str(info.value)
    assert "valid keys" in message and all(v in message for v in valid)


def test_bad_overrides_are_named():
    with pytest.raises(ConfigError, match="malformed override 'train.amp'"):
        load_config(None, ["train.amp"])
    with pytest.raises(ConfigError, match="malformed override"):
        load_config(None, ["data..root=x"])
    with pytest.raises(ConfigError, match="data.height is a value, not a section"):
        load_config(None, ["data.height.x=1"])
    with pytest.raises(ConfigError, match=r"data.height must be int, got 'abc' \(override 'data.height=abc'\)"):
        load_config(None, ["data.height=abc"])
    with pytest.raises(ConfigError, match="train.amp must be bool"):
        load_config(None, ["train.amp=1"])
    with pytest.raises(ConfigError, match=r"override .optim.milestones=\[3,., line 1.*invalid YAML"):
        load_config(None, ["optim.milestones=[3,"])


def test_validation_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"data.num_ids = 1 is out of range: it must be >= 2"):
        load_config(None, ["data.num_ids=1"])
    with pytest.raises(ConfigError, match="backbone.name must be one of"):
        load_config(None, ["model.backbone.name=vgg"])
    with pytest.raises(ConfigError, match="style.scale_range"):
        load_config(None, ["model.style.scale_range=[1, 2, 3]"])


# --- file errors -----------------------------------------------------------------


def test_unknown_key_in_file_names_file_and_valid_keys(tmp_path):
    write(tmp_path / "base.yaml", "model:\n  frame_correction:\n    enabeld: false\n")
    write(tmp_path / "top.yaml", "_base_: base.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "top.yaml")
    message = str(info.value)
    assert "model.frame_correction.enabeld" in message and "base.yaml" in message
    assert "valid keys: enabled, bone_embed_dim, num_heads, attention_dropout" in message

    write(tmp_path / "top2.yaml", "optimizer: {lr: 1}\n")
    with pytest.raises(ConfigError, match="'optimizer'.*top2.yaml.*valid keys: output_dir, seed"):
        load_config(tmp_path / "top2.yaml")


def test_wrong_type_in_file_names_file(tmp_path):
    write(tmp_path / "c.yaml", "data:\n  height: tall\n")
    with pytest.raises(ConfigError, match=r"data.height must be int, got 'tall' \(.*c.yaml\)"):
        load_config(tmp_path / "c.yaml")
    write(tmp_path / "d.yaml", "data: 3\n")
    with pytest.raises(ConfigError, match="data must be a mapping"):
        load_config(tmp_path / "d.yaml")


def test_cycle_is_an_error_naming_the_files(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: c.yaml\n")
    write(tmp_path / "c.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle") as info:
        load_config(tmp_path / "a.yaml")
    assert all(n in str(info.value) for n in ("a.yaml", "b.yaml", "c.yaml"))
    write(tmp_path / "self.yaml", "_base_: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle.*self.yaml"):
        load_config(tmp_path / "self.yaml")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.yaml"))):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path / "top.yaml", "_base_: gone/base.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"gone/base.yaml.*top.yaml"):
        load_config(tmp_path / "top.yaml")


def test_yaml_errors_name_file_and_line(tmp_path):
    write(tmp_path / "bad.yaml", "seed: 1\ndata:\n  root: [unclosed\n")
    expected = r"bad.yaml, line 4, column 1: invalid YAML: while parsing a flow sequence; expected .,. or .\]."
    with pytest.raises(ConfigError, match=expected):
        load_config(tmp_path / "bad.yaml")
    write(tmp_path / "dup.yaml", "seed: 1\nseed: 2\n")
    expected = r"dup.yaml, line 2, column 1: invalid YAML: .*found duplicate key .seed. \(first at line 1\)"
    with pytest.raises(ConfigError, match=expected):
        load_config(tmp_path / "dup.yaml")
    write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: a config file must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    write(tmp_path / "base.yaml", "_base_: {a: 1}\n")
    with pytest.raises(ConfigError, match="_base_ must be a path or a list of paths"):
        load_config(tmp_path / "base.yaml")


# --- the shipped configs -----------------------------------------------------------


def test_configs_directory_is_complete():
    names = {p.relative_to(CONFIGS).as_posix() for p in CONFIG_FILES}
    expected = {f"hitsz_vcm/{r}.yaml" for r in HITSZ_ROWS} | {
        "hitsz_vcm/_base.yaml",
        "bupt/star.yaml",
        "synthetic.yaml",
        "synthetic_baseline.yaml",
    }
    assert expected <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_shipped_config_loads_with_a_typed_model_config(path):
    cfg = load_config(path)
    assert isinstance(cfg.model, ModelConfig)
    assert load_config(path, ["seed=0"]) == cfg  # deterministic, and overrides work on every file


def test_hitsz_rows_follow_the_recipe():
    cfg = load_config(CONFIGS / "hitsz_vcm/star.yaml")
    assert (cfg.data.dataset, cfg.data.root, cfg.eval.protocol) == ("hitsz-vcm", "data/HITSZ-VCM", "hitsz-vcm")
    assert (cfg.data.height, cfg.data.width, cfg.data.num_ids, cfg.data.num_per_modality) == (288, 144, 8, 2)
    model = cfg.model
    assert model.seq_len == 12 and model.backbone.name == "resnet50" and model.backbone.pretrained == "imagenet"
    o = cfg.optim
    assert (o.lr, o.momentum, o.weight_decay, o.nesterov, o.pretrained_lr_mult) == (0.1, 0.9, 5e-4, True, 0.1)
    assert (o.epochs, o.warmup_epochs, o.milestones, o.gamma) == (200, 10, (60, 120), 0.1)
    assert cfg.train.eval_period == 10


def test_ablation_rows_differ_exactly_in_their_switches():
    rows = {r: flatten(config_to_dict(load_config(CONFIGS / f"hitsz_vcm/{r}.yaml"))) for r in HITSZ_ROWS}

    def diff(a, b):
        return {k for k in rows[a] if rows[a][k] != rows[b][k]} - {"output_dir"}

    assert diff("baseline", "frame_level") == {"model.frame_correction.enabled"}
    assert diff("frame_level", "sequence_level") == {"model.sequence.enabled", "loss.pose_weight"}
    assert diff("sequence_level", "star") == {"loss.consistency_weight"}
    base = rows["baseline"]
    assert base["model.frame_correction.enabled"] is False and base["model.sequence.enabled"] is False
    assert base["loss.pose_weight"] == 0 and base["loss.consistency_weight"] == 0
    star_row = rows["star"]
    assert star_row["model.frame_correction.enabled"] and star_row["model.sequence.enabled"]
    assert star_row["loss.pose_weight"] > 0 and star_row["loss.consistency_weight"] > 0
    assert len({r["output_dir"] for r in rows.values()}) == len(rows)


def test_bupt_and_synthetic_configs():
    bupt = load_config(CONFIGS / "bupt/star.yaml")
    star_row = load_config(CONFIGS / "hitsz_vcm/star.yaml")
    assert (bupt.data.dataset, bupt.data.root, bupt.eval.protocol) == ("bupt", "data/BUPTCampus", "bupt")
    assert bupt.model == star_row.model and bupt.loss == star_row.loss and bupt.optim == star_row.optim

    synth = load_config(CONFIGS / "synthetic.yaml")
    assert (synth.data.dataset, synth.data.root) == ("synthetic", "data/synthetic")  # not expanded
    assert synth.model.backbone.name == "resnet18" and synth.model.backbone.pretrained is None
    assert (synth.data.height, synth.data.width, synth.train.amp) == (32, 16, False)  # sized for the CPU demo
    assert synth.model.frame_correction.enabled and synth.model.sequence.enabled
    assert (synth.optim.name, synth.model.neck_feat) == ("adamw", "before")  # the CPU-budget deviations

    baseline = flatten(config_to_dict(load_config(CONFIGS / "synthetic_baseline.yaml")))
    flat = flatten(config_to_dict(synth))
    assert {k for k in flat if flat[k] != baseline[k]} == {
        "output_dir",
        "model.frame_correction.enabled",
        "model.sequence.enabled",
        "loss.pose_weight",
        "loss.consistency_weight",
    }


# --- format_config / save_run_info -----------------------------------------------------


def test_format_config_is_loadable_yaml(tmp_path):
    cfg = load_config(CONFIGS / "synthetic.yaml", ["optim.milestones=[2,4]"])
    text = format_config(cfg)
    assert "milestones: [2, 4]" in text
    assert load_config(write(tmp_path / "f.yaml", text)) == cfg
    assert yaml.safe_load(format_config(RunConfig()))["model"]["seq_len"] == 12  # model spelled out


@pytest.mark.parametrize("path", [CONFIGS / "hitsz_vcm/baseline.yaml", CONFIGS / "synthetic.yaml", None])
def test_save_run_info_round_trip(tmp_path, path):
    cfg = load_config(path, ["optim.lr=0.003", "data.keypoints=null"])
    out = save_run_info(cfg, tmp_path / "run" / "nested")
    assert out == tmp_path / "run" / "nested" / "config.yaml" and out.is_file()
    assert load_config(out) == cfg
    assert sorted(p.name for p in out.parent.iterdir()) == ["config.yaml"]  # no temporary file left


def test_save_run_info_of_a_plain_run_config(tmp_path):
    cfg = RunConfig(model=ModelConfig(seq_len=4), seed=3)
    loaded = load_config(save_run_info(cfg, tmp_path))
    assert loaded == cfg and loaded.model.seq_len == 4


def test_run_info_contents(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(sys, "argv", ["star", "train", "--config", "x.yaml", "optim.lr=0.1"])
    out = save_run_info(load_config(None), tmp_path)
    raw = yaml.safe_load(out.read_text())
    info = read_run_info(tmp_path)
    assert info == raw["_run_"]
    assert info["star_version"] == star.__version__
    assert info["torch_version"] == torch.__version__
    assert info["argv"] == ["star", "train", "--config", "x.yaml", "optim.lr=0.1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", info["date"])
    assert info["git_sha"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", info["git_sha"])
    assert raw["data"]["dataset"] == "hitsz-vcm"  # the config follows the run info in the same file


def test_git_sha_never_fails(tmp_path, monkeypatch):
    assert git_sha(tmp_path) == "unknown"  # not a checkout
    assert git_sha(tmp_path / "missing") == "unknown"
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    assert git_sha() == "unknown"


def test_non_utf8_file_names_file_line_and_offset(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes(b"seed: 1\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml, line 2: not a UTF-8 text file \(byte 0xe9 at offset 13: "):
        load_config(tmp_path / "latin1.yaml")
