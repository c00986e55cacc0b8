#!/usr/bin/env python3
"""How much transferable identity a dataset's keypoints carry, learned.

Trains STAR's edge-based skeleton encoder alone (bone geometry -> Linear ->
BiLSTM, h_T -> BN -> identity classifier; no frames, no CNN) on the training
tracklets' keypoints, and evaluates h_T (BN, L2) with the HITSZ-VCM protocol
on the unseen test identities, both modes. It runs in minutes on a CPU, so it
answers "can a learned model get identity from these skeletons, across
modalities?" before any full training run.

    python scripts/skeleton_probe.py --root data/synthetic [--iters 2000] [--lr 1e-3]

Training batches: 16 identities x 2 tracklets (any modality), T frames by
the training sampling rule; Adam, cross-entropy. Prints the loss and both
modes' R1 / mAP four times during training.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

import star_ext
from star.data import load_dataset, open_keypoint_store
from star.data.sampling import sample_frame_indices
from star.metrics.protocols import evaluate_hitsz_vcm
from star.models.skeleton_sequence import SkeletonSequenceEncoder


class SkeletonProbe(nn.Module):
    def __init__(self, num_ids: int, hidden: int = 64):
        super().__init__()
        self.encoder = SkeletonSequenceEncoder(star_ext.COCO_BONES, hidden)
        self.bn = nn.BatchNorm1d(2 * hidden)
        self.classifier = nn.Linear(2 * hidden, num_ids)

    def forward(self, keypoints: torch.Tensor, aspect: float) -> torch.Tensor:
        _, h_last = self.encoder(keypoints, aspect)
        return self.bn(h_last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="dataset root in the HITSZ-VCM layout, with keypoints/")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--frames", type=int, default=6, help="T, frames per tracklet")
    parser.add_argument("--aspect", type=float, default=0.5, help="frame width / height")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = load_dataset(args.dataset, args.root, verbose=False)
    store = open_keypoint_store(data)

    def keypoints(tracklets, train: bool) -> torch.Tensor:
        out = []
        for t in tracklets:
            idx = sample_frame_indices(len(t.rows), args.frames, train, rng)
            out.append(store.gather(t.store_split, np.asarray(t.rows)[idx]))
        return torch.from_numpy(np.stack(out))

    by_pid: dict[int, list] = {}
    for t in data.split("train"):
        by_pid.setdefault(t.pid, []).append(t)
    pids = sorted(by_pid)
    model = SkeletonProbe(len(pids))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=5e-4)

    def evaluate() -> str:
        model.eval()
        with torch.no_grad():
            sets = {}
            for split in ("query", "gallery"):
                ts = data.split(split)
                feat = nn.functional.normalize(model(keypoints(ts, False), args.aspect), dim=1).numpy()
                sets[split] = (feat, np.array([t.pid for t in ts]), np.array([t.camid for t in ts]))
        model.train()
        (qf, qp, qc), (gf, gp, gc) = sets["query"], sets["gallery"]
        results = evaluate_hitsz_vcm(qf, qp, qc, gf, gp, gc)
        return "  ".join(f"{mode} R1 {100 * r.cmc[0]:.1f} mAP {100 * r.mAP:.1f}" for mode, r in results.items())

    start = time.perf_counter()
    for it in range(1, args.iters + 1):
        batch, labels = [], []
        for p in rng.choice(pids, min(16, len(pids)), replace=False):
            chosen = rng.choice(len(by_pid[p]), min(2, len(by_pid[p])), replace=False)
            batch += [by_pid[p][i] for i in chosen]
            labels += [p] * len(chosen)
        loss = nn.functional.cross_entropy(
            model.classifier(model(keypoints(batch, True), args.aspect)), torch.tensor(labels)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % max(1, args.iters // 4) == 0 or it == args.iters:
            print(f"iter {it}: loss {loss.item():.3f}  {evaluate()}  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
