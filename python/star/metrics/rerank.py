"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li, CVPR 2017), vectorised.

The algorithm works on the joint set P = queries + gallery (N points):

1. d = all-pairs distance of P; od[i, j] = d[j, i] / max_k d[k, i].
2. R(i): the k-reciprocal neighbours of i -- j among the k1+1 nearest of i
   such that i is among the k1+1 nearest of j.
3. Expansion: for j in R(i), let H(j) be its round(k1/2)-reciprocal set; if
   more than 2/3 of H(j) lies in R(i), H(j) joins i's set E(i).
4. V[i, j] = exp(-od[i, j]) / sum over E(i), for j in E(i) (a sparse row).
5. Query expansion (k2 > 1): V[i] <- mean of V over i's k2 nearest.
6. Jaccard: J[i, j] = 1 - m / (2 - m), m = sum_k min(V[i, k], V[j, k]).
7. Result (query x gallery): (1 - lambda) * J + lambda * od.

Memory: the N x N distance ``d`` is the one O(N^2) object (float32: 4 N^2
bytes, about 375 MiB for HITSZ-VCM's 4,584 + 5,099 tracklets, 40 GB for
N = 100k). Everything else is chunked over rows: neighbour lists are
O(N * k1^2), V is kept sparse (at most (k1+1)(round(k1/2)+2) entries per row),
and the Jaccard step walks an inverted index in bounded batches of pairs,
writing the num_query x num_gallery output block by block.

