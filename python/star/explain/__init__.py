"""star.explain: what a trained STAR's skeleton guidance does, per modality (docs/explain.md):
joint attention and saliency, the pooling's exponent mix, the frame correction; explain.json
and pictures. It loads checkpoints and runs models, so it sits above ``star.engine``.
The result's dataclasses are in ``star.explain.analysis``."""

from .analysis import EXPLAIN_FILE, Explanation, default_output_dir, explain_checkpoint, explain_model

__all__ = ["EXPLAIN_FILE", "Explanation", "default_output_dir", "explain_checkpoint", "explain_model"]
