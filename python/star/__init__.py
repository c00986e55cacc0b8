"""star: STAR for video-based visible-infrared person re-identification.

Data flows one way: ``star.data`` -> ``star.models`` -> ``star.metrics``;
``star.engine`` drives training and evaluation and ``star.cli`` is the only
module that parses command-line arguments.
"""

from ._version import __version__

__all__ = ["__version__", "build_model", "evaluate", "train"]


def build_model(cfg, num_classes):
    """Build the STAR network for ``num_classes`` identities from a ``star.models.ModelConfig``
    or a mapping (see ``star.models``)."""
    from .models import build_model as _build_model

    return _build_model(cfg, num_classes)


def train(cfg):
    """Train (or resume) the run described by a ``star.config.RunConfig`` (see ``star.engine.train``)."""
    from .engine import train as _train

    return _train(cfg)


def evaluate(model, data, keypoints, cfg, **kwargs):
    """Evaluate ``model`` on ``data``'s query/gallery under ``cfg`` (see ``star.engine.evaluate``)."""
    from .engine import evaluate as _evaluate

    return _evaluate(model, data, keypoints, cfg, **kwargs)
