"""Data pipeline throughput on the synthetic dataset: generation, decoding, loaders, annotation parsing.

    pytest benchmarks/bench_data.py --benchmark-only --benchmark-json=data.json

Each benchmark stores its throughput in ``extra_info`` (tracklets_per_s, frames_per_s,
where a "frame" is one delivered 288 x 144 frame of a T = 12 tracklet). The loader
benchmarks run a whole training epoch (P x K x {IR, RGB} = 8 x 2 x 2 batches) or the
whole query + gallery set with ``STAR_BENCH_WORKERS`` workers (default: all cores, at
most 8). STAR_BENCH_SMALL=1 shrinks everything to a smoke test.
"""

from __future__ import annotations

import os

import pytest
import torch

from star.data import (
    SynthConfig,
    TrackletDataset,
    eval_loader,
    generate_synthetic,
    load_dataset,
    open_keypoint_store,
    read_hitsz_vcm,
    train_loader,
)

SMALL = os.environ.get("STAR_BENCH_SMALL", "") == "1"
WORKERS = int(os.environ.get("STAR_BENCH_WORKERS", min(8, os.cpu_count() or 1)))
T = 12
# Default synthetic frames (96 x 48, upscaled by the loader) and full-size frames (288 x 144, decode-bound).
SIZES = {"96x48": (96, 48, 80), "288x144": (288, 144, 40)}


def _config(size: str) -> SynthConfig:
    h, w, ids = SIZES[size]
    return SynthConfig(ids=12 if SMALL else ids, height=h, width=w, seed=0)


@pytest.fixture(scope="module", params=list(SIZES))
def synth(request, tmp_path_factory):
    root = generate_synthetic(tmp_path_factory.mktemp("bench") / request.param, _config(request.param))
    data = load_dataset("synthetic", root, verbose=False)
    return request.param, data, open_keypoint_store(data)


def _median(benchmark) -> float | None:
    """Median seconds of the benchmark; None under --benchmark-disable (the CI smoke run)."""
    return benchmark.stats.stats.median if benchmark.stats is not None else None


def _report(benchmark, tracklets: int, frames: int, **info) -> None:
    median = _median(benchmark)
    if median is None:
        return
    benchmark.extra_info.update(
        tracklets=tracklets,
        tracklets_per_s=round(tracklets / median, 1),
        frames_per_s=round(frames / median, 1),
        **info,
    )


def test_synthetic_generation(benchmark, tmp_path):
    cfg = _config("96x48")
    benchmark.pedantic(generate_synthetic, args=(tmp_path / "s", cfg), rounds=1, iterations=1)
    names = sum(len((tmp_path / f"s/info/{split}_name.txt").read_text().splitlines()) for split in ("train", "test"))
    benchmark.extra_info.update(ids=cfg.ids, frames_written=names)
    if _median(benchmark) is not None:
        benchmark.extra_info["written_frames_per_s"] = round(names / _median(benchmark), 1)


def test_dataset_getitem_train(benchmark, synth):
    """One process, no DataLoader: decode + sample + crop/flip + keypoints of 32 tracklets."""
    size, data, store = synth
    ds = TrackletDataset(data.train, train=True, num_frames=T, keypoints=store)
    n = min(32, len(ds))
    benchmark.pedantic(lambda: [ds[i] for i in range(n)], rounds=3, warmup_rounds=1)
    _report(benchmark, n, n * T, frame_size=size, workers=0)


def test_train_loader_epoch(benchmark, synth):
    size, data, store = synth
    loader = train_loader(data.train, store, num_frames=T, num_ids=8 if not SMALL else 2, num_workers=WORKERS, seed=0)
    epoch = iter(range(1000))

    def run():
        loader.batch_sampler.set_epoch(next(epoch))
        return sum(b["frames"].shape[0] for b in loader)

    run()  # starts the persistent workers
    benchmark.pedantic(run, rounds=3)
    n = len(loader.batch_sampler) * loader.batch_sampler.batch_size
    _report(
        benchmark,
        n,
        n * T,
        frame_size=size,
        workers=WORKERS,
        batches=len(loader.batch_sampler),
        pin_memory=torch.cuda.is_available(),
    )


def test_eval_loader(benchmark, synth):
    size, data, store = synth
    tracklets = data.query + data.gallery
    loader = eval_loader(tracklets, store, num_frames=T, batch_size=32, num_workers=WORKERS)
    run = lambda: sum(b["frames"].shape[0] for b in loader)  # noqa: E731
    run()
    benchmark.pedantic(run, rounds=3)
    _report(benchmark, len(tracklets), len(tracklets) * T, frame_size=size, workers=WORKERS)


@pytest.fixture(scope="module")
def hitsz_sized_info(tmp_path_factory):
    """HITSZ-VCM-sized annotation files (21,863 tracklets, ~463k frame names), no frames."""
    root = tmp_path_factory.mktemp("hitsz_info")
    (root / "info").mkdir()
    tracks = 2000 if SMALL else 21863
    per_split = {"train": tracks // 2, "test": tracks - tracks // 2}
    for split, count in per_split.items():
        names, rows = [], []
        for k in range(count):
            pid, mod, cam, n = 1 + k // 24, 1 + k % 2, 1 + k % 6, 12 + k % 19
            start = len(names) + 1
            names += [f"{pid:04d}M{mod}D{cam}T{k}F{f}.jpg" for f in range(n)]
            rows.append(f"{mod} {start} {len(names)} {pid:04d} {cam}")
        (root / "info" / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        (root / "info" / f"track_{split}_info.txt").write_text("\n".join(rows) + "\n")
    query = range(1, per_split["test"] + 1, 2)
    (root / "info" / "query_IDX.txt").write_text(" ".join(map(str, query)) + "\n")
    return root


def test_hitsz_sized_annotation_parse(benchmark, hitsz_sized_info):
    data = benchmark.pedantic(lambda: read_hitsz_vcm(hitsz_sized_info), rounds=3)
    frames = sum(len(i) for i in data.frame_index.values())
    benchmark.extra_info.update(frame_names=frames, tracklets=len(data.train) + len(data.query) + len(data.gallery))
