"""CMC / mAP / mINP of a distance matrix, vectorised and chunked over queries.

The result is exactly that of the classic per-query loop used by re-ID code:

    for each query:
        order  = stable argsort of its distances (ties keep gallery order)
        drop gallery items with the query's pid AND camera (if cameras given)
        skip the query if no item with its pid is left
        CMC    = cumulative "hit seen yet" curve over the kept list
        AP     = mean over positives of (#positives so far) / (kept rank)
        INP    = #positives / (kept rank of the last positive)

Instead of ordering every gallery list, each chunk of queries sorts its rows'
*values* (no indices, no stability needed) and locates every same-pid item in
its sorted row with ``searchsorted``; exact ties are then resolved by gallery
index, so the ranks equal those of a stable argsort. Only the few same-pid
items per query are handled individually, so the work per chunk is one row
sort plus O(#same-pid pairs). On CPU the row sort runs in numpy (a SIMD sort
that releases the GIL, several times faster than ``torch.sort`` there) on
``torch.get_num_threads()`` threads; on GPU it is ``torch.sort``.

Working memory is O(chunk_size x num_gallery); nothing num_query x
num_gallery is allocated besides the caller's own ``dist``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from .errors import MetricsInputError

__all__ = ["RankingResult", "evaluate_ranking"]

# Default working-memory budget of one chunk (sorted row copy + bookkeeping; re-ranking's row blocks too).
CHUNK_BUDGET_BYTES = 256 * 2**20
_BYTES_PER_ELEMENT = 16  # sorted value (<= 8 B) + headroom for per-item arrays
_TILE = 64  # columns per tile when copying a strided block on CPU


@dataclass(frozen=True, eq=False)
class RankingResult(Mapping):
    """Ranking metrics of one evaluation; also readable as a mapping.

    Attributes:
        cmc: float64 array, ``cmc[k-1]`` = fraction of valid queries whose
            first positive is within the top k (length = clipped max_rank).
        mAP: mean average precision over valid queries, in [0, 1].
        mINP: mean inverse negative penalty over valid queries, in [0, 1].
        num_valid: number of queries with at least one positive.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid: int

    _KEYS = ("cmc", "mAP", "mINP", "num_valid")

    def __getitem__(self, key: str) -> Any:
        if key not in self._KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)

    def __eq__(self, other: object) -> bool:
        # Mapping's __eq__ would compare the cmc arrays with `==` and fail.
        if not isinstance(other, RankingResult):
            return NotImplemented
        return (
            np.array_equal(self.cmc, other.cmc)
            and self.mAP == other.mAP
            and self.mINP == other.mINP
            and self.num_valid == other.num_valid
        )

    # mutable ndarray inside; ignore: typeshed types object.__hash__ as a method, so the
    # documented `__hash__ = None` (unhashable) idiom cannot be expressed without one
    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based).

        Past the computed curve the value is known only once the curve has
        reached 1 (a hit cannot be lost), e.g. Rank-20 of a 10-item gallery.
        """
        if k < 1:
            raise MetricsInputError(f"k must be >= 1, got {k}")
        if k <= len(self.cmc):
            return float(self.cmc[k - 1])
        if self.cmc[-1] == 1.0:
            return 1.0
        raise MetricsInputError(f"rank {k} is beyond the computed CMC (max_rank={len(self.cmc)})")

    def to_dict(self) -> dict:
        """Plain-Python copy, ready for ``json.dump``."""
        return {"cmc": self.cmc.tolist(), "mAP": self.mAP, "mINP": self.mINP, "num_valid": self.num_valid}

    def __repr__(self) -> str:
        r1 = self.cmc[0] * 100
        return (
            f"RankingResult(R1={r1:.2f}%, mAP={self.mAP * 100:.2f}%, "
            f"mINP={self.mINP * 100:.2f}%, num_valid={self.num_valid})"
        )


def evaluate_ranking(
    dist, q_pids, g_pids, q_camids=None, g_camids=None, *, max_rank: int = 20, chunk_size: int | None = None
) -> RankingResult:
    """Evaluate a query x gallery distance matrix (lower = closer).

    Args:
        dist: [num_query, num_gallery] numpy array (a memmap works) or torch
            tensor on any device; real dtype, no NaN. Computation runs on its
            device.
        q_pids, g_pids: integer identities, lengths num_query / num_gallery.
        q_camids, g_camids: integer cameras; give both to drop, per query, the
            gallery items with the query's pid and camera (HITSZ-VCM), or
            neither for no filter (BUPTCampus).
        max_rank: length of the CMC curve; clipped to num_gallery.
        chunk_size: queries per chunk; default fills a ~256 MiB working
            budget. It never changes the result.

    Returns:
        RankingResult with ``cmc``, ``mAP``, ``mINP``, ``num_valid``.

    Raises:
        ValueError / TypeError naming the bad argument; ValueError if no query
        has a positive left after filtering.
    """
    dist = _as_matrix(dist)
    num_q, num_g = dist.shape
    dev = dist.device
    q_pids = _as_ids(q_pids, "q_pids", num_q, dev)
    g_pids = _as_ids(g_pids, "g_pids", num_g, dev)
    if (q_camids is None) != (g_camids is None):
        missing = "g_camids" if g_camids is None else "q_camids"
        raise MetricsInputError(
            f"{missing} is missing: give both q_camids and g_camids for the same-pid-same-camera filter, or neither"
        )
    if q_camids is not None:
        q_camids = _as_ids(q_camids, "q_camids", num_q, dev)
        g_camids = _as_ids(g_camids, "g_camids", num_g, dev)
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise MetricsInputError(f"max_rank must be a positive integer, got {max_rank!r}")
    max_rank = min(int(max_rank), num_g)
    if chunk_size is None:
        chunk_size = chunk_rows(num_g)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise MetricsInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunk_size = int(chunk_size)

    if num_q == 0 or num_g == 0:
        raise MetricsInputError(f"no valid query: dist is empty (shape {tuple(dist.shape)})")

    # Same-pid gallery items of every query = one contiguous run of the
    # pid-sorted gallery; the stable sort keeps gallery order inside a run.
    sorted_pids, g_order = torch.sort(g_pids, stable=True)
    run_start = torch.searchsorted(sorted_pids, q_pids)
    run_len = torch.searchsorted(sorted_pids, q_pids, right=True) - run_start

    work_dtype = _work_dtype(dist.dtype)
    totals = _Totals(max_rank, dev)
    for s in range(0, num_q, chunk_size):
        e = min(s + chunk_size, num_q)
        block = dist[s:e].to(work_dtype)
        rows, cols = _same_pid_pairs(run_start[s:e], run_len[s:e], g_order)
        junk = (
            g_camids[cols] == q_camids[s:e][rows] if q_camids is not None else torch.zeros_like(rows, dtype=torch.bool)
        )
        pos = _stable_positions(block, rows, cols, run_len[s:e])
        totals.add(*_query_ranks(rows, pos, junk, e - s, num_g))
    return totals.result()


def chunk_rows(num_gallery: int, budget_bytes: int = CHUNK_BUDGET_BYTES) -> int:
    """Queries per chunk that keep one chunk's working memory within ``budget_bytes`` (at least 1)."""
    return max(1, budget_bytes // max(1, num_gallery * _BYTES_PER_ELEMENT))


class _Totals:
    """Running sums over chunks of per-query AP, INP and first-hit ranks."""

    def __init__(self, max_rank: int, device: torch.device):
        self.max_rank = max_rank
        self.ap = torch.zeros((), dtype=torch.float64, device=device)
        self.inp = torch.zeros((), dtype=torch.float64, device=device)
        self.first_hits = torch.zeros(max_rank + 1, dtype=torch.int64, device=device)
        self.num_valid = torch.zeros((), dtype=torch.int64, device=device)

    def add(self, npos, ap_sum, first, last) -> None:
        valid = npos > 0
        npos, first = npos[valid], first[valid]
        self.ap += (ap_sum[valid] / npos).sum()
        self.inp += (npos.double() / last[valid]).sum()
        # ranks beyond max_rank all land in the overflow bin max_rank
        self.first_hits += torch.bincount((first - 1).clamp_(max=self.max_rank), minlength=self.max_rank + 1)
        self.num_valid += valid.sum()

    def result(self) -> RankingResult:
        n = int(self.num_valid)
        if n == 0:
            raise MetricsInputError(
                "no valid query: no query has a gallery item with its pid left after the same-pid-same-camera filter"
            )
        # Divided on the CPU: CUDA's division may differ by an ulp, and results must not depend on the device.
        cmc = torch.cumsum(self.first_hits[:-1], 0).cpu().double() / n
        return RankingResult(cmc=cmc.numpy(), mAP=float(self.ap) / n, mINP=float(self.inp) / n, num_valid=n)


def _same_pid_pairs(run_start, run_len, g_order):
    """(row, gallery column) of every same-pid pair, row-major, columns ascending."""
    rows = torch.repeat_interleave(torch.arange(len(run_len), device=run_len.device), run_len)
    offset = torch.arange(len(rows), device=rows.device) - (torch.cumsum(run_len, 0) - run_len)[rows]
    return rows, g_order[run_start[rows] + offset]


def _stable_positions(block, rows, cols, run_len):
    """0-based position of each (row, col) in a stable ascending sort of its row."""
    sorted_rows = _sort_rows(block)
    if block.is_floating_point() and torch.isnan(sorted_rows[:, -1]).any():  # NaN sorts last
        raise MetricsInputError("dist contains NaN")
    if len(rows) == 0:
        return torch.zeros(0, dtype=torch.int64, device=block.device)
    values = block[rows, cols]
    # searchsorted wants one [rows, k] table of needles per sorted row
    slot = torch.arange(len(rows), device=rows.device) - (torch.cumsum(run_len, 0) - run_len)[rows]
    needles = torch.zeros(block.shape[0], int(run_len.max()), dtype=block.dtype, device=block.device)
    needles[rows, slot] = values
    below = torch.searchsorted(sorted_rows, needles)[rows, slot]
    equal = torch.searchsorted(sorted_rows, needles, right=True)[rows, slot] - below
    tied = torch.nonzero(equal > 1).flatten()
    if len(tied):  # equal values come in gallery-index order in a stable sort
        below[tied] += _equal_before(block, rows[tied], cols[tied], values[tied])
    return below


def _equal_before(block, rows, cols, values):
    """Per item, how many entries of its row equal its value at a smaller column."""
    num_g = block.shape[1]
    # As many gathered rows at a time as the chunk has queries, so memory stays O(chunk x G).
    step = max(1, block.shape[0])
    index = torch.arange(num_g, device=block.device)
    out = []
    for a in range(0, len(rows), step):
        sl = slice(a, a + step)
        same = (block[rows[sl]] == values[sl, None]) & (index < cols[sl, None])
        out.append(same.sum(1))
    return torch.cat(out)


def _query_ranks(rows, pos, junk, num_rows: int, num_g: int):
    """Per query: #positives, sum of precisions, kept rank of first / last positive."""
    dev = rows.device
    order = torch.argsort(rows * num_g + pos)  # row-major, then by position in the ranking
    rows, pos, junk = rows[order], pos[order], junk[order].long()
    positive = 1 - junk
    # per-row exclusive counts via global cumsums minus the value at the row's first item
    run_len = torch.bincount(rows, minlength=num_rows)
    first_item = (torch.cumsum(run_len, 0) - run_len)[rows]
    junk_before = torch.cumsum(junk, 0) - junk
    junk_before -= junk_before[first_item]
    hits_so_far = torch.cumsum(positive, 0)
    hits_so_far -= (hits_so_far - positive)[first_item]
    kept_rank = pos - junk_before + 1  # 1-based rank after dropping junk

    keep = positive.bool()
    rows, kept_rank, hits_so_far = rows[keep], kept_rank[keep], hits_so_far[keep]
    npos = torch.bincount(rows, minlength=num_rows)
    ap_sum = torch.zeros(num_rows, dtype=torch.float64, device=dev).index_add_(
        0, rows, hits_so_far.double() / kept_rank.double()
    )
    first = torch.full((num_rows,), num_g + 1, dtype=torch.int64, device=dev).scatter_reduce_(
        0, rows, kept_rank, "amin"
    )
    last = torch.ones(num_rows, dtype=torch.int64, device=dev).scatter_reduce_(0, rows, kept_rank, "amax")
    return npos, ap_sum, first, last


def _sort_rows(block: torch.Tensor) -> torch.Tensor:
    """Ascending values of every row (not stable; only values are used)."""
    if block.device.type != "cpu":
        return torch.sort(block, dim=1).values
    src = block.numpy()
    out = np.empty(src.shape, dtype=src.dtype)
    workers = max(1, min(torch.get_num_threads(), len(src)))
    bounds = np.linspace(0, len(src), workers + 1).astype(int)

    def sort_part(a: int, b: int) -> None:
        part = out[a:b]
        if src.strides[1] == src.itemsize:
            part[...] = src[a:b]
        else:  # e.g. dist.T: copying column tiles is ~3x faster than row by row
            for j in range(0, src.shape[1], _TILE):
                part[:, j : j + _TILE] = src[a:b, j : j + _TILE]
        part.sort(axis=1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(sort_part, bounds[:-1], bounds[1:]))
    return torch.from_numpy(out)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the rows are sorted in: exact for the input, supported by numpy."""
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32  # exact widening; numpy has no bfloat16
    if dtype.is_floating_point:
        return dtype
    return torch.int64


def _as_matrix(dist) -> torch.Tensor:
    if isinstance(dist, torch.Tensor):
        t = dist.detach()
    else:
        arr = np.asarray(dist)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)):
            raise TypeError(f"dist must be a real numeric matrix, got dtype {arr.dtype}")
        with warnings.catch_warnings():
            # a read-only array (e.g. np.memmap mode 'r') is only ever read
            warnings.filterwarnings("ignore", message=".*not writable.*")
            t = torch.from_numpy(arr)
    if t.dim() != 2:
        raise MetricsInputError(f"dist must be 2-D [num_query, num_gallery], got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"dist must have a real numeric dtype, got {t.dtype}")
    return t


def _as_ids(ids, name: str, length: int, device: torch.device) -> torch.Tensor:
    dtype: torch.dtype | np.dtype
    t: torch.Tensor | None
    if isinstance(ids, torch.Tensor):
        integral = not (ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex())
        dtype, t = ids.dtype, ids.detach()
    else:
        arr = np.asarray(ids)
        if arr.size == 0:
            arr = arr.astype(np.int64)  # np.asarray([]) is float64
        integral, dtype = arr.dtype.kind in "iu", arr.dtype
        t = torch.as_tensor(arr) if integral else None
    if not integral:
        raise TypeError(f"{name} must hold integers, got dtype {dtype}")
    assert t is not None  # set whenever the ids are integral
    if t.dim() != 1:
        raise MetricsInputError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if len(t) != length:
        raise MetricsInputError(f"{name} has length {len(t)} but dist implies {length}")
    return t.to(device=device, dtype=torch.int64)
