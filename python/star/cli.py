"""The ``star`` command line. The only module of the package that parses arguments.

Each subcommand is a ``_cmd_<name>(args)`` function registered in ``_build_parser``;
the work itself lives in the library modules so the Python API mirrors the CLI.
"""

from __future__ import annotations

import argparse
import sys


def _cmd_env(args: argparse.Namespace) -> int:
    import star_ext

    print(star_ext.format_build_info(star_ext.build_info()))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    import time

    import dataclasses

    from star.data import SynthConfig, generate_synthetic, load_dataset

    # Options left out keep SynthConfig's defaults (the parser suppresses them).
    given = vars(args)
    config = SynthConfig(**{f.name: given[f.name] for f in dataclasses.fields(SynthConfig) if f.name in given})
    start = time.perf_counter()
    try:
        out = generate_synthetic(args.out, config, force=args.force)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote the synthetic dataset in {time.perf_counter() - start:.1f} s")
    load_dataset("synthetic", out)
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    import json

    from star.data import DataError, check_dataset

    try:
        report = check_dataset(args.dataset, args.root, args.keypoints, decode=args.decode)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.stats if report.pose_quality is None else {**report.stats, "pose_quality": report.pose_quality}))
    else:
        print(report.summary)
        print(f"  {report.frames_checked} frames present" + (" and decodable" if args.decode else ""))
        print(f"  keypoint store: {report.keypoints or 'none found'}" + (" (aligned)" if report.keypoints else ""))
        if report.pose_quality is not None:
            from star.pose.quality import format_pose_quality

            print(format_pose_quality(report.pose_quality))
    return 0


