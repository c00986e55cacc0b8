"""Generic machinery of config trees (nested dataclasses), below every layer that defines sections.

- ``build.py``: ``dataclass_from_dict`` (the one check of keys and types), ``to_plain``,
  ``ConfigError`` and the ``require`` / ``require_choice`` checks.
- ``ranges.py``: ``Range`` and ``check_section_ranges`` (numeric settings, one section at a time).
- ``kinds.py``: the kind of every setting (``setting(Kind.X, default)`` on its field) and
  the queries of the key lists that depend on it (``keys_where``, ``key_matches``).
"""

from .build import (
    ConfigError,
    dataclass_from_dict,
    is_section,
    require,
    require_choice,
    section_fields,
    to_plain,
)
from .kinds import Kind, field_kinds, key_matches, keys_where, setting

__all__ = [
    "ConfigError",
    "Kind",
    "dataclass_from_dict",
    "field_kinds",
    "is_section",
    "key_matches",
    "keys_where",
    "require",
    "require_choice",
    "section_fields",
    "setting",
    "to_plain",
]
