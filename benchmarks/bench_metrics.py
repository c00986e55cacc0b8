"""Evaluation speed at HITSZ-VCM size: star.metrics vs the classic numpy loop.

    PYTHONPATH=python pytest benchmarks/bench_metrics.py --benchmark-only

4,584 infrared query tracklets x 5,099 visible gallery tracklets, 2048-d
embeddings, both modes (IR->RGB and RGB->IR), the cosine similarity included.
The classic loop is run once (about a minute); its metrics are checked
against star.metrics', so the timings compare equal work.
"""

import numpy as np
import pytest
import torch

import star.metrics as M

NUM_QUERY, NUM_GALLERY, DIM, NUM_IDS, NUM_CAMS = 4584, 5099, 2048, 427, 6


@pytest.fixture(scope="module")
def hitsz_sized():
    """Identity-clustered features (each id a random centre plus heavy noise)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((NUM_IDS, DIM)).astype(np.float32)
    q_pids = rng.integers(0, NUM_IDS, NUM_QUERY)
    g_pids = rng.integers(0, NUM_IDS, NUM_GALLERY)
    q_feat = centres[q_pids] + 3.5 * rng.standard_normal((NUM_QUERY, DIM), dtype=np.float32)
    g_feat = centres[g_pids] + 3.5 * rng.standard_normal((NUM_GALLERY, DIM), dtype=np.float32)
    q_cams = rng.integers(1, NUM_CAMS + 1, NUM_QUERY)
    g_cams = rng.integers(1, NUM_CAMS + 1, NUM_GALLERY)
    return (torch.from_numpy(q_feat), q_pids, q_cams, torch.from_numpy(g_feat), g_pids, g_cams)


def classic_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """The per-query loop found in most re-ID code bases (stable argsort)."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(len(q_pids)):
        order = indices[i]
        remove = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        raw = matches[i][~remove]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        pos = np.where(raw == 1)[0]
        all_inp.append(cmc[pos[-1]] / (pos[-1] + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_rel = raw.sum()
        precision = raw.cumsum() / (np.arange(len(raw)) + 1.0)
        all_ap.append((precision * raw).sum() / num_rel)
    return np.mean(all_cmc, axis=0), np.mean(all_ap), np.mean(all_inp)


def classic_distance(q_feat, g_feat):
    q = q_feat / np.linalg.norm(q_feat, axis=1, keepdims=True)
    g = g_feat / np.linalg.norm(g_feat, axis=1, keepdims=True)
    return -(q @ g.T)


def classic_hitsz(q_feat, q_pids, q_cams, g_feat, g_pids, g_cams):
    dist = classic_distance(q_feat, g_feat)
    return {
        M.IR_TO_RGB: classic_eval(dist, q_pids, g_pids, q_cams, g_cams),
        M.RGB_TO_IR: classic_eval(dist.T, g_pids, q_pids, g_cams, q_cams),
    }


@pytest.mark.benchmark(group="hitsz-vcm both modes")
def test_star_metrics_hitsz_vcm(benchmark, hitsz_sized):
    results = benchmark.pedantic(M.evaluate_hitsz_vcm, args=hitsz_sized, rounds=7, warmup_rounds=1)
    print("\n" + M.format_table(results))
    assert set(results) == {M.IR_TO_RGB, M.RGB_TO_IR}


@pytest.mark.benchmark(group="hitsz-vcm both modes")
def test_classic_numpy_loop_hitsz_vcm(benchmark, hitsz_sized):
    q_feat, q_pids, q_cams, g_feat, g_pids, g_cams = hitsz_sized
    args = (q_feat.numpy(), q_pids, q_cams, g_feat.numpy(), g_pids, g_cams)
    classic = benchmark.pedantic(classic_hitsz, args=args, rounds=1)
    # same distance matrix -> same metrics, to float64 rounding
    dist = classic_distance(args[0], args[3])
    ours = {
        M.IR_TO_RGB: M.evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams),
        M.RGB_TO_IR: M.evaluate_ranking(dist.T, g_pids, q_pids, g_cams, q_cams),
    }
    for mode, (cmc, mAP, mINP) in classic.items():
        np.testing.assert_allclose(ours[mode].cmc, cmc, rtol=0, atol=1e-12)
        assert ours[mode].mAP == pytest.approx(mAP, abs=1e-12)
        assert ours[mode].mINP == pytest.approx(mINP, abs=1e-12)


@pytest.mark.benchmark(group="parts")
def test_part_cosine_distance(benchmark, hitsz_sized):
    q_feat, _, _, g_feat, _, _ = hitsz_sized
    dist = benchmark.pedantic(M.cosine_distance, args=(q_feat, g_feat), rounds=7, warmup_rounds=1)
    assert dist.shape == (NUM_QUERY, NUM_GALLERY)


@pytest.mark.benchmark(group="parts")
def test_part_torch_mm_similarity(benchmark, hitsz_sized):
    """What cosine_distance would cost with torch.mm on CPU (MKL)."""
    q_feat, _, _, g_feat, _, _ = hitsz_sized
    q = torch.nn.functional.normalize(q_feat, dim=1)
    g = torch.nn.functional.normalize(g_feat, dim=1)
    sim = benchmark.pedantic(torch.mm, args=(q, g.T), rounds=7, warmup_rounds=1)
    assert sim.shape == (NUM_QUERY, NUM_GALLERY)


@pytest.mark.benchmark(group="parts")
@pytest.mark.parametrize("mode", [M.IR_TO_RGB, M.RGB_TO_IR])
def test_part_evaluate_ranking(benchmark, hitsz_sized, mode):
    q_feat, q_pids, q_cams, g_feat, g_pids, g_cams = hitsz_sized
    dist = M.cosine_distance(q_feat, g_feat)
    args = (
        (dist, q_pids, g_pids, q_cams, g_cams) if mode == M.IR_TO_RGB else (dist.T, g_pids, q_pids, g_cams, q_cams)
    )  # transposed view, as in the protocol
    result = benchmark.pedantic(M.evaluate_ranking, args=args, rounds=7, warmup_rounds=1)
    assert 0 < result.mAP <= 1
