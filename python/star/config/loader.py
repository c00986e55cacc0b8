"""YAML config files with ``_base_`` inheritance and ``dotted.key=value`` overrides.

File format
-----------
A config file is a YAML mapping whose sections match ``RunConfig`` (``data``,
``model``, ``loss``, ``optim``, ``train``, ``eval`` and the top-level
``output_dir``, ``seed``, ``deterministic``). Two top-level keys are special:

``_base_``
    A path or a list of paths, relative to the file that names them (``~`` is
    expanded). The bases are loaded first, in order, and deep-merged: mappings
    merge key by key, everything else (scalars, lists, ``null``) is replaced.
    Later bases override earlier ones and the file overrides its bases. Bases
    may have bases of their own; a cycle is an error naming the files.
``_run_``
    Run information written by ``save_run_info`` (version, git SHA, ...).
    Ignored on load, so a run's ``config.yaml`` can be loaded (or used as a
    base) again.

Overrides
---------
``load_config(path, ["optim.lr=0.01", "optim.milestones=[3,5]"])``: each
override is applied after all files. The value is parsed with
``yaml.safe_load`` (``false``, ``null``, ``[1, 2]``, ``{name: resnet18}``); a
mapping value is deep-merged like a file. The key is checked against the schema
at once, so a typo names the key and lists the valid keys at that level.

Checks
------
Unknown keys (naming the file or the override that set them and the valid
keys), duplicate keys in one YAML mapping, and the type of every value against
the dataclass annotations: ints are accepted for floats, and strings such as
``1e-3`` (which YAML 1.1 reads as a string) are converted for float fields;
numbers are accepted for string fields. An empty section (``data:`` with
nothing under it) counts as ``{}``. Then the dataclasses check the choices of their
string settings (``__post_init__``) and ``ranges.check_ranges`` checks every numeric
value against its valid range (NaN and infinity never pass) and the rules across fields.

``load_config`` of a saved config (``config_to_dict``, every field spelled out)
gives back an equal ``RunConfig``.
``data.root`` and other paths are kept exactly as written (relative paths are
relative to the working directory at run time; ``~`` is not expanded).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..config_tree import ConfigError, dataclass_from_dict, is_section, section_fields
from ..fileio import not_utf8
from .ranges import check_ranges
from .schema import RunConfig

BASE_KEY = "_base_"
RUN_KEY = "_run_"


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """A config file (given, or a ``_base_`` of one) does not exist."""


# ---------------------------------------------------------------------------
# YAML reading


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key repeated inside one mapping."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key].line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_error_message(source: str, error: yaml.YAMLError) -> str:
    """``<source>, line L, column C: invalid YAML: <what>`` and the offending line."""
    mark = getattr(error, "problem_mark", None)
    if not isinstance(error, yaml.MarkedYAMLError) or mark is None:
        return f"{source}: invalid YAML: {error}"
    what = "; ".join(str(part) for part in (error.context, error.problem) if part)
    snippet = mark.get_snippet()
    return f"{source}, line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {what}" + (
        f"\n{snippet}" if snippet else ""
    )


def _read_yaml(path: Path, included_by: Path | None) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        where = f" (a {BASE_KEY} of {included_by})" if included_by is not None else ""
        raise ConfigFileNotFoundError(f"config file not found: {path}{where}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, not a file: {path}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, problem = not_utf8(raw, e)
        raise ConfigError(f"{path}, line {line}: {problem}; save it as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error_message(str(path), e)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping at top level, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: top-level keys must be strings, got {bad!r}")
    return data


# ---------------------------------------------------------------------------
# Merging, with a record of where each key was set (for error messages)


def _deep_merge(dst: dict[str, Any], src: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``src`` into ``dst`` in place: mappings recursively, anything else replaced."""
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _deep_merge(dst[key], value)
        elif isinstance(value, Mapping):
            dst[key] = _deep_merge({}, value)
        else:
            dst[key] = value
    return dst


def _record_origins(tree: Mapping[str, Any], source: str, origins: dict[str, str], prefix: str = "") -> None:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        origins[dotted] = source
        if isinstance(value, Mapping):
            _record_origins(value, source, origins, dotted + ".")


