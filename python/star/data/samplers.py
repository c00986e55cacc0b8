"""Cross-modal identity batch sampler: P identities x K tracklets of each modality per batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

from .errors import DataError
from .tracklet import INFRARED, VISIBLE, Tracklet


class TooFewIdentitiesError(DataError, ValueError):
    """The training split has fewer two-modality identities than a batch needs (``data.num_ids``)."""


def _dist_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values win; otherwise torch.distributed's when initialised, else a single process."""
    initialised = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return rank, world_size


class _CyclicPool:
    """Draws items from a fixed list in shuffled passes, so every item is used before any repeats.

    A draw that spans two passes takes from the new pass items it does not hold yet, so a
    draw repeats an item only when it asks for more items than the list has.
    """

    def __init__(self, items: Sequence[int], rng: np.random.Generator):
        self.items = np.asarray(items)
        self.rng = rng
        self.queue: list[int] = []  # the current pass, consumed from the end

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if not self.queue:
                perm = self.rng.permutation(self.items).tolist()
                # items already drawn go to the front, i.e. last in line
                self.queue = [i for i in perm if i in out] + [i for i in perm if i not in out]
            out.append(self.queue.pop())
        return out


class CrossModalIdentitySampler(Sampler[list[int]]):
    """Batch sampler for ``DataLoader(dataset, batch_sampler=...)``.

    Every batch holds ``num_ids`` (P) distinct identities and, for each, ``num_per_modality``
    (K) infrared tracklets followed by K visible ones (STAR: 8 x 2 x {IR, RGB} = 32).
    Only identities with tracklets of both modalities are drawn. Identities are taken
    in shuffled passes and tracklets of each (identity, modality) in shuffled passes.

    One epoch has ``num_batches`` batches in total over all ranks, by default
    ``min(#IR, #RGB tracklets) // (P * K)`` (268 on HITSZ-VCM). Under DDP the epoch's
    batch sequence is generated identically on every rank from (seed, epoch) and rank
    ``r`` takes batches ``r, r + W, ...``: the shares are disjoint, equally long
    (the remainder is dropped), and the identities of the batches processed at the same
    step on different ranks are distinct whenever there are at least ``P * W`` identities.
    Call ``set_epoch`` before each epoch to reshuffle.
    """

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        num_ids: int = 8,
        num_per_modality: int = 2,
        *,
        num_batches: int | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        self.num_ids, self.k = num_ids, num_per_modality
        self.seed, self.epoch = seed, 0
        self.rank, self.world_size = _dist_rank_world(rank, world_size)
        by_id: dict[int, tuple[list[int], list[int]]] = {}
        for i, t in enumerate(tracklets):
            if t.modality not in (INFRARED, VISIBLE):
                raise ValueError(f"tracklet {i} has unknown modality {t.modality}")
            by_id.setdefault(t.pid, ([], []))[t.modality].append(i)
        # pid -> (infrared indices, visible indices), indexed by modality id
        self.pools = {pid: lists for pid, lists in sorted(by_id.items()) if all(lists)}
        if len(self.pools) < num_ids:
            raise TooFewIdentitiesError(
                f"need at least {num_ids} identities with tracklets of both modalities (data.num_ids), "
                f"found {len(self.pools)}"
            )
        if num_batches is None:
            n_ir = sum(len(v[0]) for v in self.pools.values())
            n_rgb = sum(len(v[1]) for v in self.pools.values())
            num_batches = min(n_ir, n_rgb) // (num_ids * num_per_modality)
        self.batches_per_rank = max(1, num_batches // self.world_size)

    @property
    def batch_size(self) -> int:
        return 2 * self.num_ids * self.k

    def __len__(self) -> int:
        return self.batches_per_rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])

    def global_batches(self) -> list[list[int]]:
        """All ranks' batches of the current epoch, in global order (identical on every rank)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        pids = np.array(list(self.pools))
        pools = {(pid, m): _CyclicPool(self.pools[pid][m], rng) for pid in self.pools for m in (INFRARED, VISIBLE)}
        total = self.batches_per_rank * self.world_size
        # Identities are dealt in blocks (one step of all ranks) that never straddle two passes,
        # so concurrent batches on different ranks do not share identities.
        block = self.num_ids * (self.world_size if len(pids) >= self.num_ids * self.world_size else 1)
        order: list[int] = []
        while len(order) < total * self.num_ids:
            perm = rng.permutation(pids).tolist()
            usable = len(perm) - len(perm) % block
            order.extend(perm[:usable])
        batches = []
        for b in range(total):
            batch: list[int] = []
            for pid in order[b * self.num_ids : (b + 1) * self.num_ids]:
                batch += pools[(pid, INFRARED)].take(self.k) + pools[(pid, VISIBLE)].take(self.k)
            batches.append(batch)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.global_batches()[self.rank :: self.world_size])
