"""Arguments several ``star`` commands share, and the run config they describe."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from star.config import RunConfig


class _DatasetNames:
    """``choices`` for ``--dataset``: ``star.data.DATASET_NAMES``, read only when an argument is
    checked or help is printed (importing star.data takes seconds; ``star --version`` should not)."""

    @staticmethod
    def _names() -> tuple[str, ...]:
        from star.data.registry import DATASET_NAMES

        return DATASET_NAMES

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=_DatasetNames(), metavar="NAME", help="dataset: %(choices)s")
    p.add_argument("--root", required=True, help="dataset root directory")


def add_config(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--config", required=required, help="YAML config (configs/...); _base_ files are inherited")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. optim.lr=0.01 data.root=/data/HITSZ-VCM train.amp=false",
    )


def add_checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", required=True, help="best.pt / last.pt of a run (its config is used unless --config)"
    )


def add_checkpoint_or_features(p: argparse.ArgumentParser) -> None:
    add_config(p, required=False)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="best.pt / last.pt of a run (its config is used unless --config)")
    source.add_argument("--features", help="a features .npz written by `star extract` (needs --config)")


def add_force(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help=f"replace an existing output file that is not a {kind} (never an input of the command)",
    )


def run_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of a command: --config (else the checkpoint's own config) plus overrides."""
    from star.config import ConfigError, config_from_dict, load_config

    if args.config is None and getattr(args, "checkpoint", None):
        from star.engine.inference import run_config_from_checkpoint

        tree = run_config_from_checkpoint(args.checkpoint)
        return config_from_dict(tree, args.overrides, source=f"the config saved in {args.checkpoint}")
    if args.config is None:
        raise ConfigError("--config is required")
    return load_config(args.config, args.overrides)
