"""star.explain: what a trained STAR's skeleton guidance does, per modality (docs/explain.md):
joint attention and saliency, the pooling's exponent mix, the frame correction; explain.json
and pictures. It loads checkpoints and runs models, so it sits above ``star.engine``."""

from .analysis import *  # noqa: F403  (the names of analysis.__all__)
from .analysis import __all__
