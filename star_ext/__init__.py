"""star_ext: the fused ops of STAR as torch custom ops (``torch.ops.star.*``).

``keypoint_pool``, ``guided_gem_pool`` and ``keypoint_graph_attention`` run the
compiled kernels of ``star_ext._C`` when it is built, and the pure-PyTorch
references of ``star_ext.reference`` otherwise (with one warning; set
``STAR_EXT_REQUIRED=1`` to make that an error). ``python -m star_ext`` prints
what was built.
"""

from __future__ import annotations

from ._loader import FALLBACK_REASON, HAS_C, ExtensionMismatchError
from .build_info import build_info, format_build_info
from .graph import COCO_BONES, NUM_COCO_KEYPOINTS, edges_to_csr, skeleton_graph
from .ops import guided_gem_pool, keypoint_graph_attention, keypoint_pool, validate_csr

__all__ = [
    "HAS_C",
    "FALLBACK_REASON",
    "ExtensionMismatchError",
    "build_info",
    "format_build_info",
    "COCO_BONES",
    "NUM_COCO_KEYPOINTS",
    "edges_to_csr",
    "skeleton_graph",
    "keypoint_pool",
    "guided_gem_pool",
    "keypoint_graph_attention",
    "validate_csr",
]
