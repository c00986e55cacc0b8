"""Progress of ``star pose``: the shared :mod:`star.progress` counting frames (kept importable here)."""

from __future__ import annotations

from ..progress import DEFAULT_PERIOD_S, PlainProgress
from ..progress import counting_progress as frame_progress

__all__ = ["DEFAULT_PERIOD_S", "PlainProgress", "frame_progress"]
