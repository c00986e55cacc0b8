"""Progress of long loops: a tqdm bar on a terminal, plain lines elsewhere (torch-free).

Redirected to a file (a Slurm log, CI) a progress bar writes a redraw per update (the
demo's log was 75 KB of them); there the loops of ``star pose``, feature extraction
and training print one plain line per period instead::

    pose: 12800/463259 frames (2.8 %), 212.4 frames/s, ETA 0:35:20

:func:`on_terminal` is the one rule for "bar or lines"; :func:`counting_progress` counts
items per time period (pose frames, feature batches); training prints its own line per
``train.log_period`` (``star.engine.log_hooks.ConsoleLogHook``) with :func:`format_duration`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

DEFAULT_PERIOD_S = 30.0


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (``?`` for a duration that is not known: NaN or infinite)."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stderr, where bars go) is a terminal: bars there, plain lines elsewhere."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class PlainProgress:
    """Counts items and prints ``desc: done/total unit (%), unit/s, ETA`` once per ``period_s``."""

    def __init__(
        self,
        total: int,
        desc: str,
        stream: TextIO,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "frames",
    ):
        self.total, self.desc, self.stream, self.period_s, self.clock = total, desc, stream, period_s, clock
        self.unit = unit
        self.done = 0
        self.start = self.last = clock()

    def line(self) -> str:
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
        u = self.unit
        return f"{self.desc}: {self.done}/{self.total} {u} ({pct:.1f} %), {rate:.1f} {u}/s, ETA {eta}"

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.period_s:
            self.last = now
            self._print(self.line())

    def close(self) -> None:
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self._print(
            f"{self.desc}: {self.done}/{self.total} {self.unit} in {format_duration(elapsed)}, {rate:.1f} {self.unit}/s"
        )

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


@contextlib.contextmanager
def counting_progress(
    total: int,
    desc: str,
    enabled: bool = True,
    stream: TextIO | None = None,
    period_s: float = DEFAULT_PERIOD_S,
    unit: str = "frames",
) -> Iterator[Callable[[int], None]]:
    """An ``update(n)`` callable: tqdm when ``stream`` (default stderr) is a terminal, else plain lines."""
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        yield lambda n: None
    elif on_terminal(stream):
        from tqdm.auto import tqdm

        with tqdm(total=total, unit=unit.rstrip("s"), desc=desc, file=stream, smoothing=0.1) as bar:
            yield bar.update
    else:
        plain = PlainProgress(total, desc, stream, period_s, unit=unit)
        try:
            yield plain.update
        finally:
            plain.close()
