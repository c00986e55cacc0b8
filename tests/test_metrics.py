"""Tests of star.metrics against plain per-query loops written here."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

import star.metrics as M
from star.metrics import RankingResult, evaluate_ranking
from star.metrics import ranking as ranking_module

# ----------------------------------------------------------------------------
# oracles: the classic loops, deliberately naive
# ----------------------------------------------------------------------------


def loop_ranking(dist, q_pids, g_pids, q_camids=None, g_camids=None, max_rank=20):
    """Classic per-query evaluation; returns (cmc, mAP, mINP, num_valid)."""
    dist = np.asarray(dist, dtype=np.float64)
    num_q, num_g = dist.shape
    max_rank = min(max_rank, num_g)
    cmcs, aps, inps = [], [], []
    for i in range(num_q):
        order = np.argsort(dist[i], kind="stable")
        keep = np.ones(num_g, dtype=bool)
        if q_camids is not None:
            keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        matches = (g_pids[order] == q_pids[i])[keep].astype(np.float64)
        if matches.sum() == 0:
            continue
        hit = np.minimum(np.cumsum(matches), 1)
        # a kept list shorter than max_rank: the hit, once seen, stays
        hit = np.concatenate([hit, np.full(max(0, max_rank - len(hit)), 1.0)])[:max_rank]
        cmcs.append(hit)
        ranks = np.arange(1, len(matches) + 1)
        aps.append(np.sum(np.cumsum(matches) / ranks * matches) / matches.sum())
        inps.append(matches.sum() / ranks[np.flatnonzero(matches)[-1]])
    if not aps:
        return None
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def loop_rerank(all_dist, num_query, k1, k2, lam):
    """k-reciprocal re-ranking (Zhong et al. 2017), one point at a time."""
    n = len(all_dist)
    od = (all_dist / all_dist.max(axis=0)).T
    rank = np.argsort(od, axis=1, kind="stable")
    k_half = round(k1 / 2) + 1
    V = np.zeros((n, n))
    for i in range(n):
        recip = [j for j in rank[i, : k1 + 1] if i in rank[j, : k1 + 1]]
        expansion = list(recip)
        for j in recip:
            half = [h for h in rank[j, :k_half] if j in rank[h, :k_half]]
            if len(set(half) & set(recip)) > 2 / 3 * len(half):
                expansion += half
        expansion = np.unique(expansion)
        w = np.exp(-od[i, expansion])
        V[i, expansion] = w / w.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)])
    out = np.zeros((num_query, n - num_query))
    for i in range(num_query):
        for j in range(num_query, n):
            shared = np.minimum(V[i], V[j]).sum()
            out[i, j - num_query] = 1 - shared / (2 - shared)
    return out * (1 - lam) + od[:num_query, num_query:] * lam


def assert_matches_loop(result, dist, q_pids, g_pids, q_camids=None, g_camids=None, max_rank=20):
    ref = loop_ranking(dist, q_pids, g_pids, q_camids, g_camids, max_rank)
    cmc, mAP, mINP, num_valid = ref
    assert result.num_valid == num_valid
    assert result.cmc.dtype == np.float64 and result.cmc.shape == cmc.shape
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=1e-12)
    assert result.mAP == pytest.approx(mAP, abs=1e-12)
    assert result.mINP == pytest.approx(mINP, abs=1e-12)


def random_problem(rng, num_q, num_g, num_ids, num_cams, integer_dist):
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    if integer_dist:  # many exact ties
        dist = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
    else:
        dist = rng.standard_normal((num_q, num_g)).astype(np.float32)
    return dist, q_pids, g_pids, q_cams, g_cams


# ----------------------------------------------------------------------------
# evaluate_ranking vs the loop
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("integer_dist", [False, True])
@pytest.mark.parametrize("cameras", [False, True])
def test_matches_loop_on_random_problems(seed, integer_dist, cameras):
    rng = np.random.default_rng(seed)
    # 12 gallery items < max_rank=20; 7 ids so some queries have no positive;
    # 2 cameras so the filter removes some but not all positives
    dist, qp, gp, qc, gc = random_problem(rng, 25, 12, 7, 2, integer_dist)
    qc, gc = (qc, gc) if cameras else (None, None)
    result = evaluate_ranking(dist, qp, gp, qc, gc, chunk_size=4)
    assert_matches_loop(result, dist, qp, gp, qc, gc)


def test_matches_loop_with_long_gallery_and_many_ids():
    rng = np.random.default_rng(11)
    dist, qp, gp, qc, gc = random_problem(rng, 60, 300, 40, 3, integer_dist=False)
    assert_matches_loop(evaluate_ranking(dist, qp, gp, qc, gc, max_rank=50), dist, qp, gp, qc, gc, max_rank=50)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_property_matches_loop(data):
    num_q = data.draw(st.integers(1, 12), label="num_q")
    num_g = data.draw(st.integers(1, 15), label="num_g")
    num_ids = data.draw(st.integers(1, 5), label="num_ids")
    cams = data.draw(st.booleans(), label="cameras")
    values = (
        st.integers(-2, 2)
        if data.draw(st.booleans(), label="ties")
        else st.floats(-1e3, 1e3, allow_nan=False, width=32)
    )
    dist = np.array(
        data.draw(st.lists(values, min_size=num_q * num_g, max_size=num_q * num_g)), dtype=np.float32
    ).reshape(num_q, num_g)
    ids = st.lists(st.integers(0, num_ids - 1), min_size=1, max_size=1)
    qp = np.array([data.draw(ids)[0] for _ in range(num_q)])
    gp = np.array([data.draw(ids)[0] for _ in range(num_g)])
    qc = np.array([data.draw(st.integers(0, 1)) for _ in range(num_q)]) if cams else None
    gc = np.array([data.draw(st.integers(0, 1)) for _ in range(num_g)]) if cams else None
    max_rank = data.draw(st.integers(1, 20), label="max_rank")
    chunk = data.draw(st.integers(1, 13), label="chunk_size")
    ref = loop_ranking(dist, qp, gp, qc, gc, max_rank)
    if ref is None:
        with pytest.raises(ValueError, match="no valid query"):
            evaluate_ranking(dist, qp, gp, qc, gc, max_rank=max_rank, chunk_size=chunk)
    else:
        result = evaluate_ranking(dist, qp, gp, qc, gc, max_rank=max_rank, chunk_size=chunk)
        assert_matches_loop(result, dist, qp, gp, qc, gc, max_rank)


# ----------------------------------------------------------------------------
# hand-computed cases
# ----------------------------------------------------------------------------


def test_hand_computed_camera_filter():
    # query: pid 1, camera 0.  gallery (already in distance order):
    #   idx  pid cam
    #    0    2   0   negative
    #    1    1   0   same pid + same camera -> removed
    #    2    3   1   negative
    #    3    1   1   positive
    #    4    1   0   removed
    # kept list: 0, 2, 3 -> matches [0, 0, 1]
    # CMC: first hit at rank 3; AP = 1/3; INP = 1 positive / rank 3 = 1/3
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids, g_cams = np.array([2, 1, 3, 1, 1]), np.array([0, 0, 1, 1, 0])
    r = evaluate_ranking(dist, [1], g_pids, [0], g_cams, max_rank=5)
    np.testing.assert_array_equal(r.cmc, [0, 0, 1, 1, 1])
    assert r.mAP == pytest.approx(1 / 3) and r.mINP == pytest.approx(1 / 3)
    assert r.num_valid == 1
    # without cameras nothing is removed: matches [0, 1, 0, 1, 1]
    # AP = (1/2 + 2/4 + 3/5) / 3 = 1.6 / 3; INP = 3 / 5
    r = evaluate_ranking(dist, [1], g_pids, max_rank=5)
    np.testing.assert_array_equal(r.cmc, [0, 1, 1, 1, 1])
    assert r.mAP == pytest.approx(1.6 / 3) and r.mINP == pytest.approx(0.6)


def test_hand_computed_ties_and_skipped_query():
    # gallery pids [2, 1, 2, 1]
    # q0 (pid 1): all distances equal -> gallery order, matches [0, 1, 0, 1]
    #     AP = (1/2 + 2/4) / 2 = 1/2, INP = 2/4, first hit rank 2
    # q1 (pid 2): distances [3, 0, 2, 1] -> order 1, 3, 2, 0 -> matches [0, 0, 1, 1]
    #     AP = (1/3 + 2/4) / 2 = 5/12, INP = 2/4, first hit rank 3
    # q2 (pid 9): no positive -> skipped
    # mAP = (1/2 + 5/12) / 2 = 11/24, mINP = 1/2
    # CMC (gallery of 4 clips max_rank=20 to 4): [0, 1/2, 1, 1]
    dist = np.array([[1.0, 1, 1, 1], [3, 0, 2, 1], [0, 0, 0, 0]])
    r = evaluate_ranking(dist, [1, 2, 9], [2, 1, 2, 1])
    np.testing.assert_allclose(r.cmc, [0, 0.5, 1, 1])
    assert r.mAP == pytest.approx(11 / 24) and r.mINP == pytest.approx(0.5)
    assert r.num_valid == 2


def test_kept_list_shorter_than_max_rank():
    # pid 1 cam 0 query; gallery [pid1 cam1, pid1 cam0, pid1 cam0]: two removed,
    # kept list is one positive -> hit at rank 1 and the curve stays 1
    r = evaluate_ranking([[0.3, 0.1, 0.2]], [1], [1, 1, 1], [0], [1, 0, 0])
    np.testing.assert_array_equal(r.cmc, [1, 1, 1])
    assert r.mAP == 1.0 and r.mINP == 1.0


# ----------------------------------------------------------------------------
# input kinds and chunking
# ----------------------------------------------------------------------------


def test_numpy_and_torch_inputs_agree():
    rng = np.random.default_rng(3)
    dist, qp, gp, qc, gc = random_problem(rng, 30, 40, 6, 3, integer_dist=False)
    from_numpy = evaluate_ranking(dist, qp, gp, qc, gc)
    from_torch = evaluate_ranking(
        torch.from_numpy(dist), torch.from_numpy(qp), torch.from_numpy(gp), torch.from_numpy(qc), torch.from_numpy(gc)
    )
    from_lists = evaluate_ranking(dist.tolist(), qp.tolist(), gp.tolist(), qc.tolist(), gc.tolist())
    assert from_numpy == from_torch == from_lists
    assert_matches_loop(from_torch, dist, qp, gp, qc, gc)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int32])
def test_other_dtypes_rank_their_own_values(dtype):
    rng = np.random.default_rng(4)
    dist, qp, gp, qc, gc = random_problem(rng, 20, 30, 5, 2, integer_dist=True)
    t = torch.from_numpy(dist * 7 - 10).to(dtype)
    result = evaluate_ranking(t, qp, gp, qc, gc)
    assert_matches_loop(result, t.double().numpy(), qp, gp, qc, gc)


def test_noncontiguous_dist_and_requires_grad():
    rng = np.random.default_rng(5)
    dist, qp, gp, qc, gc = random_problem(rng, 70, 50, 8, 2, integer_dist=True)
    t = torch.from_numpy(np.ascontiguousarray(dist.T)).requires_grad_()
    result = evaluate_ranking(t.T, qp, gp, qc, gc, chunk_size=16)  # transposed view
    assert_matches_loop(result, dist, qp, gp, qc, gc)


def test_read_only_memmap(tmp_path):
    rng = np.random.default_rng(6)
    dist, qp, gp, qc, gc = random_problem(rng, 20, 30, 5, 2, integer_dist=False)
    np.save(tmp_path / "dist.npy", dist)
    mm = np.load(tmp_path / "dist.npy", mmap_mode="r")
    assert_matches_loop(evaluate_ranking(mm, qp, gp, qc, gc, chunk_size=7), dist, qp, gp, qc, gc)


def test_chunk_size_does_not_change_result():
    rng = np.random.default_rng(7)
    dist, qp, gp, qc, gc = random_problem(rng, 50, 40, 6, 2, integer_dist=True)
    results = [evaluate_ranking(dist, qp, gp, qc, gc, chunk_size=c) for c in (1, 3, 17, 50, 1000)]
    for r in results[1:]:
        np.testing.assert_array_equal(r.cmc, results[0].cmc)
        assert r.mAP == pytest.approx(results[0].mAP, abs=1e-14)
        assert r.mINP == pytest.approx(results[0].mINP, abs=1e-14)


class _RowBlocks(TorchFunctionMode):
    """Records how many rows each slice of a [rows, cols] matrix takes inside the ``with`` block."""

    def __init__(self, shape):
        super().__init__()
        self.shape, self.rows = tuple(shape), []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.Tensor.__getitem__ and tuple(args[0].shape) == self.shape and isinstance(args[1], slice):
            self.rows.append(len(out))
        return out


def test_work_is_done_in_row_blocks_of_chunk_size():
    rng = np.random.default_rng(8)
    dist, qp, gp, qc, gc = random_problem(rng, 23, 40, 6, 2, integer_dist=False)
    with _RowBlocks(dist.shape) as blocks:
        evaluate_ranking(dist, qp, gp, qc, gc, chunk_size=5)
    assert blocks.rows == [5] * 4 + [3]


def test_default_chunk_size_follows_memory_budget():
    # 3 rows of 40 gallery items fit; the default budget holds the ~10k x 10k HITSZ-VCM matrix in a few chunks
    assert ranking_module.chunk_rows(40, budget_bytes=3 * 40 * 16 + 15) == 3
    assert ranking_module.chunk_rows(40, budget_bytes=1) == 1
    assert ranking_module.chunk_rows(10_000) == ranking_module.CHUNK_BUDGET_BYTES // (10_000 * 16) == 1677
    rng = np.random.default_rng(9)
    dist, qp, gp, qc, gc = random_problem(rng, 10, 40, 6, 2, integer_dist=True)
    with _RowBlocks(dist.shape) as blocks:
        result = evaluate_ranking(dist, qp, gp, qc, gc)
    assert blocks.rows == [10]  # chunk_rows(40) > 10 queries: one block
    assert_matches_loop(result, dist, qp, gp, qc, gc)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_stays_chunked():
    rng = np.random.default_rng(10)
    dist, qp, gp, qc, gc = random_problem(rng, 3000, 2000, 50, 3, integer_dist=True)
    cpu = evaluate_ranking(dist, qp, gp, qc, gc)
    d = torch.from_numpy(dist).cuda()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    gpu = evaluate_ranking(d, qp, gp, qc, gc, chunk_size=100)
    peak = torch.cuda.max_memory_allocated() - base
    np.testing.assert_array_equal(gpu.cmc, cpu.cmc)
    assert gpu.mAP == pytest.approx(cpu.mAP, abs=1e-12)
    assert gpu.mINP == pytest.approx(cpu.mINP, abs=1e-12)
    assert peak < dist.size * 8 / 4  # far below one float64 Q x G matrix


# ----------------------------------------------------------------------------
# errors and the result object
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(dist=np.zeros(5)), "dist"),
        (dict(dist=np.zeros((2, 3), dtype=bool)), "dist"),
        (dict(q_pids=[1, 2, 3]), "q_pids"),
        (dict(g_pids=[[1, 2, 3]]), "g_pids"),
        (dict(g_pids=[1.0, 2.0, 3.0]), "g_pids"),
        (dict(q_camids=[0, 1]), "g_camids"),
        (dict(g_camids=[0, 1, 0]), "q_camids"),
        (dict(q_camids=[0, 1, 1], g_camids=[0, 1, 0]), "q_camids"),
        (dict(max_rank=0), "max_rank"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(dist=np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]])), "NaN"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, name):
    args = dict(dist=np.zeros((2, 3)), q_pids=[1, 2], g_pids=[1, 2, 3])
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=name):
        evaluate_ranking(**args)


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_ranking(np.zeros((2, 3)), [7, 8], [1, 2, 3])
    # positives exist but all share the query's camera
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_ranking(np.zeros((1, 2)), [1], [1, 1], [0], [0, 0])
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_ranking(np.zeros((0, 3)), [], [1, 2, 3])


def test_result_reads_as_mapping_and_serialises():
    r = evaluate_ranking([[0.2, 0.1]], [1], [1, 2])
    assert r["mAP"] == r.mAP == 0.5
    assert set(r) == {"cmc", "mAP", "mINP", "num_valid"} and len(r) == 4
    assert dict(r)["num_valid"] == 1
    with pytest.raises(KeyError):
        r["R1"]
    assert json.loads(json.dumps(r.to_dict())) == {"cmc": [0.0, 1.0], "mAP": 0.5, "mINP": 0.5, "num_valid": 1}
    assert r.rank(2) == 1.0 and r.rank(20) == 1.0  # curve reached 1 at the gallery's end
    short = RankingResult(cmc=np.array([0.5, 0.75]), mAP=0.5, mINP=0.5, num_valid=4)
    with pytest.raises(ValueError, match="beyond"):
        short.rank(5)


# ----------------------------------------------------------------------------
# protocols
# ----------------------------------------------------------------------------


def vcm_like(rng, num_ids=6, n_ir=30, n_rgb=36, dim=16, noise=1.5):
    centres = rng.standard_normal((num_ids, dim))
    q_pids, g_pids = rng.integers(0, num_ids, n_ir), rng.integers(0, num_ids, n_rgb)
    q_feat = (centres[q_pids] + noise * rng.standard_normal((n_ir, dim))).astype(np.float32)
    g_feat = (centres[g_pids] + noise * rng.standard_normal((n_rgb, dim))).astype(np.float32)
    return q_feat, q_pids, rng.integers(1, 4, n_ir), g_feat, g_pids, rng.integers(1, 4, n_rgb)


def test_cosine_distance_is_negative_cosine():
    rng = np.random.default_rng(20)
    q, g = rng.standard_normal((5, 8)), rng.standard_normal((7, 8))
    expected = -(q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    got = M.cosine_distance(q.astype(np.float32), torch.from_numpy(g).float())
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    assert M.cosine_distance(q, g).dtype == torch.float64
    with pytest.raises(ValueError, match="feature sizes"):
        M.cosine_distance(q, g[:, :4])


def test_hitsz_vcm_modes_use_roles_and_camera_filter():
    rng = np.random.default_rng(21)
    qf, qp, qc, gf, gp, gc = vcm_like(rng)
    results = M.evaluate_hitsz_vcm(qf, qp, qc, gf, gp, gc)
    assert list(results) == ["IR->RGB", "RGB->IR"]
    dist = M.cosine_distance(qf, gf).numpy()
    # infrared queries against the visible gallery
    assert_matches_loop(results["IR->RGB"], dist, qp, gp, qc, gc)
    # visible->infrared: the gallery-set RGB tracklets query the IR set
    assert_matches_loop(results["RGB->IR"], dist.T, gp, qp, gc, qc)
    assert results["RGB->IR"].num_valid != results["IR->RGB"].num_valid  # roles really swapped


def test_hitsz_vcm_with_rerank_reranks_each_mode():
    rng = np.random.default_rng(22)
    qf, qp, qc, gf, gp, gc = vcm_like(rng, n_ir=20, n_rgb=25)
    params = dict(k1=6, k2=3, lambda_value=0.3)
    results = M.evaluate_hitsz_vcm(qf, qp, qc, gf, gp, gc, rerank=True, rerank_params=params)
    qn = torch.nn.functional.normalize(torch.from_numpy(qf), dim=1)
    gn = torch.nn.functional.normalize(torch.from_numpy(gf), dim=1)
    ir_rgb = M.k_reciprocal_rerank(qn, gn, **params).numpy()
    rgb_ir = M.k_reciprocal_rerank(gn, qn, **params).numpy()
    assert_matches_loop(results["IR->RGB"], ir_rgb, qp, gp, qc, gc)
    assert_matches_loop(results["RGB->IR"], rgb_ir, gp, qp, gc, qc)


def test_bupt_modes_subsets_without_camera_filter():
    rng = np.random.default_rng(23)
    qf, qp, _, gf, gp, _ = vcm_like(rng, n_ir=40, n_rgb=50)
    q_mod = np.where(rng.random(40) < 0.5, "IR", "rgb")  # labels are case-insensitive
    g_mod = np.where(rng.random(50) < 0.5, "ir", "RGB")
    results = M.evaluate_bupt(qf, qp, q_mod, gf, gp, g_mod, same_modality=True)
    assert list(results) == ["IR->RGB", "RGB->IR", "RGB->RGB", "IR->IR"]
    dist = M.cosine_distance(qf, gf).numpy()
    q_ir, g_ir = np.char.upper(q_mod) == "IR", np.char.upper(g_mod) == "IR"
    for mode, qm, gm in [
        ("IR->RGB", q_ir, ~g_ir),
        ("RGB->IR", ~q_ir, g_ir),
        ("RGB->RGB", ~q_ir, ~g_ir),
        ("IR->IR", q_ir, g_ir),
    ]:
        assert_matches_loop(results[mode], dist[np.ix_(qm, gm)], qp[qm], gp[gm])
    assert list(M.evaluate_bupt(qf, qp, q_mod, gf, gp, g_mod)) == ["IR->RGB", "RGB->IR"]


def test_bupt_bad_modalities_name_the_argument():
    rng = np.random.default_rng(24)
    qf, qp, _, gf, gp, _ = vcm_like(rng, n_ir=4, n_rgb=4)
    with pytest.raises(ValueError, match="q_modalities"):
        M.evaluate_bupt(qf, qp, ["IR", "RGB", "NIR", "IR"], gf, gp, ["IR"] * 4)
    with pytest.raises(ValueError, match="g_modalities"):
        M.evaluate_bupt(qf, qp, ["IR"] * 4, gf, gp, ["IR"] * 3)
    with pytest.raises(ValueError, match="IR->RGB"):  # no RGB gallery item
        M.evaluate_bupt(qf, qp, ["IR"] * 4, gf, gp, ["IR"] * 4)


def test_format_table():
    results = {
        "IR->RGB": RankingResult(cmc=np.linspace(0.5, 1.0, 20), mAP=0.45678, mINP=0.3, num_valid=9),
        "RGB->IR": RankingResult(cmc=np.array([0.25, 0.5]), mAP=0.123, mINP=0.05, num_valid=3),
    }
    lines = M.format_table(results).splitlines()
    assert lines[0].split() == ["Mode", "R1", "R5", "R10", "R20", "mAP", "mINP"]
    r5 = 100 * (0.5 + 4 * 0.5 / 19)
    assert lines[1].split() == [
        "IR->RGB",
        "50.00",
        f"{r5:.2f}",
        f"{100 * (0.5 + 9 * 0.5 / 19):.2f}",
        "100.00",
        "45.68",
        "30.00",
    ]
    assert lines[2].split() == ["RGB->IR", "25.00", "-", "-", "-", "12.30", "5.00"]
    assert len({len(line) for line in lines}) == 1  # aligned columns


# ----------------------------------------------------------------------------
# re-ranking
# ----------------------------------------------------------------------------


def squared_euclidean(x):
    sq = (x * x).sum(1)
    return np.clip(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0, None).astype(np.float32)


def clustered_points(rng, n, dim=12, num_ids=6):
    centres = rng.standard_normal((num_ids, dim))
    x = centres[rng.integers(0, num_ids, n)] + 0.8 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    "num_q, num_g, k1, k2, chunk",
    [
        (20, 40, 20, 6, None),  # the paper's parameters
        (15, 30, 5, 3, 4),  # odd k1: round(k1 / 2) rounds half to even
        (12, 25, 4, 1, 1),  # k2 = 1 skips query expansion
        (3, 4, 20, 6, 2),  # k1 larger than the whole set
    ],
)
def test_rerank_matches_loop(num_q, num_g, k1, k2, chunk):
    rng = np.random.default_rng(num_q * 100 + k1)
    d = squared_euclidean(clustered_points(rng, num_q + num_g))
    ref = loop_rerank(d, num_q, k1, k2, 0.3)
    got = M.k_reciprocal_rerank_dist(d, num_q, k1=k1, k2=k2, lambda_value=0.3, chunk_size=chunk)
    assert got.shape == (num_q, num_g)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)


def test_rerank_from_features_and_chunk_invariance():
    rng = np.random.default_rng(30)
    x = clustered_points(rng, 50)
    from_feat = M.k_reciprocal_rerank(x[:20], torch.from_numpy(x[20:]), k1=8, k2=3)
    from_dist = M.k_reciprocal_rerank_dist(squared_euclidean(x), 20, k1=8, k2=3)
    np.testing.assert_allclose(from_feat.numpy(), from_dist.numpy(), atol=1e-5)
    for chunk in (1, 7):
        chunked = M.k_reciprocal_rerank_dist(squared_euclidean(x), 20, k1=8, k2=3, chunk_size=chunk)
        np.testing.assert_allclose(chunked.numpy(), from_dist.numpy(), atol=1e-6)


class _TopkShapes(TorchFunctionMode):
    """Records the input shape of every torch.topk call made inside the ``with`` block."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.topk, torch.Tensor.topk):
            self.shapes.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


