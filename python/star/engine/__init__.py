"""star.engine: training and evaluation drivers (docs/architecture.md); what they write for
people to read (feature files, rank lists, metrics.json, the run table) is ``star.reports``."""

from .evaluator import EvalResult, evaluate, evaluate_features
from .feature_extraction import extract_features
from .trainer import Trainer, TrainingDiverged, train

__all__ = ["EvalResult", "evaluate", "evaluate_features", "extract_features", "Trainer", "TrainingDiverged", "train"]
