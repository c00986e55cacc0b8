"""star.reports: what runs write and read for people (docs/architecture.md): feature files
(``.npz``), ``metrics.json`` and its CMC plot, rank-list pictures and the table of runs.

Nothing here trains or runs a model: it sits below ``star.engine``, which calls it.
"""

from .feature_files import FeatureFileError, Features, load_npz, save_npz
from .metrics_file import METRICS_FILE, write_metrics
from .rank_lists import write_rank_lists
from .run_table import run_table

__all__ = [
    "FeatureFileError",
    "Features",
    "METRICS_FILE",
    "load_npz",
    "run_table",
    "save_npz",
    "write_metrics",
    "write_rank_lists",
]
