"""Evaluation metrics: CMC / mAP / mINP, the VVI-ReID protocols, re-ranking.

``evaluate_ranking`` scores any distance matrix exactly like the classic
per-query loop, vectorised and chunked (CPU or GPU). ``evaluate_hitsz_vcm``
and ``evaluate_bupt`` run the published protocols from embeddings;
``format_table`` prints their results. ``k_reciprocal_rerank`` is the
optional re-ranking of Zhong et al. (CVPR 2017).
"""

from .distance import cosine_distance
from .protocols import (IR_TO_IR, IR_TO_RGB, RGB_TO_IR, RGB_TO_RGB, evaluate_bupt,
                        evaluate_hitsz_vcm, format_table)
from .ranking import RankingResult, evaluate_ranking
from .rerank import k_reciprocal_rerank, k_reciprocal_rerank_dist

__all__ = [
    "RankingResult", "evaluate_ranking",
    "cosine_distance", "evaluate_hitsz_vcm", "evaluate_bupt", "format_table",
    "IR_TO_RGB", "RGB_TO_IR", "RGB_TO_RGB", "IR_TO_IR",
    "k_reciprocal_rerank", "k_reciprocal_rerank_dist",
]
