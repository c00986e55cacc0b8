"""Numeric ranges of settings, and the check of one section's values against them.

Sections declare their ranges where they are checked: ``star.config.ranges`` for the run
config, ``star.data.synthetic`` for the generator's settings (which the run config embeds
and ``star synth`` takes on its own).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .build import ConfigError

# Seeds feed numpy's and torch's generators, which take unsigned 32-bit (numpy) / 64-bit seeds.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``<`` where the end is open); ``None`` = unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}" if self.low is not None else "finite"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return f"{'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}{')' if self.high_open else ']'}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
FRACTION_BELOW_1 = Range(0, 1, high_open=True)  # dropout, label smoothing, momentum


def numbers(value: Any) -> Iterator[int | float]:
    """The ints and floats a setting holds: itself, or a tuple's elements (bools are not numbers)."""
    for item in value if isinstance(value, tuple) else (value,):
        if not isinstance(item, bool) and isinstance(item, (int, float)):
            yield item


def check_section_ranges(
    section: Any, ranges: Mapping[str, Range], where: str = "", error: type[Exception] = ConfigError
) -> None:
    """Raise ``error`` for the first number among ``section``'s own (not nested) fields that is not
    finite or outside its range in ``ranges`` (finite only, for a field without one), naming
    the key with the prefix ``where``. ``None`` values (optional fields left unset) pass."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            continue
        valid = ranges.get(f.name, Range())
        for item in numbers(value):
            if not math.isfinite(item) or item not in valid:
                shown = f"{value!r}" if not isinstance(value, tuple) else f"{list(value)} (element {item!r})"
                raise error(
                    f"{where}{f.name} = {shown} is out of range: it must be {valid}"
                    + (" and finite" if str(valid) != "finite" else "")
                )
