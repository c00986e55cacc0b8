"""Evaluation metrics: CMC / mAP / mINP, the VVI-ReID protocols, re-ranking.

``evaluate_ranking`` scores any distance matrix exactly like the classic
per-query loop, vectorised and chunked (CPU or GPU). ``star.metrics.protocols``
owns the published protocols (names, ``resolve_protocol``, ``mode_sets``);
``evaluate_protocol`` (and ``evaluate_hitsz_vcm`` / ``evaluate_bupt``) run them from embeddings;
``format_table`` prints their results. ``k_reciprocal_rerank`` is the
optional re-ranking of Zhong et al. (CVPR 2017).
"""

from .distance import cosine_distance, feature_pair
from .errors import MetricsInputError
from .protocols import (
    AUTO,
    CMC_RANKS,
    IR_TO_IR,
    IR_TO_RGB,
    MODE_MODALITIES,
    PROTOCOL_CHOICES,
    PROTOCOLS,
    RGB_TO_IR,
    RGB_TO_RGB,
    ModeSets,
    evaluate_bupt,
    evaluate_hitsz_vcm,
    evaluate_protocol,
    format_table,
    mode_sets,
    official_dropped_keep,
    resolve_protocol,
    same_pid_same_camera,
)
from .ranking import RankingResult, evaluate_ranking
from .rerank import k_reciprocal_rerank, k_reciprocal_rerank_dist

__all__ = [
    "RankingResult",
    "evaluate_ranking",
    "cosine_distance",
    "feature_pair",
    "MetricsInputError",
    "evaluate_protocol",
    "evaluate_hitsz_vcm",
    "evaluate_bupt",
    "format_table",
    "IR_TO_RGB",
    "RGB_TO_IR",
    "RGB_TO_RGB",
    "IR_TO_IR",
    "MODE_MODALITIES",
    "AUTO",
    "PROTOCOLS",
    "PROTOCOL_CHOICES",
    "CMC_RANKS",
    "ModeSets",
    "mode_sets",
    "official_dropped_keep",
    "resolve_protocol",
    "same_pid_same_camera",
    "k_reciprocal_rerank",
    "k_reciprocal_rerank_dist",
]
