"""Run configuration.

- ``schema.py``: the ``RunConfig`` dataclasses (data, model, loss, optim, train, eval).
- ``loader.py``: ``load_config`` (YAML files with ``_base_`` inheritance and
  ``dotted.key=value`` overrides) and ``format_config``.
- ``ranges.py``: the valid range of every numeric field and the cross-field rules
  (``check_ranges``, run by ``load_config``).
- ``run_info.py``: ``save_run_info`` (``<output_dir>/config.yaml`` with the
  resolved config and a ``_run_`` section: version, git SHA, torch, date, argv).
"""

from .loader import (
    ConfigError,
    ConfigFileNotFoundError,
    config_from_dict,
    config_to_dict,
    format_config,
    load_config,
    parse_override,
)
from .ranges import check_ranges
from .run_info import git_sha, read_run_info, run_info, save_run_info
from .schema import DataConfig, EvalConfig, OptimConfig, RunConfig, TrainConfig

__all__ = [
    "ConfigError",
    "ConfigFileNotFoundError",
    "DataConfig",
    "EvalConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "check_ranges",
    "config_from_dict",
    "config_to_dict",
    "format_config",
    "git_sha",
    "load_config",
    "parse_override",
    "read_run_info",
    "run_info",
    "save_run_info",
]
