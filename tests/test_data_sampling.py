"""Sequence sampling rules and the cross-modal identity batch sampler (also under DDP)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from star.data import INFRARED, VISIBLE, CrossModalIdentitySampler, Tracklet, chunk_indices, sample_frame_indices


def test_test_mode_takes_the_first_frame_of_each_chunk():
    # 30 frames, T = 12 -> chunks of ceil(30/12) = 3, padded to 36 with frame 29.
    assert sample_frame_indices(30, 12, train=False).tolist() == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29, 29]
    # 24 frames -> chunks of 2, no padding.
    assert sample_frame_indices(24, 12, train=False).tolist() == list(range(0, 24, 2))
    # Shorter than T: every frame, then the last one repeated.
    assert sample_frame_indices(5, 12, train=False).tolist() == [0, 1, 2, 3, 4] + [4] * 7
    assert chunk_indices(13, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 12, 12, 12]]


@given(n=st.integers(1, 200), t=st.integers(1, 16), seed=st.integers(0, 2**32 - 1))
def test_train_mode_takes_one_frame_inside_each_chunk(n, t, seed):
    idx = sample_frame_indices(n, t, train=True, rng=np.random.default_rng(seed))
    chunks = chunk_indices(n, t)
    assert idx.shape == (t,)
    for k in range(t):
        assert idx[k] in chunks[k]
    assert np.all(np.diff(idx) >= 0) and idx.max() <= n - 1


def test_train_mode_is_random_within_chunks():
    rng = np.random.default_rng(0)
    draws = np.stack([sample_frame_indices(36, 12, True, rng) for _ in range(200)])
    assert set(draws[:, 0].tolist()) == {0, 1, 2}  # every frame of the first chunk gets used
    with pytest.raises(ValueError):
        sample_frame_indices(36, 12, train=True)


def _tracklets(num_ids=12, per_mod=(3, 4), only_ir=(99,)):
    out = []
    for pid in list(range(num_ids)) + list(only_ir):
        for mod, count in ((INFRARED, per_mod[0]), (VISIBLE, per_mod[1] if pid not in only_ir else 0)):
            for k in range(count):
                out.append(Tracklet((f"{pid}-{mod}-{k}",), pid, k % 3, mod, str(k), "train", (0,)))
    return out


def test_identity_sampler_batch_composition():
    tracklets = _tracklets()
    sampler = CrossModalIdentitySampler(tracklets, num_ids=4, num_per_modality=2, seed=3)
    batches = list(sampler)
    n_ir = 12 * 3  # pid 99 has no visible tracklet: not eligible
    assert len(batches) == len(sampler) == n_ir // (4 * 2)
    for batch in batches:
        assert len(batch) == sampler.batch_size == 16
        pids = [tracklets[i].pid for i in batch]
        assert 99 not in pids
        for g in range(4):  # per identity: K infrared then K visible, one identity per group
            group = batch[4 * g : 4 * g + 4]
            assert len({tracklets[i].pid for i in group}) == 1
            assert [tracklets[i].modality for i in group] == [INFRARED, INFRARED, VISIBLE, VISIBLE]
        assert len(set(pids)) == 4
    # Tracklets of an (identity, modality) are used in shuffled passes: no repeats within one batch.
    assert all(len(set(b)) == len(b) for b in batches)


def test_identity_sampler_determinism_and_epochs():
    tracklets = _tracklets()
    a = CrossModalIdentitySampler(tracklets, 4, 2, seed=1)
    b = CrossModalIdentitySampler(tracklets, 4, 2, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.load_state_dict(a.state_dict())
    assert list(b) == list(a)
    assert list(CrossModalIdentitySampler(tracklets, 4, 2, seed=2)) != first


def test_identity_sampler_ddp_shares_are_disjoint_and_equal():
    tracklets = _tracklets(num_ids=20)
    world = 3
    kw = dict(num_ids=4, num_per_modality=2, seed=7, num_batches=10)
    ranks = [CrossModalIdentitySampler(tracklets, **kw, rank=r, world_size=world) for r in range(world)]
    for s in ranks:
        s.set_epoch(5)
    shares = [list(s) for s in ranks]
    assert [len(s) for s in shares] == [10 // world] * world == [len(s) for s in ranks]
    # Together the ranks cover the first world * (10 // world) global batches, each exactly once.
    global_batches = ranks[0].global_batches()
    assert len(global_batches) == 9
    interleaved = [shares[r][i] for i in range(3) for r in range(world)]
    assert interleaved == global_batches
    # Batches processed at the same step on different ranks use different identities.
    for step in range(3):
        pid_sets = [{tracklets[i].pid for i in shares[r][step]} for r in range(world)]
        assert sum(len(p) for p in pid_sets) == len(set().union(*pid_sets))


def test_identity_sampler_needs_enough_identities():
    with pytest.raises(ValueError, match="at least 8 identities"):
        CrossModalIdentitySampler(_tracklets(num_ids=5), num_ids=8)
    with pytest.raises(ValueError, match="rank"):
        CrossModalIdentitySampler(_tracklets(), 4, 2, rank=2, world_size=2)
