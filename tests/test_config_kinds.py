"""Which config keys may change on resume, at evaluation, or without changing a table row.

Each verdict is observed through the code that uses it (``config_differences`` on resume,
``_evaluation_model`` at evaluation, ``star table``'s grouping) for every flattened key of
a default ``RunConfig``, and compared with explicit sets, so a new field or a changed kind
shows up here by name. The verdicts follow the kind each field declares
(``star.config_tree.Kind``); the sets were those of the hand-written key lists before,
except three model keys (see the comments at ``RESUMABLE`` and ``TRAINING_ONLY``).
"""

from __future__ import annotations

import pytest

from star.config import ConfigError, RunConfig
from star.config_tree import Kind, field_kinds, key_matches, keys_where, setting
from star.dotted_keys import flatten
from star.engine.checkpoint import config_differences
from star.engine.inference import _evaluation_model
from star.reports.run_table import Run, _differing

KEYS = sorted(flatten(RunConfig().to_dict()))


def nested(flat: dict) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return tree


def changed(key: str) -> tuple[dict, dict]:
    """The default config, flattened, and the same with ``key`` set to another value."""
    a = flatten(RunConfig().to_dict())
    return a, {**a, key: "<changed>"}


# Keys that may differ between an interrupted run and its resumption. model.neck_feat (which
# embedding evaluation compares, like the eval section) and model.use_fused_ops (the same
# maths by other kernels, like train.compile) were not resumable before the kinds.
RESUMABLE = {
    "output_dir",
    "deterministic",
    "optim.epochs",
    "model.neck_feat",
    "model.use_fused_ops",
    "data.root",
    "data.keypoints",
    "data.num_workers",
    "data.eval_batch_size",
    *(k for k in KEYS if k.startswith(("train.", "eval.", "data.synthetic."))),
}
# Model keys a config may change at evaluation (applied to the checkpoint's network).
EVAL_TIME = {"model.neck_feat", "model.use_fused_ops"}
# Model keys ignored at evaluation (the checkpoint's values hold). model.neck_init (the BN
# neck's initial weights, which the checkpoint's replace, like backbone.pretrained) had to
# match the checkpoint before the kinds.
TRAINING_ONLY = {
    "model.backbone.pretrained",
    "model.backbone.require_pretrained",
    "model.neck_init",
    "model.frame_correction.attention_dropout",
    "model.sequence.dropout",
    "model.sequence.attention_dropout",
    *(k for k in KEYS if k.startswith("model.style.")),
}
# Keys that do not split a star table row (the seed is what a row averages over).
TABLE_IGNORES = {
    "seed",
    "output_dir",
    "data.root",
    "data.keypoints",
    "data.num_workers",
    "data.eval_batch_size",
    "train.device",
    "train.progress",
    "train.tensorboard",
    "train.log_period",
    "train.checkpoint_period",
    "train.resume",
    "train.eval_period",
    "eval.visrank_topk",
    "eval.visrank_queries",
}


def test_the_expected_sets_name_real_keys():
    assert len(KEYS) > 100
    assert (RESUMABLE | EVAL_TIME | TRAINING_ONLY | TABLE_IGNORES) <= set(KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_resume_allows_exactly_the_resumable_keys(key):
    a, b = changed(key)
    assert (config_differences(nested(a), nested(b)) == []) == (key in RESUMABLE)


@pytest.mark.parametrize("key", [k for k in KEYS if k.startswith("model.")])
def test_evaluation_applies_eval_time_keys_ignores_training_only_ones(key):
    a, b = changed(key)
    saved, requested = nested(a)["model"], nested(b)["model"]
    if key in EVAL_TIME | TRAINING_ONLY:
        chosen = flatten({"model": _evaluation_model("ckpt.pt", saved, requested)})
        assert chosen[key] == (b[key] if key in EVAL_TIME else a[key])
        others = {k: v for k, v in a.items() if k.startswith("model.") and k != key}
        assert {k: v for k, v in chosen.items() if k != key} == others
    else:
        with pytest.raises(ConfigError, match=key):
            _evaluation_model("ckpt.pt", saved, requested)


@pytest.mark.parametrize("key", KEYS)
def test_star_table_groups_over_exactly_the_result_independent_keys(key):
    a, b = changed(key)
    runs = [Run(None, a, {}), Run(None, b, {})]
    assert (_differing(runs) == []) == (key in TABLE_IGNORES)


def test_every_setting_declares_a_kind():
    kinds = field_kinds(RunConfig)
    assert sorted(kinds) == KEYS
    assert {kinds[k] for k in KEYS if k.startswith("data.synthetic.")} == {Kind.DATA_GENERATION}  # from the section
    assert kinds["model.backbone.name"] is Kind.ARCHITECTURE and kinds["optim.epochs"] is Kind.TRAINING_LENGTH


def test_a_field_without_a_kind_is_named():
    from dataclasses import dataclass

    @dataclass
    class Section:
        a: int = setting(Kind.DATA, 1)
        b: int = 2

    with pytest.raises(TypeError, match=r"config field s\.b \(Section\.b\) declares no kind"):
        field_kinds(Section, "s.")


def test_a_section_of_wanted_settings_is_one_entry_covering_keys_it_no_longer_has():
    keys = keys_where(RunConfig, lambda kind: kind.resumable)
    assert "train." in keys and not any(k.startswith("train.") and k != "train." for k in keys)
    assert key_matches("train.a_removed_setting", keys) and not key_matches("trainer.x", keys)
    assert key_matches("optim.epochs", keys) and not key_matches("optim.epochs_x", keys)
