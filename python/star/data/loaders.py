"""DataLoaders for training (identity batches) and evaluation (tracklets in order)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from .dataset import TrackletDataset
from .keypoint_store import KeypointStore
from .samplers import CrossModalIdentitySampler
from .tracklet import Tracklet
from .transforms import TrackletTransform


def _loader_options(num_workers: int, pin_memory: bool | None) -> dict:
    return {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available() if pin_memory is None else pin_memory,
        "persistent_workers": num_workers > 0,
    }


def train_loader(
    tracklets: Sequence[Tracklet],
    keypoints: KeypointStore | None,
    *,
    num_frames: int = 12,
    num_ids: int = 8,
    num_per_modality: int = 2,
    height: int = 288,
    width: int = 144,
    num_workers: int = 4,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    num_batches: int | None = None,
    pin_memory: bool | None = None,
) -> DataLoader:
    """Loader of P x K x {IR, RGB} training batches; call ``loader.batch_sampler.set_epoch(e)``
    before each epoch. Deterministic from ``seed`` for a fixed ``num_workers``."""
    dataset = TrackletDataset(
        tracklets,
        train=True,
        num_frames=num_frames,
        keypoints=keypoints,
        transform=TrackletTransform(height, width, train=True),
    )
    sampler = CrossModalIdentitySampler(
        tracklets, num_ids, num_per_modality, num_batches=num_batches, seed=seed, rank=rank, world_size=world_size
    )
    generator = torch.Generator().manual_seed(seed + 1_000_003 * sampler.rank)  # per-rank worker seeds
    return DataLoader(dataset, batch_sampler=sampler, generator=generator, **_loader_options(num_workers, pin_memory))


def eval_loader(
    tracklets: Sequence[Tracklet],
    keypoints: KeypointStore | None,
    *,
    num_frames: int = 12,
    batch_size: int = 32,
    height: int = 288,
    width: int = 144,
    num_workers: int = 4,
    pin_memory: bool | None = None,
) -> DataLoader:
    """Loader of every tracklet once, in order, with the deterministic test sampling."""
    dataset = TrackletDataset(
        tracklets,
        train=False,
        num_frames=num_frames,
        keypoints=keypoints,
        transform=TrackletTransform(height, width, train=False),
    )
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **_loader_options(num_workers, pin_memory))
