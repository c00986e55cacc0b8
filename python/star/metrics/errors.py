"""The error of star.metrics: evaluation inputs that cannot be scored."""

from __future__ import annotations

from ..errors import StarError

__all__ = ["MetricsInputError"]


class MetricsInputError(StarError, ValueError):
    """Bad input to an evaluation (shapes, NaN features, no valid query, unknown protocol or mode).

    A ``ValueError`` too, so callers that caught ``ValueError`` keep working."""
