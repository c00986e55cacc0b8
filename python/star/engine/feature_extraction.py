"""Tracklet embeddings from a model: ``extract_features``.

It runs a model in eval mode over tracklets in their given order (the deterministic
test sampling of ``star.data.eval_loader``) and returns a ``star.reports.Features``:
one L2-normalised embedding per tracklet plus its labels (written and read as ``.npz``
by ``star.reports.feature_files``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.keypoint_store import KeypointStore
from ..data.loaders import eval_loader
from ..data.substitution import FrameSubstitutions
from ..data.tracklet import Tracklet
from ..data.transforms import normalize_frames
from ..progress import counting_progress
from ..reports.feature_files import Features
from .runtime import mixed_precision

__all__ = ["extract_features"]


def extract_features(
    model: nn.Module,
    tracklets: Sequence[Tracklet],
    keypoints: KeypointStore | None,
    *,
    num_frames: int,
    height: int,
    width: int,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    amp: bool = False,
    progress: bool = False,
    substitutions: FrameSubstitutions | None = None,
) -> Features:
    """Embed every tracklet once, in order: ``model(frames, keypoints, modality)`` in eval mode.

    Frames are sampled with the test rule (first frame of each of ``num_frames``
    chunks), resized to ``height`` x ``width``, moved to ``device`` and normalised
    there. Each tracklet goes through its own modality's stem (``modality`` is
    passed per tracklet). ``amp`` enables float16 autocast on CUDA (ignored on
    CPU). Runs under ``torch.no_grad`` (not ``inference_mode``: the returned
    tensors stay usable in autograd code) and restores the model's train/eval
    mode afterwards. The model is expected to be on ``device`` already. ``substitutions``
    counts the frames substituted because undecodable (and stops past its limit).
    """
    device = torch.device(device)
    tracklets = list(tracklets)
    if not tracklets:
        return Features.from_tracklets(torch.zeros(0, 0), tracklets)
    loader = eval_loader(
        tracklets,
        keypoints,
        num_frames=num_frames,
        batch_size=batch_size,
        height=height,
        width=width,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    seen = 0
    try:
        with (
            torch.no_grad(),
            mixed_precision(device, amp),
            counting_progress(len(loader), "features", enabled=progress, unit="batches") as advance,
        ):
            for batch in loader:
                index = batch["index"]
                if index[0].item() != seen:  # the loader must keep the tracklet order
                    raise RuntimeError(f"extract_features: batch starts at tracklet {index[0].item()}, expected {seen}")
                seen += len(index)
                if substitutions is not None:
                    substitutions.add(batch)
                frames = normalize_frames(batch["frames"].to(device, non_blocking=True))
                kpts = batch["keypoints"].to(device, non_blocking=True)
                modality = batch["modality"].to(device, non_blocking=True)
                emb = model(frames, kpts, modality)
                if not torch.is_tensor(emb) or emb.dim() != 2 or emb.shape[0] != len(index):
                    shape = tuple(emb.shape) if torch.is_tensor(emb) else type(emb).__name__
                    raise RuntimeError(
                        f"extract_features: the model must return [B, C] embeddings in eval mode, got {shape}"
                    )
                chunks.append(emb.detach().float().cpu())
                advance(1)
    finally:
        model.train(was_training)
    return Features.from_tracklets(torch.cat(chunks).contiguous(), tracklets)
