"""What a keypoint store may hold (docs/protocols.md), and the check ``KeypointStore.verify`` runs.

Rules, per keypoint (x, y, conf):

- every value is finite (NaN or inf anywhere is an error, even for undetected keypoints);
- conf is in [0, 1] (0 = not detected);
- a detected keypoint (conf > 0) has x and y in [-COORD_MARGIN, 1 + COORD_MARGIN]: normalized
  to the frame, with a margin for detectors that place a joint just outside the crop. Far
  outside means pixel coordinates or another normalization, which the model would silently
  misread. Undetected keypoints' x, y carry no meaning and are not range-checked.

The check reads the memory-mapped array in chunks, so it costs one pass over the file and
little memory (about 0.1 s for HITSZ-VCM's 463k frames in float16 on one core).
"""

from __future__ import annotations

import numpy as np

from .skeleton import COCO17_KEYPOINTS

COORD_MARGIN = 0.05
_CHUNK_ROWS = 1 << 16
_FIELDS = ("x", "y", "conf")


def _bad_mask(chunk: np.ndarray) -> np.ndarray:
    """[rows, 17, 3] bool: which values break the rules above."""
    finite = np.isfinite(chunk)
    conf = chunk[..., 2]
    bad = ~finite
    bad[..., 2] |= (conf < 0) | (conf > 1)
    coords = chunk[..., :2]
    outside = (coords < -COORD_MARGIN) | (coords > 1 + COORD_MARGIN)
    bad[..., :2] |= outside & (conf > 0)[..., None]
    return bad


def _reason(field: str, value: float) -> str:
    if not np.isfinite(value):
        return "keypoint values must be finite"
    if field == "conf":
        return "conf must be in [0, 1]"
    return (
        f"x and y of a detected keypoint (conf > 0) must be normalized to [0, 1] of the frame "
        f"(margin {COORD_MARGIN}); pixel coordinates?"
    )


def first_bad_value(arr: np.ndarray) -> tuple[int, str] | None:
    """(row, description) of the first value of ``arr`` [N, 17, 3] breaking the rules, or None."""
    with np.errstate(invalid="ignore"):  # comparisons with NaN: NaN is caught by isfinite
        for start in range(0, arr.shape[0], _CHUNK_ROWS):
            chunk = np.asarray(arr[start : start + _CHUNK_ROWS], dtype=np.float32)
            if chunk.min() >= 0 and chunk.max() <= 1:  # the common case, 6x cheaper than the mask (NaN fails it)
                continue
            bad = _bad_mask(chunk)
            if not bad.any():
                continue
            row, kp, f = np.unravel_index(int(np.argmax(bad)), bad.shape)
            value = float(chunk[row, kp, f])
            field = _FIELDS[f]
            what = f"keypoint {kp} ({COCO17_KEYPOINTS[kp]}) {field} = {value:g}"
            return start + int(row), f"{what}: {_reason(field, value)}"
    return None
