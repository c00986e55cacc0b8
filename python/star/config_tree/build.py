"""Building a config dataclass tree from a (parsed YAML) mapping: the one check of keys and types.

Generic: nothing here knows a particular section, so every layer that defines config
dataclasses (``star.data``, ``star.models``, ``star.losses``, ``star.config``) can use it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from ..errors import StarError

D = TypeVar("D")


class ConfigError(StarError, ValueError):
    """A config file, override or mapping is malformed, unknown or invalid (``star.config.ConfigError``)."""


def dataclass_from_dict(
    cls: type[D], data: Mapping[str, Any] | D, where: str = "", origins: Mapping[str, str] | None = None
) -> D:
    """Build dataclass ``cls`` from a (nested) mapping: the one check of config keys and types.

    Recurses into nested dataclass fields (``None`` counts as an empty section). An unknown
    key raises :class:`ConfigError` naming the dotted key, where it was set
    (``origins[dotted] -> "file"`` or ``"override 'k=v'"``, when given) and the valid keys.
    Values are checked against the annotations: ints are accepted for floats, strings such
    as ``1e-3`` (which YAML 1.1 reads as a string) are converted for float fields, numbers
    are accepted for string fields, lists become tuples for tuple fields. The dataclasses
    then check their choices (``__post_init__``); value ranges and rules across fields are
    checked when a whole run config is loaded (``star.config.ranges``).
    """
    if isinstance(data, cls):
        return data
    origins = origins or {}
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        source = origins.get(where)
        where_set = f" ({source})" if source else ""
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {data!r}{where_set}")
    fields = section_fields(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else str(key)
        source = origins.get(dotted)
        where_set = f" ({source})" if source else ""
        if key not in fields:
            raise ConfigError(f"unknown config key {dotted!r}{where_set}; valid keys: {', '.join(fields)}")
        hint = fields[key]
        if is_section(hint):
            kwargs[key] = dataclass_from_dict(hint, value, dotted, origins)
            continue
        try:
            kwargs[key] = _coerce(value, hint)
        except _TypeMismatch:
            raise ConfigError(f"{dotted} must be {_type_name(hint)}, got {value!r}{where_set}") from None
    return cls(**kwargs)


def is_section(hint: Any) -> bool:
    """Whether a field annotation is a nested config section (a dataclass)."""
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def section_fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation of dataclass ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    return getattr(hint, "__name__", str(hint))


class _TypeMismatch(Exception):
    pass


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` checked against ``hint`` (tuples for tuple fields), or ``_TypeMismatch``."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except _TypeMismatch:
                pass
        raise _TypeMismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _TypeMismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _TypeMismatch
        return tuple(_coerce(v, a) for v, a in zip(value, args, strict=False))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _TypeMismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _TypeMismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _TypeMismatch
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _TypeMismatch
    return value  # a type this schema does not use: leave it to the dataclass


def to_plain(value: Any) -> Any:
    """Nested dicts/lists/tuples as plain dicts and lists (YAML/JSON/checkpoint-ready)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def require(condition: bool, message: str) -> None:
    """``ConfigError(message)`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def require_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    """``ConfigError`` naming ``key``, ``value`` and the valid ``choices`` unless ``value`` is one of them."""
    require(value in choices, f"{key} must be one of {', '.join(choices)}, got {value!r}")
