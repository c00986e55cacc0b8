"""star: STAR for video-based visible-infrared person re-identification.

Data flows one way: ``star.data`` -> ``star.models`` -> ``star.metrics``;
``star.engine`` drives training and evaluation and ``star.cli`` is the only
module that parses command-line arguments.
"""

__version__ = "0.1.0"
