"""One ``star pose`` per output folder (docs/reliability.md), while the parts of a ``--shard I/N`` run go side by side.

- A full run and ``--merge`` hold ``<out>/.star.lock`` and the lock of every part that ever
  ran into ``out``: a second full run, or a merge while a part still computes, fails at once
  naming the run that holds the folder.
- Part I of N holds ``<out>/.pose-work/parts/I-of-N/.star.lock`` (the same part twice fails)
  and checks that no full run or merge holds ``out``; other parts run alongside.

Locks are ``flock`` (:func:`star.fileio.exclusive_dir_lock`): the OS drops them when a run
dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..fileio import exclusive_dir_lock

PARTS_DIR = "parts"


def part_lock_dir(work: Path, part: tuple[int, int]) -> Path:
    return work / PARTS_DIR / f"{part[0]}-of-{part[1]}"


@contextlib.contextmanager
def pose_run_lock(out: Path, work: Path, part: tuple[int, int] | None) -> Iterator[None]:
    """Hold the locks of a full run / merge (``part=None``) or of part ``(I, N)`` into ``out``."""
    with contextlib.ExitStack() as stack:
        if part is None:
            stack.enter_context(exclusive_dir_lock(out, "star pose"))
            for d in sorted((work / PARTS_DIR).glob("*-of-*")):
                stack.enter_context(exclusive_dir_lock(d, "star pose (the whole store)"))
        else:
            stack.enter_context(exclusive_dir_lock(part_lock_dir(work, part), f"star pose --shard {part[0]}/{part[1]}"))
            with exclusive_dir_lock(out, f"star pose --shard {part[0]}/{part[1]} (checking)"):
                pass  # free: no full run or merge is writing into out
        yield
