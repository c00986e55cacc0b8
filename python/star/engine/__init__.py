"""star.engine: training and evaluation drivers (docs/architecture.md)."""

from .evaluator import EvalResult, evaluate, evaluate_features, write_metrics
from .features import Features, extract_features, load_npz, save_npz
from .trainer import Trainer, TrainingDiverged, train
from .visrank import write_rank_lists

__all__ = [
    "EvalResult", "Features", "evaluate", "evaluate_features", "extract_features", "load_npz", "save_npz",
    "write_metrics", "write_rank_lists", "Trainer", "TrainingDiverged", "train",
]
