"""Dataset names -> readers, the published counts, and the summary printed on load."""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from .bupt import read_bupt
from .errors import DataError
from .hitsz_vcm import read_hitsz_vcm
from .listfile import read_list_dataset
from .tracklet import SPLITS, VideoReidData
from .validate import require_frames, require_splits

logger = logging.getLogger(__name__)


class DataWarning(UserWarning):
    """A dataset loaded, but something about it deserves attention (e.g. unexpected counts)."""


_READERS: dict[str, Callable[..., VideoReidData]] = {
    "hitsz-vcm": read_hitsz_vcm,
    "bupt": read_bupt,
    # The synthetic dataset is written in the HITSZ-VCM layout.
    "synthetic": partial(read_hitsz_vcm, name="synthetic"),
    "list": read_list_dataset,
}
DATASET_NAMES: tuple[str, ...] = tuple(_READERS)

# Counts of the real releases with the default options (docs/protocols.md), as
# "<split>.<count>" (split "test" = query and gallery together).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "hitsz-vcm": {
        "train.tracklets": 9751,
        "train.ir": 4291,
        "train.rgb": 5460,
        "train.ids": 500,
        "query.tracklets": 4584,
        "query.ir": 4584,
        "gallery.tracklets": 5099,
        "gallery.rgb": 5099,
        "test.ids": 427,
    },
    "bupt": {
        "train.ids": 1074,
        "train.ir": 3574,
        "train.rgb": 3574,
        "query.tracklets": 1076,
        "query.ir": 536,
        "query.rgb": 540,
        "gallery.tracklets": 4844,
        "gallery.ir": 2422,
        "gallery.rgb": 2422,
    },
}


def count_mismatches(data: VideoReidData) -> list[str]:
    """Differences between the loaded counts and the published ones (empty for other datasets)."""
    expected = EXPECTED_COUNTS.get(data.name)
    if not expected:
        return []
    counts = {f"{s}.{k}": v for s, st in data.stats().items() for k, v in st.items()}
    counts["test.ids"] = len({t.pid for t in data.query + data.gallery})
    return [f"{key}: {counts[key]} (expected {value})" for key, value in expected.items() if counts[key] != value]


def format_summary(data: VideoReidData) -> str:
    """A per-split table: tracklets, identities, frames, tracklets per modality."""
    stats = data.stats()
    lines = [
        f"{data.name} at {data.root}",
        f"  {'split':<8} {'tracklets':>9} {'ids':>6} {'frames':>9} {'ir':>7} {'rgb':>7}",
    ]
    for split in SPLITS:
        s = stats[split]
        lines.append(f"  {split:<8} {s['tracklets']:>9} {s['ids']:>6} {s['frames']:>9} {s['ir']:>7} {s['rgb']:>7}")
    return "\n".join(lines)


def _uses_defaults(reader: Callable[..., VideoReidData], options: dict[str, Any]) -> bool:
    params = inspect.signature(reader).parameters
    return all(k in params and params[k].default == v for k, v in options.items())


def load_dataset(
    name: str,
    root: str | Path,
    *,
    verbose: bool = True,
    required_splits: Iterable[str] = SPLITS,
    check_frames: bool = True,
    **options: Any,
) -> VideoReidData:
    """Read dataset ``name`` (one of ``DATASET_NAMES``) under ``root`` and check it is usable.

    ``options`` go to the reader (e.g. ``min_frames``, ``auxiliary`` for bupt).
    With ``verbose`` the counts are printed. Annotation problems that published code
    tolerates, and counts that differ from the published ones (real datasets with
    default options only), are reported as ``DataWarning``. Raises ``EmptySplitError``
    when one of ``required_splits`` has no tracklet and, with ``check_frames``,
    ``MissingFramesError`` when a listed frame file does not exist.
    """
    if name not in _READERS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    if Path(root).exists() and not Path(root).is_dir():  # else each reader reports its first file "missing"
        raise DataError(
            f"the dataset root {root} is a file, not a folder; give the folder that holds the {name} dataset"
        )
    data = _READERS[name](root, **options)
    if verbose:
        logger.info("%s", format_summary(data))
    for message in data.warnings:
        warnings.warn(message, DataWarning, stacklevel=2)
    if _uses_defaults(_READERS[name], options):  # published counts hold for the default protocol only
        mismatches = count_mismatches(data)
        if mismatches:
            warnings.warn(
                f"{name} at {root}: counts differ from the published release: " + "; ".join(mismatches),
                DataWarning,
                stacklevel=2,
            )
    require_splits(data, required_splits)
    if check_frames:
        require_frames(data)
    return data