def test_rerank_row_blocks_are_bounded():
    rng = np.random.default_rng(31)
    x = clustered_points(rng, 30)
    d = squared_euclidean(x)
    with _TopkShapes() as topk:  # pair_budget 50: many small Jaccard batches
        small = M.k_reciprocal_rerank_dist(d, 12, k1=6, k2=3, chunk_size=4, pair_budget=50)
    assert topk.shapes and all(rows <= 4 and cols == 30 for rows, cols in topk.shapes)
    np.testing.assert_allclose(small.numpy(), loop_rerank(d, 12, 6, 3, 0.3), atol=1e-5)


@pytest.mark.parametrize(
    "args, kwargs, name",
    [
        ((np.zeros((3, 4)), 1), {}, "all_dist"),
        ((np.zeros((4, 4)), 0), {}, "num_query"),
        ((np.zeros((4, 4)), 4), {}, "num_query"),
        ((np.zeros((4, 4)), 2), dict(k1=0), "k1"),
        ((np.zeros((4, 4)), 2), dict(lambda_value=1.5), "lambda_value"),
        ((np.zeros((4, 4)), 2), dict(chunk_size=0), "chunk_size"),
        ((np.zeros((4, 4)), 2), dict(pair_budget=0), "pair_budget"),
    ],
)
def test_rerank_bad_inputs(args, kwargs, name):
    with pytest.raises(ValueError, match=name):
        M.k_reciprocal_rerank_dist(*args, **kwargs)


def test_rerank_of_identical_features_warns_and_ties_instead_of_nan():
    # a collapsed model: every embedding the same, so every distance is 0 and od's column maxima are 0
    feats = torch.ones(9, 4)
    with pytest.warns(RuntimeWarning, match="degenerate distances .*all features are identical"):
        dist = M.k_reciprocal_rerank(feats[:4], feats[4:], k1=3, k2=2)
    assert dist.shape == (4, 5) and torch.isfinite(dist).all()
    assert torch.all(dist == dist[0, 0])  # everything ties
    rng = np.random.default_rng(7)
    qf, qp, qc, gf, gp, gc = vcm_like(rng, n_ir=6, n_rgb=8)
    with pytest.warns(RuntimeWarning, match="degenerate distances"):
        results = M.evaluate_hitsz_vcm(
            np.ones_like(qf),
            qp,
            qc,
            np.ones_like(gf),
            gp,
            gc,
            rerank=True,
            rerank_params=dict(k1=3, k2=2, lambda_value=0.3),
        )
    assert all(np.isfinite(r.mAP) for r in results.values())