def _load_tree(path: Path, stack: list[Path], included_by: Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The merged content of ``path`` and its bases, and dotted key -> the file that set it."""
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(str(p) for p in [*stack[stack.index(resolved) :], resolved])
        raise ConfigError(f"{BASE_KEY} inheritance cycle: {chain}")
    data = _read_yaml(path, included_by)
    data.pop(RUN_KEY, None)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a path or a list of paths, got {bases!r}")

    tree: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for base in bases:
        base_path = Path(os.path.normpath(path.parent / Path(base).expanduser()))
        base_tree, base_origins = _load_tree(base_path, [*stack, resolved], path)
        _deep_merge(tree, base_tree)
        origins.update(base_origins)
    _deep_merge(tree, data)
    _record_origins(data, str(path), origins)
    return tree, origins


# ---------------------------------------------------------------------------
# Overrides


def parse_override(override: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (``["a", "b"]``, the YAML-parsed value); the key is checked against the schema."""
    if not isinstance(override, str) or "=" not in override:
        raise ConfigError(f"malformed override {override!r}: expected dotted.key=value")
    key, _, text = override.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not key or not all(parts):
        raise ConfigError(f"malformed override {override!r}: empty key or key part")
    try:
        value = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error_message(f"override {override!r}", e)) from None

    cls: Any = RunConfig
    for i, part in enumerate(parts):
        fields = section_fields(cls)
        dotted = ".".join(parts[: i + 1])
        if part not in fields:
            # the message of the one unknown-key check (dataclass_from_dict), raised here at
            # once so that the override, not a later one, is named
            dataclass_from_dict(cls, {part: None}, ".".join(parts[:i]), {dotted: f"override {override!r}"})
        cls = fields[part]
        if i < len(parts) - 1 and not is_section(cls):
            raise ConfigError(
                f"override {override!r}: {dotted} is a value, not a section (it has no key {parts[i + 1]!r})"
            )
    return parts, value


def _apply_override(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    node = tree
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(value, Mapping) and isinstance(node.get(last), dict):
        _deep_merge(node[last], value)
    elif isinstance(value, Mapping):
        node[last] = _deep_merge({}, value)
    else:
        node[last] = value


# ---------------------------------------------------------------------------
# Public API


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """``cfg.to_dict()``: every section fully spelled out (what ``save_run_info`` writes)."""
    return cfg.to_dict()


def load_config(path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a YAML config (with its ``_base_`` files) and apply ``key=value`` overrides.

    ``path=None`` starts from the defaults (full STAR on HITSZ-VCM). See the
    module docstring for the file format. Raises ``ConfigFileNotFoundError`` (a
    ``FileNotFoundError``) for a missing file and ``ConfigError`` (a ``ValueError``)
    for everything else; both are ``ConfigError``s.
    """
    if path is None:
        return config_from_dict({}, overrides, source="the defaults")
    tree, origins = _load_tree(Path(path), [], None)
    return _resolve(tree, origins, overrides, str(path))


def config_from_dict(tree: Mapping[str, Any], overrides: Sequence[str] = (), *, source: str = "a mapping") -> RunConfig:
    """Like ``load_config`` for an already parsed config tree (e.g. the one a checkpoint records)."""
    origins: dict[str, str]
    tree, origins = _deep_merge({}, tree), {}
    _record_origins(tree, source, origins)
    return _resolve(tree, origins, overrides, source)


def _resolve(tree: dict[str, Any], origins: dict[str, str], overrides: Sequence[str], described: str) -> RunConfig:
    if isinstance(overrides, str):
        overrides = [overrides]
    for override in overrides:
        parts, value = parse_override(override)
        _apply_override(tree, parts, value)
        source = f"override {override!r}"
        origins[".".join(parts)] = source
        if isinstance(value, Mapping):
            _record_origins(value, source, origins, ".".join(parts) + ".")
    if overrides:
        described += " with overrides " + " ".join(overrides)

    try:
        cfg = dataclass_from_dict(RunConfig, tree, origins=origins)
    except ConfigError:
        raise  # names the key and where it was set
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid config ({described}): {e}") from e
    try:
        check_ranges(cfg)
    except ConfigError as e:
        raise ConfigError(f"invalid config ({described}): {e}") from None
    return cfg


def format_config(cfg: RunConfig) -> str:
    """The resolved config as YAML text (every section fully spelled out)."""
    return dump_yaml(config_to_dict(cfg))


class _Dumper(yaml.SafeDumper):
    """Block-style mappings; lists of scalars inline (``milestones: [60, 120]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, (dict, list, tuple)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(tuple, _represent_list)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML text in the key order given: block mappings, lists of scalars inline."""
    return yaml.dump(
        dict(data), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )
