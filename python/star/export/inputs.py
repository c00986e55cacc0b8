"""Checking and preparing tracklet inputs for an embedder (PyTorch or ONNX), without the dataset machinery.

A batch of B tracklets is ``frames [B, T, 3, H, W]`` (uint8 RGB, or float already
normalised with the ImageNet mean/std as ``star.data.normalize_frames`` does),
``keypoints [B, T, 17, 3]`` (x, y normalised to [0, 1] of the frame, conf in [0, 1];
conf 0 = not detected) and a modality per tracklet: 0 / ``"ir"`` (infrared) or
1 / ``"rgb"`` (visible), or one name for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from ..data import INFRARED, MODALITY_NAMES, NUM_COCO_KEYPOINTS, VISIBLE, normalize_frames
from ..errors import StarError

# Names accepted for a modality, besides MODALITY_NAMES ("ir", "rgb").
MODALITY_ALIASES = {"infrared": INFRARED, "thermal": INFRARED, "visible": VISIBLE}


class InferenceInputError(StarError, ValueError):
    """Frames, keypoints or modalities given to an embedder do not fit the model."""


class NetworkInputs(NamedTuple):
    """What the network (and the ONNX model) take: normalised float32 frames, float32 keypoints, int64 modality."""

    frames: torch.Tensor  # [B, T, 3, H, W] float32
    keypoints: torch.Tensor  # [B, T, 17, 3] float32
    modality: torch.Tensor  # [B] int64, 0 = infrared, 1 = visible


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise InferenceInputError(f"{name} must be a torch tensor or a numpy array, got {type(value).__name__}")


def _modality_code(value: Any) -> int:
    if isinstance(value, str):
        key = value.lower()
        if key in MODALITY_NAMES:
            return MODALITY_NAMES.index(key)
        if key in MODALITY_ALIASES:
            return MODALITY_ALIASES[key]
    elif isinstance(value, (bool, int, np.integer, np.bool_)) and int(value) in (INFRARED, VISIBLE):
        return int(value)
    choices = ", ".join([*MODALITY_NAMES, *MODALITY_ALIASES, str(INFRARED), str(VISIBLE)])
    raise InferenceInputError(f"modality {value!r} is not one of {choices}")


def modality_codes(modality: Any, batch: int) -> torch.Tensor:
    """One name or flag for the whole batch, or one per tracklet -> int64 [batch] of 0 (IR) / 1 (RGB)."""
    if isinstance(modality, (str, int, bool, np.integer, np.bool_)):
        return torch.full((batch,), _modality_code(modality), dtype=torch.int64)
    if isinstance(modality, (torch.Tensor, np.ndarray)):
        modality = modality.tolist()
    if not isinstance(modality, Sequence) or isinstance(modality, (bytes, bytearray)):
        raise InferenceInputError(
            f"modality must be a name, a flag or a sequence of them, got {type(modality).__name__}"
        )
    if len(modality) != batch:
        raise InferenceInputError(f"modality has {len(modality)} entries but the batch has {batch} tracklets")
    return torch.tensor([_modality_code(m) for m in modality], dtype=torch.int64)


def prepare_inputs(
    frames: Any, keypoints: Any, modality: Any, *, seq_len: int, height: int, width: int
) -> NetworkInputs:
    """Check a batch against the model's ``seq_len`` and frame size and bring it to the network's form.

    ``InferenceInputError`` names the argument and the expected shape on any mismatch.
    """
    frames = _as_tensor(frames, "frames")
    want = f"[B, {seq_len}, 3, {height}, {width}]"
    if frames.dim() != 5 or tuple(frames.shape[1:]) != (seq_len, 3, height, width):
        raise InferenceInputError(
            f"frames must be {want} (the model's seq_len and frame size), got {list(frames.shape)}; "
            "sample seq_len frames per tracklet and resize them to the size the model was trained on"
        )
    if frames.dtype == torch.uint8:
        frames = normalize_frames(frames)
    elif frames.is_floating_point():
        frames = frames.float()
    else:
        raise InferenceInputError(f"frames must be uint8 RGB or normalised float, got {frames.dtype}")
    b = frames.shape[0]
    keypoints = _as_tensor(keypoints, "keypoints")
    if tuple(keypoints.shape) != (b, seq_len, NUM_COCO_KEYPOINTS, 3) or not keypoints.is_floating_point():
        raise InferenceInputError(
            f"keypoints must be float [B, T, {NUM_COCO_KEYPOINTS}, 3] = "
            f"[{b}, {seq_len}, {NUM_COCO_KEYPOINTS}, 3] (x, y, conf), "
            f"got {list(keypoints.shape)} {keypoints.dtype}"
        )
    keypoints = keypoints.float()
    for name, value in (("frames", frames), ("keypoints", keypoints)):
        if not bool(torch.isfinite(value).all()):
            raise InferenceInputError(f"{name} hold NaN or inf values")
    return NetworkInputs(frames.contiguous(), keypoints.contiguous(), modality_codes(modality, b))