def _cmd_pose(args: argparse.Namespace) -> int:
    from star.data import load_dataset
    from star.errors import StarError
    from star.pose import extract_keypoints, merge_shards

    try:
        data = load_dataset(args.dataset, args.root, verbose=not args.quiet)
        if args.merge:
            out = merge_shards(data, args.out)
            print(f"merged every shard: keypoint store written to {out}")
            return 0
        run = extract_keypoints(
            data, args.out, args.model, detector=args.detector, det_model=args.det_model, batch=args.batch,
            workers=args.workers, shard=args.shard, shard_size=args.shard_size, device=args.device,
            threads=args.threads, decode_threads=args.decode_threads, dtype=args.dtype,
            skip_unreadable=args.skip_unreadable, force=args.force, progress=not args.quiet,
        )
    except (StarError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(run.summary().replace("force=True", "--force"))
    if not run.complete:
        print(f"when every part has finished: star pose --dataset {args.dataset} --root {args.root} --out {run.out} --merge")
    return 0


# ----------------------------------------------------------------------------- training and evaluation
# Errors a user can fix (bad config, path, data, checkpoint) end the command with one line on stderr.
def _user_errors() -> tuple[type[BaseException], ...]:
    from star.config import ConfigError
    from star.data import DataError
    from star.engine.checkpoint import CheckpointError

    return (ConfigError, DataError, CheckpointError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError)


def _run_config(args: argparse.Namespace):
    """The RunConfig of a command: --config (else the checkpoint's own config) plus overrides."""
    from star.config import config_from_dict, load_config

    if args.config is None and getattr(args, "checkpoint", None):
        from star.engine.inference import run_config_from_checkpoint

        tree = run_config_from_checkpoint(args.checkpoint)
        return config_from_dict(tree, args.overrides, source=f"the config saved in {args.checkpoint}")
    if args.config is None:
        raise ValueError("--config is required")
    return load_config(args.config, args.overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from star.engine import TrainingDiverged, train

    try:
        cfg = _run_config(args)
        summary = train(cfg)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if summary:
        print(f"done: mean mAP {summary['mAP']:.2%} after epoch {summary['epoch']}; outputs in {cfg.output_dir}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from star.engine import evaluate_features, load_npz, write_metrics
    from star.engine.inference import evaluate_checkpoint

    try:
        cfg = _run_config(args)
        out = Path(args.output_dir) if args.output_dir else None
        if args.features:
            sets = load_npz(args.features)
            if not {"query", "gallery"} <= set(sets):
                raise ValueError(f"{args.features}: needs query and gallery features, found {', '.join(sets)}")
            result = evaluate_features(
                sets["query"], sets["gallery"], protocol=cfg.eval.protocol, dataset=cfg.data.dataset,
                same_modality=cfg.eval.same_modality, rerank=cfg.eval.rerank, max_rank=cfg.eval.max_rank,
            )
            if out is not None:
                write_metrics(result, out / "metrics.json")
        else:
            result = evaluate_checkpoint(cfg, args.checkpoint, output_dir=out, visrank=False)
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(result.table)
    if out is not None:
        print(f"wrote {out / 'metrics.json'}")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from star.engine.inference import extract_checkpoint_features

    try:
        cfg = _run_config(args)
        features = extract_checkpoint_features(cfg, args.checkpoint, args.out, splits=tuple(args.splits))
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{name} {len(f)} x {f.feats.shape[1]}" for name, f in features.items())
    print(f"wrote {args.out}: {counts}")
    return 0


def _cmd_visrank(args: argparse.Namespace) -> int:
    from star.engine import load_npz
    from star.engine.inference import extract_checkpoint_features, rank_lists_from_features

    try:
        cfg = _run_config(args)
        if args.features:
            features = load_npz(args.features)
        else:
            features = extract_checkpoint_features(cfg, args.checkpoint, f"{args.out}/features.npz")
        paths = rank_lists_from_features(cfg, features, args.out, topk=args.topk, num_queries=args.num_queries)
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} rank-list pictures to {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from star.engine import TrainingDiverged, train
    from star.engine.demo import demo_config

    start = time.perf_counter()
    try:
        cfg = demo_config(args.out, args.data, args.overrides)
        summary = train(cfg)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"demo finished in {time.perf_counter() - start:.0f} s: mean mAP {summary['mAP']:.2%} "
        f"(chance is a few %); metrics.json, rank lists (visrank/), logs and checkpoints in {cfg.output_dir}"
    )
    return 0


def _build_parser() -> argparse.ArgumentParser:
    from star import __version__

    parser = argparse.ArgumentParser(
        prog="star",
        description="STAR video visible-infrared person re-ID: data, pose, training, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"star-reid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("env", help="print torch/CUDA versions and which fused ops have CPU/CUDA kernels")
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("synth", help="generate the synthetic VVI dataset (HITSZ-VCM layout + keypoint store)")
    p.add_argument("--out", required=True, help="output directory (must not exist, be empty, or be replaced with --force)")
    p.add_argument("--force", action="store_true", help="replace an existing synthetic dataset at --out")
    size = p.add_argument_group("dataset settings (defaults: star.data.SynthConfig; 80 ids, seconds on 2 cores)")
    for flag, kind, text in (
        ("--ids", int, "number of identities"),
        ("--test-ids", int, "identities in the test split (default: half)"),
        ("--tracklets", int, "tracklets per identity and modality"),
        ("--cameras", int, "number of cameras D1..Dn"),
        ("--min-frames", int, "shortest regular tracklet"),
        ("--max-frames", int, "longest tracklet"),
        ("--height", int, "frame height in pixels"),
        ("--width", int, "frame width in pixels"),
        ("--seed", int, "random seed; same seed, same bytes"),
    ):
        size.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=text)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("check-data", help="validate a dataset layout, its frames and keypoint store; print counts")
    p.add_argument("--dataset", required=True, choices=["hitsz-vcm", "bupt", "synthetic", "list"])
    p.add_argument("--root", required=True, help="dataset root directory")
    p.add_argument("--keypoints", default=None, help="keypoint store directory (default: <root>/keypoints if present); given, pose quality is reported too")
    p.add_argument("--decode", action="store_true", help="also decode every frame (slow; finds corrupt JPEGs)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the per-split counts (and pose_quality with --keypoints)")
    p.set_defaults(func=_cmd_check_data)

    p = sub.add_parser("pose", help="extract COCO-17 keypoints with RTMPose (onnxruntime) into the keypoint store")
    p.add_argument("--dataset", required=True, choices=["hitsz-vcm", "bupt", "synthetic", "list"])
    p.add_argument("--root", required=True, help="dataset root directory")
    p.add_argument("--out", default=None, help="keypoint store directory (default: <root>/keypoints)")
    p.add_argument("--model", default="rtmpose-m",
                   help="RTMPose .onnx path, or rtmpose-s/-m/-x from rtmlib's cache (default rtmpose-m); never downloaded")
    p.add_argument("--detector", choices=["yolox"], default=None,
                   help="run a person detector first (default: none, the whole frame is the box)")
    p.add_argument("--det-model", default=None, help="YOLOX .onnx path or yolox-tiny/-m/-x (default yolox-m)")
    p.add_argument("--batch", type=int, default=32, help="frames per inference call (default 32)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads per worker (default: CPUs / workers)")
    p.add_argument("--decode-threads", type=int, default=None, help="frame decoding threads per worker")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda, cuda:N (onnxruntime's CUDA provider: the pose-gpu extra) or auto (cuda if present)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="compute only part I of N (0 <= I < N, e.g. $SLURM_ARRAY_TASK_ID/8); then run --merge")
    p.add_argument("--merge", action="store_true", help="check that every shard is present and assemble the store")
    p.add_argument("--shard-size", type=int, default=1024, help="frames per resumable shard (default 1024)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="store dtype (default float16)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="warn and store conf 0 for missing/undecodable frames instead of stopping")
    p.add_argument("--force", action="store_true", help="discard unfinished shards / recompute a complete store")
    p.add_argument("--quiet", action="store_true", help="no progress bar or dataset summary")
    p.set_defaults(func=_cmd_pose)

    def add_config(p: argparse.ArgumentParser, *, required: bool) -> None:
        p.add_argument("--config", required=required, help="YAML config (configs/...); _base_ files are inherited")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides, e.g. optim.lr=0.01 data.root=/data/HITSZ-VCM train.amp=false")

    p = sub.add_parser("train", help="train STAR (resumes from <output_dir>/last.pt when present)")
    add_config(p, required=True)
    p.set_defaults(func=_cmd_train, checkpoint=None)

    p = sub.add_parser("eval", help="evaluate a checkpoint (or saved features) in both modes; prints the table")
    add_config(p, required=False)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="best.pt / last.pt of a run (its config is used unless --config)")
    source.add_argument("--features", help="a features .npz written by `star extract` (needs --config)")
    p.add_argument("--output-dir", default=None, help="write metrics.json here")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("extract", help="write query/gallery embeddings with pids, cameras, modalities, paths (.npz)")
    add_config(p, required=False)
    p.add_argument("--checkpoint", required=True, help="best.pt / last.pt of a run (its config is used unless --config)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--splits", nargs="+", default=["query", "gallery"], choices=["train", "query", "gallery"])
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("visrank", help="draw rank lists: query strip, top-k gallery strips, green/red borders, skeletons")
    add_config(p, required=False)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="best.pt / last.pt of a run (its config is used unless --config)")
    source.add_argument("--features", help="a features .npz written by `star extract` (needs --config)")
    p.add_argument("--out", required=True, help="output directory for the pictures")
    p.add_argument("--topk", type=int, default=10, help="gallery tracklets per query (default 10)")
    p.add_argument("--num-queries", type=int, default=8, help="pictures to draw (default 8)")
    p.set_defaults(func=_cmd_visrank)

    p = sub.add_parser("demo", help="generate the synthetic dataset, train STAR on the CPU, evaluate, draw rank lists")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo; a rerun resumes/reports)")
    p.add_argument("--data", default=None,
                   help="synthetic dataset folder (default $STAR_CACHE_DIR/synthetic or ~/.cache/star-reid/synthetic; "
                        "generated when missing)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. seed=1 optim.epochs=4")
    p.set_defaults(func=_cmd_demo)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
