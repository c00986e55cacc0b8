"""Generic machinery of config trees (nested dataclasses), below every layer that defines sections.

- ``build.py``: ``dataclass_from_dict`` (the one check of keys and types), ``to_plain``,
  ``ConfigError`` and the ``require`` / ``require_choice`` checks.
"""

from .build import (
    ConfigError, dataclass_from_dict, is_section, require, require_choice, section_fields, to_plain,
)

__all__ = [
    "ConfigError", "dataclass_from_dict", "is_section", "require", "require_choice", "section_fields", "to_plain",
]