Neighbour lists come from ``torch.topk``; exact distance ties may be ordered
differently than by an argsort (the reference code's quicksort is not stable
either).
"""

from __future__ import annotations

import warnings

import torch

from .distance import feature_pair, matmul_nt
from .errors import MetricsInputError
from .ranking import CHUNK_BUDGET_BYTES

__all__ = ["k_reciprocal_rerank", "k_reciprocal_rerank_dist"]

# (query entry, gallery entry) pairs per Jaccard batch: 2**22 pairs take about 160 MiB (40 B each)
PAIR_BUDGET = 2**22


def k_reciprocal_rerank(
    q_feat, g_feat, *, k1: int = 20, k2: int = 6, lambda_value: float = 0.3, chunk_size: int | None = None
) -> torch.Tensor:
    """Re-ranked query x gallery distances from features.

    The base distance is the squared Euclidean distance of the features as
    given (pass L2-normalised features for 2 - 2 cos, as the protocols do).
    Builds the (num_query + num_gallery)^2 float32 distance matrix; see the
    module docstring for memory. Returns a float32 [num_query, num_gallery]
    tensor on the features' device (lower = closer).
    """
    q, g = feature_pair(q_feat, g_feat)
    x = torch.cat([q, g.to(q.device)]).float()
    sq = (x * x).sum(1)
    d = matmul_nt(x, x)
    d.mul_(-2).add_(sq[:, None]).add_(sq[None, :]).clamp_(min=0)
    return k_reciprocal_rerank_dist(d, len(q), k1=k1, k2=k2, lambda_value=lambda_value, chunk_size=chunk_size)


def k_reciprocal_rerank_dist(
    all_dist,
    num_query: int,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
    pair_budget: int = PAIR_BUDGET,
) -> torch.Tensor:
    """Re-ranked distances from the all-pairs distance of queries + gallery.

    Args:
        all_dist: [N, N] distance of the concatenation (queries first, then
            gallery), as in the original ``re_ranking(q_g, q_q, g_g)`` after
            its concatenation; numpy or torch, any device.
        num_query: how many of the N points are queries.
        k1, k2, lambda_value: the paper's parameters (defaults 20, 6, 0.3).
        chunk_size: rows per block of the row-wise steps (default from a
            ~256 MiB budget); it does not change the result.
        pair_budget: the most (query entry, gallery entry) pairs one batch of
            the Jaccard step compares (about 40 bytes each); it binds only for
            tens of thousands of points and does not change the result.

    Returns:
        [num_query, N - num_query] tensor, dtype of ``all_dist`` (floating).
    """
    d = torch.as_tensor(all_dist).detach()
    if d.dim() != 2 or d.shape[0] != d.shape[1]:
        raise MetricsInputError(f"all_dist must be square [N, N], got shape {tuple(d.shape)}")
    if not d.is_floating_point():
        d = d.float()
    n = d.shape[0]
    if not 0 < num_query < n:
        raise MetricsInputError(f"num_query must be in [1, {n - 1}], got {num_query}")
    for name, k in (("k1", k1), ("k2", k2)):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise MetricsInputError(f"{name} must be a positive integer, got {k!r}")
    if not 0.0 <= lambda_value <= 1.0:
        raise MetricsInputError(f"lambda_value must be in [0, 1], got {lambda_value}")
    for name, size in (("chunk_size", chunk_size), ("pair_budget", pair_budget)):
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise MetricsInputError(f"{name} must be a positive integer, got {size!r}")

    col_max = _column_max(d)

    def normalised_rows(s: int, e: int) -> torch.Tensor:
        """Rows s:e of od (the original divides columns by their max, then transposes)."""
        return d[:, s:e].T / col_max[s:e, None]

    k_fwd, k_half, k_qe = min(k1 + 1, n), min(round(k1 / 2) + 1, n), min(k2, n)
    step = _rows_per_block(n * 8, chunk_size)
    ranks = torch.cat(
        [
            torch.topk(
                normalised_rows(s, min(s + step, n)), max(k_fwd, k_qe), dim=1, largest=False, sorted=True
            ).indices
            for s in range(0, n, step)
        ]
    )
    members, weights = _expanded_sets(d, col_max, ranks[:, :k_fwd], ranks[:, :k_half], chunk_size)
    if k2 != 1:
        rows, cols, vals = _query_expansion(members, weights, ranks[:, :k_qe], chunk_size)
    else:
        valid = members < n
        rows = torch.arange(n, device=d.device)[:, None].expand_as(members)[valid]
        cols, vals = members[valid], weights[valid]
    return _combine(d, col_max, rows, cols, vals, num_query, lambda_value, chunk_size, pair_budget)


def _column_max(d: torch.Tensor) -> torch.Tensor:
    """The per-column maximum that normalises od. A column of zeros (a point at distance 0
    from every point: all features identical, e.g. a collapsed model) would give 0 / 0 = NaN;
    its maximum counts as 1, so od is 0 there (every item ties) and a warning names the case."""
    col_max = d.max(dim=0).values
    flat = col_max <= 0
    if bool(flat.any()):
        count = int(flat.sum())
        what = "all features are identical" if count == len(col_max) else f"{count} of {len(col_max)} points"
        warnings.warn(
            f"k-reciprocal re-ranking: degenerate distances ({what}: distance 0 to every point, "
            "as from a collapsed model); their normalised distances are 0, so those items tie",
            RuntimeWarning,
            stacklevel=3,
        )
        col_max = torch.where(flat, torch.ones_like(col_max), col_max)
    return col_max


def _rows_per_block(bytes_per_row: int, chunk_size: int | None) -> int:
    """The caller's chunk_size, else as many rows as fit the memory budget."""
    return chunk_size or max(1, CHUNK_BUDGET_BYTES // bytes_per_row)


def _reciprocal(nbrs: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """mask[i, a]: is i among the neighbours of its neighbour nbrs[i, a]?"""
    idx = torch.arange(len(nbrs), device=nbrs.device)
    chunk = _rows_per_block(nbrs.shape[1] ** 2 * 9, chunk_size)
    return torch.cat(
        [(nbrs[nbrs[s : s + chunk]] == idx[s : s + chunk, None, None]).any(-1) for s in range(0, len(nbrs), chunk)]
    )


def _expanded_sets(d, col_max, fwd, half, chunk_size: int | None):
    """Padded E(i) (sentinel N) and its normalised weights, one row per point."""
    n = len(fwd)
    recip, recip_half = _reciprocal(fwd, chunk_size), _reciprocal(half, chunk_size)
    # per row: (k1+1) candidates x (k_half) half-set members x (k1+1) compares
    chunk = _rows_per_block(fwd.shape[1] ** 2 * half.shape[1] * 4, chunk_size)
    members, weights = [], []
    for s in range(0, n, chunk):
        f, r = fwd[s : s + chunk], recip[s : s + chunk]
        cand, cand_ok = half[f], recip_half[f]  # H(j) of every forward neighbour j
        in_r = ((cand[..., None] == f[:, None, None, :]) & r[:, None, None, :]).any(-1)
        overlap = (in_r & cand_ok).sum(-1)
        take = r & (overlap > (2.0 / 3.0) * cand_ok.sum(-1))
        sentinel = torch.full_like(f, n)
        m = torch.cat([torch.where(r, f, sentinel), torch.where(take[..., None] & cand_ok, cand, n).flatten(1)], 1)
        m = m.sort(dim=1).values
        m[:, 1:][m[:, 1:] == m[:, :-1]] = n  # drop duplicates
        valid = m < n
        rows = torch.arange(s, s + len(f), device=f.device)[:, None]
        w = torch.exp(-d[m.clamp(max=n - 1), rows] / col_max[rows]) * valid
        members.append(m)
        weights.append(w / w.sum(1, keepdim=True))
    return torch.cat(members), torch.cat(weights)


def _query_expansion(members, weights, qe_nbrs, chunk_size: int | None):
    """Sparse rows of V_qe[i] = mean of V over qe_nbrs[i]; CSR-ordered COO."""
    n, k = len(members), qe_nbrs.shape[1]
    chunk = _rows_per_block(k * members.shape[1] * 48, chunk_size)
    out_rows, out_cols, out_vals = [], [], []
    for s in range(0, n, chunk):
        nb = qe_nbrs[s : s + chunk]
        cols, vals = members[nb].flatten(1), weights[nb].flatten(1)
        local = torch.arange(len(nb), device=nb.device)[:, None]
        keep = cols < n
        key = (local * (n + 1) + cols)[keep]  # sorted unique keys = CSR order
        uniq, inverse = torch.unique(key, return_inverse=True)
        sums = torch.zeros(len(uniq), dtype=vals.dtype, device=vals.device).index_add_(0, inverse, vals[keep])
        out_rows.append(uniq // (n + 1) + s)
        out_cols.append(uniq % (n + 1))
        out_vals.append(sums / k)
    return torch.cat(out_rows), torch.cat(out_cols), torch.cat(out_vals)


def _combine(d, col_max, rows, cols, vals, num_query: int, lam: float, chunk_size: int | None, pair_budget: int):
    """(1 - lam) * Jaccard(V[query], V[gallery]) + lam * od, block by block."""
    n, num_g, dev = d.shape[0], d.shape[0] - num_query, d.device
    chunk = _rows_per_block(num_g * 16, chunk_size)
    # inverted index over gallery rows: for each column k, its (gallery row, value)
    in_g = rows >= num_query
    g_cols, order = torch.sort(cols[in_g], stable=True)
    g_rows, g_vals = rows[in_g][order] - num_query, vals[in_g][order]
    col_count = torch.bincount(g_cols, minlength=n)
    col_start = torch.cumsum(col_count, 0) - col_count
    # query entries are a prefix (rows are sorted); pairs each query generates
    in_q = rows < num_query
    q_rows, q_cols, q_vals = rows[in_q], cols[in_q], vals[in_q]
    row_start = torch.searchsorted(q_rows, torch.arange(num_query + 1, device=dev))
    pairs_cum = torch.cat([torch.zeros(1, dtype=torch.int64, device=dev), torch.cumsum(col_count[q_cols], 0)]).cpu()
    row_pairs = pairs_cum[row_start.cpu()]
    out = torch.empty(num_query, num_g, dtype=d.dtype, device=dev)
    s = 0
    while s < num_query:
        # as many queries as fit the pair budget and the row budget (>= 1)
        e = int(torch.searchsorted(row_pairs, row_pairs[s] + pair_budget, right=True)) - 1
        e = min(max(e, s + 1), s + chunk, num_query)
        a, b = int(row_start[s]), int(row_start[e])
        occ = col_count[q_cols[a:b]]
        entry = torch.repeat_interleave(torch.arange(b - a, device=dev), occ)
        at = col_start[q_cols[a:b]][entry] + torch.arange(len(entry), device=dev) - (torch.cumsum(occ, 0) - occ)[entry]
        mins = torch.minimum(q_vals[a:b][entry], g_vals[at])
        shared = (
            torch.zeros((e - s) * num_g, dtype=d.dtype, device=dev)
            .index_add_(0, (q_rows[a:b][entry] - s) * num_g + g_rows[at], mins.to(d.dtype))
            .view(e - s, num_g)
        )
        jaccard = 1 - shared / (2 - shared)
        od = d[num_query:, s:e].T / col_max[s:e, None]
        out[s:e] = jaccard * (1 - lam) + od * lam
        s = e
    return out
