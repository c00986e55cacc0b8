"""star.data: tracklet datasets, keypoint store, sampling, transforms and the synthetic VVI dataset.

Conventions used across the package:

- modality ids: ``INFRARED = 0``, ``VISIBLE = 1`` (names in ``MODALITY_NAMES``);
- keypoints: COCO-17 (``COCO17_KEYPOINTS``), (x, y, conf) with x, y normalized to
  [0, 1] of the frame; conf 0 = not detected / not visible in the (cropped) frame;
- frames: uint8 RGB [T, 3, H, W]; ``normalize_frames`` makes the float network input.

Typical use::

    data = load_dataset("synthetic", root)               # or "hitsz-vcm", "bupt", "list"
    kpts = open_keypoint_store(data)                      # verified alignment, memory-mapped
    loader = train_loader(data.train, kpts, num_workers=4)
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader: ...                           # dict: frames, keypoints, pid, camid, modality, index
"""

from .bupt import read_bupt
from .check import CheckReport, check_dataset
from .dataset import TrackletDataset
from .errors import (
    DataError,
    DataFormatError,
    DatasetLayoutError,
    EmptySplitError,
    KeypointStoreError,
    MissingFramesError,
    SynthConfigError,
    SynthOutputError,
    UnreadableFolderError,
)
from .hitsz_vcm import decode_frame_name, read_hitsz_vcm
from .keypoint_store import KeypointStore, open_keypoint_store, write_keypoints
from .listfile import read_list_dataset
from .loaders import eval_loader, train_loader
from .registry import DATASET_NAMES, EXPECTED_COUNTS, DataWarning, format_summary, load_dataset
from .samplers import CrossModalIdentitySampler
from .sampling import chunk_indices, sample_frame_indices
from .skeleton import COCO17_FLIP, COCO17_KEYPOINTS, COCO_BONES, NUM_COCO_KEYPOINTS
from .synthetic import SynthConfig, generate_synthetic, prepare_synthetic
from .tracklet import INFRARED, MODALITY_NAMES, SPLITS, VISIBLE, FrameIndex, Tracklet, VideoReidData
from .transforms import IMAGENET_MEAN, IMAGENET_STD, CropFlip, TrackletTransform, normalize_frames

__all__ = [
    "CheckReport",
    "COCO_BONES",
    "COCO17_FLIP",
    "COCO17_KEYPOINTS",
    "CropFlip",
    "CrossModalIdentitySampler",
    "DATASET_NAMES",
    "DataError",
    "DataFormatError",
    "DataWarning",
    "DatasetLayoutError",
    "EXPECTED_COUNTS",
    "EmptySplitError",
    "MissingFramesError",
    "SynthConfigError",
    "SynthOutputError",
    "UnreadableFolderError",
    "FrameIndex",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INFRARED",
    "KeypointStore",
    "KeypointStoreError",
    "MODALITY_NAMES",
    "NUM_COCO_KEYPOINTS",
    "SPLITS",
    "SynthConfig",
    "Tracklet",
    "TrackletDataset",
    "TrackletTransform",
    "VISIBLE",
    "VideoReidData",
    "check_dataset",
    "chunk_indices",
    "decode_frame_name",
    "format_summary",
    "generate_synthetic",
    "load_dataset",
    "normalize_frames",
    "open_keypoint_store",
    "prepare_synthetic",
    "read_bupt",
    "read_hitsz_vcm",
    "read_list_dataset",
    "sample_frame_indices",
    "eval_loader",
    "train_loader",
    "write_keypoints",
]
