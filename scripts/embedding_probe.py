"""Which of a trained STAR's features retrieve the unseen identities, across modalities.

Evaluates one checkpoint on its dataset's test split (HITSZ-VCM protocol, both
modes) with several embeddings of the same forward pass, each L2-normalised:

- ``BN(z)``: the paper's test embedding (after the BN neck)
- ``z``: the guided-pooled sequence feature before the neck
- ``s``: the guide vector BN([h_T; g]) (sequence level only)
- ``h_T``: the edge-based skeleton code (last BiLSTM states)
- ``mean F'``: the corrected frame features averaged over time (frame level only)

    python scripts/embedding_probe.py runs/demo/last.pt [--root DIR]

``--root`` overrides the dataset folder recorded in the checkpoint's config.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from star.config import config_from_dict
from star.data import load_dataset, open_keypoint_store
from star.engine import extract_features
from star.engine.inference import load_trained_model, run_config_from_checkpoint
from star.metrics.protocols import evaluate_hitsz_vcm


class TappedEmbedding(nn.Module):
    """Runs the model and returns what a forward hook recorded instead of its output."""

    def __init__(self, model: nn.Module, taps: dict[str, torch.Tensor], name: str):
        super().__init__()
        self.model, self.taps, self.name = model, taps, name

    def forward(self, frames, keypoints, modality):
        out = self.model(frames, keypoints, modality)
        return out if self.name == "BN(z)" else F.normalize(self.taps[self.name].float(), dim=1)


def install_taps(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    taps: dict[str, torch.Tensor] = {}

    def tap(name: str, pick: Callable) -> Callable:
        return lambda module, args, out: taps.__setitem__(name, pick(args, out))

    names = ["BN(z)", "z"]
    model.head.register_forward_hook(tap("z", lambda args, out: args[0]))
    if model.sequence_guidance is not None:
        model.sequence_guidance.register_forward_hook(tap("s", lambda args, out: out.s))
        names.append("s")
    if model.skeleton_encoder is not None:
        model.skeleton_encoder.register_forward_hook(tap("h_T", lambda args, out: out[1]))
        names.append("h_T")
    if model.frame_correction is not None:
        model.frame_correction.register_forward_hook(tap("mean F'", lambda args, out: out.mean(dim=1)))
        names.append("mean F'")
    return taps, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--root", help="dataset folder (default: data.root of the checkpoint's config)")
    args = parser.parse_args()

    cfg = config_from_dict(run_config_from_checkpoint(args.checkpoint), source=args.checkpoint)
    trained = load_trained_model(args.checkpoint, "cpu")
    model = trained.model
    model.cfg.neck_feat = "after"  # the "BN(z)" row is the paper's embedding whatever the run used
    data = load_dataset(cfg.data.dataset, args.root or cfg.data.root, verbose=False)
    keypoints = open_keypoint_store(data, None if args.root else cfg.data.keypoints)
    taps, names = install_taps(model)
    print(f"{trained.checkpoint} (epoch {trained.epoch}), {data.name}: mAP / R1 in %")
    for name in names:
        sets = {
            split: extract_features(
                TappedEmbedding(model, taps, name),
                data.split(split),
                keypoints,
                num_frames=model.cfg.seq_len,
                height=cfg.data.height,
                width=cfg.data.width,
            )
            for split in ("query", "gallery")
        }
        q, g = sets["query"], sets["gallery"]
        results = evaluate_hitsz_vcm(q.feats, q.pids, q.camids, g.feats, g.pids, g.camids)
        row = "  ".join(f"{mode} {100 * r.mAP:5.1f} / {100 * r.cmc[0]:5.1f}" for mode, r in results.items())
        print(f"{name:8s} {row}", flush=True)


if __name__ == "__main__":
    main()
