"""The torch Dataset of tracklets: sampled frames + keypoints + labels of one tracklet."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .keypoint_store import KeypointStore
from .sampling import sample_frame_indices
from .skeleton import NUM_COCO_KEYPOINTS
from .source_files import read_frame
from .substitution import SUBSTITUTED, SUBSTITUTED_FILES
from .tracklet import Tracklet
from .transforms import TrackletTransform

log = logging.getLogger(__name__)


class TrackletDataset(Dataset):
    """Item ``i`` is a dict for tracklet ``i``:

    - ``frames``: uint8 [T, 3, H, W] RGB, a permuted (channels-last) view; normalize on the
      device with ``normalize_frames``
    - ``keypoints``: float32 [T, 17, 3], x, y normalized to the final frame, conf
      (all zeros without a keypoint store)
    - ``pid``, ``camid``, ``modality`` (0 infrared, 1 visible), ``index`` (= i): ints
    - ``substituted``: how many of the sampled frames were substituted (see below), and
      ``substituted_files``: the unreadable files, one per line (``star.data.substitution``)

    ``train`` selects random in-chunk frames and the random crop/flip; randomness comes
    from torch's RNG, which DataLoader seeds per worker. A frame that cannot be decoded
    is replaced, with a logged warning, by the nearest decodable sampled frame of the
    same tracklet (and its keypoints), or by a black frame without keypoints.

    Creating one sets OpenCV to a single thread in this process (see ``__init__``).
    """

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        *,
        train: bool,
        num_frames: int = 12,
        keypoints: KeypointStore | None = None,
        transform: TrackletTransform | None = None,
    ):
        # OpenCV's thread pool does not survive fork() (opencv#5150): a DataLoader worker forked
        # after this process ran multi-threaded OpenCV code can deadlock, at random. With one
        # thread there is no pool; the DataLoader workers provide the parallelism.
        cv2.setNumThreads(1)
        self.tracklets = list(tracklets)
        self.train = train
        self.num_frames = num_frames
        self.keypoints = keypoints
        self.transform = transform if transform is not None else TrackletTransform(train=train)

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, index: int) -> dict:
        t = self.tracklets[index]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item())) if self.train else None
        positions = sample_frame_indices(len(t), self.num_frames, self.train, rng)
        frames, sources, unreadable = self._decode(t, positions)
        keypoints = np.zeros((self.num_frames, NUM_COCO_KEYPOINTS, 3), dtype=np.float32)
        if self.keypoints is not None:
            ok = sources >= 0
            rows = np.asarray(t.rows)[sources[ok]]
            keypoints[ok] = self.keypoints.gather(t.store_split, rows)
        images, keypoints = self.transform(frames, keypoints, rng)
        return {
            # A channels-last view: the batch collation makes the one copy into [B, T, 3, H, W].
            "frames": torch.from_numpy(images).permute(0, 3, 1, 2),
            "keypoints": torch.from_numpy(keypoints),
            "pid": t.pid,
            "camid": t.camid,
            "modality": t.modality,
            "index": index,
            SUBSTITUTED: sum(unreadable.values()),
            SUBSTITUTED_FILES: "\n".join(t.paths[j] for j in unreadable),
        }

    def _decode(self, t: Tracklet, positions: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, dict[int, int]]:
        """Decode each distinct sampled frame once; returns the frames, the tracklet position
        each came from (-1 = black substitute) and, per unreadable position, how many sampled
        frames it stood for (``FrameSubstitutions`` counts them)."""
        decoded = {int(j): read_frame(t.paths[j]) for j in np.unique(positions)}
        good = np.array(sorted(j for j, img in decoded.items() if img is not None), dtype=np.int64)
        sources = positions.astype(np.int64)
        unreadable: dict[int, int] = {}
        for i, j in enumerate(positions.tolist()):
            if decoded[j] is not None:
                continue
            unreadable[j] = unreadable.get(j, 0) + 1
            sources[i] = good[np.argmin(np.abs(good - j))] if len(good) else -1
            log.warning(
                "unreadable frame %s; using %s instead",
                t.paths[j],
                t.paths[sources[i]] if sources[i] >= 0 else "a black frame",
            )
        shape = next((img.shape for img in decoded.values() if img is not None), (1, 1, 3))
        # a source >= 0 is always a decoded (not None) frame
        frames: list[np.ndarray] = [
            cast(np.ndarray, decoded[s]) if s >= 0 else np.zeros(shape, np.uint8) for s in sources.tolist()
        ]
        return frames, sources, unreadable
