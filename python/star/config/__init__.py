"""Run configuration: the ``RunConfig`` schema (``schema.py``)."""

from .schema import DataConfig, EvalConfig, OptimConfig, RunConfig, SyntheticDataConfig, TrainConfig

__all__ = ["DataConfig", "EvalConfig", "OptimConfig", "RunConfig", "SyntheticDataConfig", "TrainConfig"]
