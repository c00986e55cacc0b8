"""star.explain: what a trained STAR's skeleton guidance does, per modality (docs/explain.md):
joint attention and saliency, the pooling's exponent mix, the frame correction; explain.json
and pictures. It loads checkpoints and runs models, so it sits above ``star.engine``."""

from .analysis import (
    CONFIDENCE_BINS,
    DEFAULT_MAX_TRACKLETS,
    EXPLAIN_FILE,
    EXPLAIN_SPLITS,
    CorrectionProfile,
    Explanation,
    JointAttention,
    JointSaliency,
    ModalityExplanation,
    PoolingMix,
    default_output_dir,
    explain_checkpoint,
    explain_model,
    write_explanation,
)

__all__ = [
    "CONFIDENCE_BINS",
    "DEFAULT_MAX_TRACKLETS",
    "EXPLAIN_FILE",
    "EXPLAIN_SPLITS",
    "CorrectionProfile",
    "Explanation",
    "JointAttention",
    "JointSaliency",
    "ModalityExplanation",
    "PoolingMix",
    "explain_checkpoint",
    "explain_model",
    "default_output_dir",
    "write_explanation",
]
