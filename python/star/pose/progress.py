"""Progress of ``star pose``: a tqdm bar on a terminal, one plain line per period elsewhere.

Redirected to a file (a Slurm log, CI) a progress bar writes a redraw per update; there
``star pose`` writes instead, every ``period_s`` seconds and once at the end::

    pose: 12800/463259 frames (2.8 %), 212.4 frames/s, ETA 0:35:20
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Callable, TextIO

DEFAULT_PERIOD_S = 30.0


def _clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """Counts frames and prints ``desc: done/total frames (%), frames/s, ETA`` once per ``period_s``."""

    def __init__(self, total: int, desc: str, stream: TextIO, period_s: float = DEFAULT_PERIOD_S,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.stream, self.period_s, self.clock = total, desc, stream, period_s, clock
        self.done = 0
        self.start = self.last = clock()

    def line(self) -> str:
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = _clock_text((self.total - self.done) / rate) if rate > 0 else "?"
        return f"{self.desc}: {self.done}/{self.total} frames ({pct:.1f} %), {rate:.1f} frames/s, ETA {eta}"

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.period_s:
            self.last = now
            self._print(self.line())

    def close(self) -> None:
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self._print(f"{self.desc}: {self.done}/{self.total} frames in {_clock_text(elapsed)}, {rate:.1f} frames/s")

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


@contextlib.contextmanager
def frame_progress(total: int, desc: str, enabled: bool = True, stream: TextIO | None = None,
                   period_s: float = DEFAULT_PERIOD_S) -> Iterator[Callable[[int], None]]:
    """An ``update(frames)`` callable: tqdm when ``stream`` (default stderr) is a terminal, else plain lines."""
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        yield lambda n: None
    elif stream.isatty():
        from tqdm.auto import tqdm

        with tqdm(total=total, unit="frame", desc=desc, file=stream, smoothing=0.1) as bar:
            yield bar.update
    else:
        plain = PlainProgress(total, desc, stream, period_s)
        try:
            yield plain.update
        finally:
            plain.close()
