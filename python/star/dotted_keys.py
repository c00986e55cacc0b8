"""Nested mappings (a run's config tree) as flat dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``.

Checkpoints compare configs key by key and the run table groups runs by them, so both
need the same flattening.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["flatten"]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists/tuples become lists."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out
