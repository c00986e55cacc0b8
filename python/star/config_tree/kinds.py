"""The kind of every config setting, declared on its dataclass field, and queries over it.

A field says what kind of setting it is with ``setting(Kind.X, default)`` (a
``dataclasses.field`` whose metadata holds the kind). A section field may carry a kind
too: it applies to every setting below it that declares none (``data.synthetic``: the
generator's own dataclass stays a plain list of settings). Each kind states once whether
its settings may change when a training resumes and whether they change a run's result;
the engine's key lists (resume, evaluation of a checkpoint, ``star table`` rows) are
queries of these kinds (``keys_where``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from .build import is_section, section_fields

KIND = "kind"  # the metadata key


class Kind(Enum):
    """What a setting is about: (name, may change on resume, changes the result)."""

    ARCHITECTURE = ("architecture", False, True)  # the network and the shapes of its weights
    TRAINING = ("training", False, True)  # the recipe: optimiser, losses, batches, augmentation, dropout, init, seed
    TRAINING_LENGTH = ("training length", True, True)  # optim.epochs: a run is extended by raising it
    DATA = ("data", False, True)  # which data, at which frame size
    # how a dataset is generated when its folder holds none yet; the checkpoint's data
    # fingerprint, not these settings, guards the data a run resumes on
    DATA_GENERATION = ("data generation", True, True)
    EVALUATION = ("evaluation", True, True)  # how the test split is scored, which embedding is compared
    NUMERICS = ("numerics", True, True)  # the same maths with other kernels or rounding (amp, compile, fused ops)
    RUNTIME = ("runtime", True, False)  # which device, how many workers, how large the evaluation batches
    LOCATION = ("location", True, False)  # where the files are read and written
    OUTPUT = ("output", True, False)  # what is logged, drawn or checkpointed along the way, and how often

    def __init__(self, label: str, resumable: bool, changes_result: bool):
        self.label = label
        self.resumable = resumable
        self.changes_result = changes_result


def setting(kind: Kind, default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field of ``kind`` (for a section field: the kind of the settings below it)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={KIND: kind})


def field_kinds(cls: type, prefix: str = "", inherited: Kind | None = None) -> dict[str, Kind]:
    """Dotted key -> kind of every setting (leaf field) under dataclass ``cls``, keys prefixed by ``prefix``."""
    kinds: dict[str, Kind] = {}
    hints = section_fields(cls)
    for f in dataclasses.fields(cls):
        key, kind = f"{prefix}{f.name}", f.metadata.get(KIND, inherited)
        if is_section(hints[f.name]):
            kinds.update(field_kinds(hints[f.name], key + ".", kind))
        elif kind is None:
            raise TypeError(f"config field {key} ({cls.__name__}.{f.name}) declares no kind: use setting(Kind.X, ...)")
        else:
            kinds[key] = kind
    return kinds


def keys_where(
    cls: type, wanted: Callable[[Kind], bool], prefix: str = "", inherited: Kind | None = None
) -> tuple[str, ...]:
    """The settings under ``cls`` whose kind is ``wanted``, as dotted keys; a section whose
    settings are all wanted is one entry ending in ``"."`` (see ``key_matches``), so that a
    key it no longer has (in an older checkpoint or run folder) counts as wanted too."""
    kinds = field_kinds(cls, prefix, inherited)
    hints = section_fields(cls)
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        key, hint = f"{prefix}{f.name}", hints[f.name]
        if not is_section(hint):
            keys += [key] if wanted(kinds[key]) else []
        elif all(wanted(kind) for k, kind in kinds.items() if k.startswith(key + ".")):
            keys.append(key + ".")
        else:
            keys += keys_where(hint, wanted, key + ".", f.metadata.get(KIND, inherited))
    return tuple(keys)


def key_matches(key: str, keys: Iterable[str]) -> bool:
    """Whether dotted ``key`` is one of ``keys``, where an entry ending in ``"."`` stands for its section."""
    return any(key.startswith(k) if k.endswith(".") else key == k for k in keys)
