"""Run configuration.

- ``schema.py``: the ``RunConfig`` dataclasses (data, model, loss, optim, train, eval).
- ``loader.py``: ``load_config`` (YAML files with ``_base_`` inheritance and
  ``dotted.key=value`` overrides) and ``format_config``.
- ``run_info.py``: ``save_run_info`` (``<output_dir>/config.yaml`` with the
  resolved config and a ``_run_`` section: version, git SHA, torch, date, argv).
"""

from .loader import ConfigError, ConfigFileNotFoundError, config_from_dict, config_to_dict, format_config, load_config, parse_override
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
