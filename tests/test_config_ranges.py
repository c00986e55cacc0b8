"""Every numeric config value is range-checked at load: one ConfigError naming key, value and range."""

from __future__ import annotations

import math

import pytest

from star.cli import main
from star.config import ConfigError, RunConfig, check_ranges, load_config
from star.config.ranges import FIELD_RANGES, Range, numeric_fields


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.gamma=-1", r"optim.gamma = -1.0 is out of range: it must be \(0, 1\]"),
        ("optim.momentum=-0.5", r"optim.momentum = -0.5 is out of range: it must be \[0, 1\)"),
        ("optim.weight_decay=-1e-4", r"optim.weight_decay = -0.0001 is out of range: it must be >= 0"),
        ("seed=-1", r"seed = -1 is out of range: it must be \[0, 4294967295\]"),
        ("loss.triplet_weight=.nan", r"loss.triplet_weight = nan is out of range: it must be >= 0 and finite"),
        ("loss.consistency_tau=.inf", r"loss.consistency_tau = inf is out of range"),
        (
            "model.pooling.exponents=[1, 2000]",
            r"model.pooling.exponents = \[1.0, 2000.0\] \(element 2000.0\) is out of range: it must be \[0.1, 1000\]",
        ),
        ("model.pooling.exponents=[0.05, 3]", r"model.pooling.exponents = .*element 0.05.* it must be \[0.1, 1000\]"),
        (
            "model.frame_correction.num_heads=3",
            r"model.frame_correction.num_heads = 3 is out of range: it must be a divisor of the feature size 2048",
        ),
        ("data.synthetic.seed=-3", r"data.synthetic.seed = -3 is out of range"),
        ("loss.triplet_weight=-1", r"loss.triplet_weight = -1.0 is out of range: it must be >= 0"),
        ("model.sequence.dropout=1.0", r"model.sequence.dropout = 1.0 is out of range: it must be \[0, 1\)"),
        ("optim.warmup_epochs=300", r"optim.warmup_epochs = 300 is out of range: it must be <= optim.epochs = 200"),
        ("optim.milestones=[120, 60]", r"optim.milestones = \[120, 60\] is out of range: it must be increasing"),
        ("model.style.scale_range=[1.5, 0.5]", r"model.style.scale_range = \[1.5, 0.5\] .* low <= high"),
        ("model.pooling.exponents=[]", r"model.pooling.exponents = \[\] .* a non-empty list"),
        ("model.pooling={eps: 0, floor: 0}", r"model.pooling.floor = 0.0 .* > 0 when model.pooling.eps = 0"),
        (
            "model.backbone={pretrained: null, require_pretrained: true}",
            r"model.backbone.require_pretrained = True .* false when model.backbone.pretrained is null",
        ),
    ],
)
def test_out_of_range_values_are_one_config_error(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(None, [override])
    assert f"override {override!r}" in str(err.value) or "with overrides" in str(err.value)


def test_cross_field_rule_follows_the_backbone():
    # 512 (resnet18) is divisible by 8, 2048 too; 6 divides neither
    assert load_config(None, ["model.backbone.name=resnet18", "model.frame_correction.num_heads=8"])
    with pytest.raises(ConfigError, match="divisor of the feature size 512 of model.backbone.name=resnet18"):
        load_config(None, ["model.backbone.name=resnet18", "model.frame_correction.num_heads=6"])
    # without frame correction the heads are unused
    load_config(None, ["model.frame_correction.enabled=false", "model.frame_correction.num_heads=6"])


def test_every_numeric_field_has_a_range_and_the_defaults_are_inside():
    missing = [key for key, cls, name in numeric_fields(RunConfig) if name not in FIELD_RANGES.get(cls, {})]
    assert not missing, f"numeric config fields without a range in star.config.ranges: {missing}"
    check_ranges(RunConfig())


def test_python_built_config_is_checked_by_train(tmp_path):
    from star.engine import train

    cfg = RunConfig()
    cfg.optim.gamma = -1.0
    with pytest.raises(ConfigError, match="optim.gamma = -1.0"):
        train(cfg)


def test_range_text():
    assert str(Range(0, 1, high_open=True)) == "[0, 1)" and str(Range(0, low_open=True)) == "> 0"
    assert 1 not in Range(0, 1, high_open=True) and 0 in Range(0) and math.inf in Range()


def test_synth_seed_is_checked(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "d"), "--seed", "-1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: star synth setting seed = -1 is out of range") and err.count("\n") == 1
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "overrides, weight, switch",
    [
        (["model.sequence.enabled=false"], "loss.pose_weight = 1.0", "model.sequence.enabled"),
        (
            ["model.sequence.enabled=false", "loss.pose_weight=0"],
            "loss.consistency_weight = 1.0",
            "model.sequence.enabled",
        ),
        (["model.sequence.pose_classifier=false"], "loss.pose_weight = 1.0", "model.sequence.pose_classifier"),
        (["model.style.disturbance=false"], "loss.defence_weight = 1.0", "model.style.disturbance"),
        (
            ["model.frame_correction.enabled=false", "model.sequence.enabled=false", "loss.pose_weight=0"],
            "loss.consistency_weight = 1.0",
            "model.sequence.enabled",
        ),
    ],
)
def test_a_loss_weight_for_a_switched_off_part_is_one_config_error(overrides, weight, switch):
    with pytest.raises(
        ConfigError,
        match=rf"{weight} needs a model part that {switch} = false switches off; "
        rf"set {weight.split()[0]}: 0 or {switch}: true",
    ):
        load_config(None, overrides)


def test_a_zero_weight_for_a_switched_off_part_loads():
    # the baseline rows: no skeleton modules, no disturbance, their weights 0; frame_id needs neither
    cfg = load_config(
        None,
        [
            "model.sequence.enabled=false",
            "model.frame_correction.enabled=false",
            "model.style.disturbance=false",
            "loss.pose_weight=0",
            "loss.consistency_weight=0",
            "loss.defence_weight=0",
            "loss.frame_id_weight=2",
        ],
    )
    assert cfg.loss.frame_id_weight == 2


def test_train_checks_the_loss_weights_of_a_python_built_config():
    from star.engine import train

    cfg = RunConfig()
    cfg.model.style.disturbance = False
    with pytest.raises(ConfigError, match="loss.defence_weight = 1.0 needs .* model.style.disturbance = false"):
        train(cfg)
