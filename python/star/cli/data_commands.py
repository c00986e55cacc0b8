"""``star env``, ``star synth``, ``star check-data`` and ``star pose``: the build, the data and its skeletons."""

from __future__ import annotations

import argparse
import sys

from .arguments import add_dataset


def _cmd_env(args: argparse.Namespace) -> int:
    import star_ext

    print(star_ext.format_build_info(star_ext.build_info()))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from star.config import check_ranges
    from star.data import SynthConfig, generate_synthetic, load_dataset

    # Options left out keep SynthConfig's defaults (the parser suppresses them).
    given = vars(args)
    config = SynthConfig(**{f.name: given[f.name] for f in dataclasses.fields(SynthConfig) if f.name in given})
    check_ranges(config, "star synth setting ")  # generate_synthetic then checks the rules across settings
    start = time.perf_counter()
    out = generate_synthetic(args.out, config, force=args.force)
    print(f"wrote the synthetic dataset in {time.perf_counter() - start:.1f} s")
    load_dataset("synthetic", out)
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    import json

    from star.data import check_dataset
    from star.data.synthetic import dataset_read_lock

    with dataset_read_lock(args.root, "star check-data"):
        report = check_dataset(args.dataset, args.root, args.keypoints, decode=args.decode)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                report.stats if report.pose_quality is None else {**report.stats, "pose_quality": report.pose_quality}
            )
        )
    else:
        print(report.summary)
        print(f"  {report.frames_checked} frames present" + (" and decodable" if args.decode else ""))
        print(f"  keypoint store: {report.keypoints or 'none found'}" + (" (aligned)" if report.keypoints else ""))
        if report.pose_quality is not None:
            from star.data.keypoint_quality import format_pose_quality

            print(format_pose_quality(report.pose_quality))
    return 0


def _cmd_pose(args: argparse.Namespace) -> int:
    from star.data.synthetic import dataset_read_lock

    with dataset_read_lock(args.root, "star pose"):  # the frames must not be replaced while read
        return _extract_poses(args)


def _extract_poses(args: argparse.Namespace) -> int:
    from star.data import load_dataset
    from star.pose import PoseOptions, extract_keypoints, merge_shards

    # every frame is extracted, so no split is required; --skip-unreadable tolerates missing frames
    data = load_dataset(
        args.dataset, args.root, verbose=not args.quiet, required_splits=(), check_frames=not args.skip_unreadable
    )
    if args.merge:
        out = merge_shards(data, args.out)
        print(f"merged every shard: keypoint store written to {out}")
        return 0
    options = PoseOptions(
        out=args.out,
        model=args.model,
        detector=args.detector,
        det_model=args.det_model,
        batch=args.batch,
        workers=args.workers,
        shard=args.shard,
        shard_size=args.shard_size,
        device=args.device,
        threads=args.threads,
        decode_threads=args.decode_threads,
        dtype=args.dtype,
        skip_unreadable=args.skip_unreadable,
        force=args.force,
        progress=not args.quiet,
    )
    run = extract_keypoints(data, options)
    print(run.summary().replace("force=True", "--force"))
    if not run.complete:
        print(
            f"when every part has finished: star pose --dataset {args.dataset} --root {args.root} "
            f"--out {run.out} --merge"
        )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print torch/CUDA versions and which fused ops have CPU/CUDA kernels")
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("synth", help="generate the synthetic VVI dataset (HITSZ-VCM layout + keypoint store)")
    p.add_argument(
        "--out", required=True, help="output directory (must not exist, be empty, or be replaced with --force)"
    )
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
    add_dataset(p)
    p.add_argument(
        "--keypoints",
        default=None,
        help="keypoint store directory (default: <root>/keypoints if present); given, pose quality is reported too",
    )
    p.add_argument("--decode", action="store_true", help="also decode every frame (slow; finds corrupt JPEGs)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with the per-split counts (and pose_quality with --keypoints)",
    )
    p.set_defaults(func=_cmd_check_data)

    p = sub.add_parser("pose", help="extract COCO-17 keypoints with RTMPose (onnxruntime) into the keypoint store")
    add_dataset(p)
    p.add_argument("--out", default=None, help="keypoint store directory (default: <root>/keypoints)")
    p.add_argument(
        "--model",
        default="rtmpose-m",
        help="RTMPose .onnx path, or rtmpose-s/-m/-x from rtmlib's cache (default rtmpose-m); never downloaded",
    )
    p.add_argument(
        "--detector",
        choices=["yolox"],
        default=None,
        help="run a person detector first (default: none, the whole frame is the box)",
    )
    p.add_argument("--det-model", default=None, help="YOLOX .onnx path or yolox-tiny/-m/-x (default yolox-m)")
    p.add_argument("--batch", type=int, default=32, help="frames per inference call (default 32)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads per worker (default: CPUs / workers)")
    p.add_argument("--decode-threads", type=int, default=None, help="frame decoding threads per worker")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N (onnxruntime's CUDA provider: the pose-gpu extra) or auto (cuda if present)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="compute only part I of N (0 <= I < N, e.g. $SLURM_ARRAY_TASK_ID/8); then run --merge",
    )
    p.add_argument("--merge", action="store_true", help="check that every shard is present and assemble the store")
    p.add_argument("--shard-size", type=int, default=1024, help="frames per resumable shard (default 1024)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="store dtype (default float16)")
    p.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="warn and store conf 0 for missing/undecodable frames instead of stopping",
    )
    p.add_argument("--force", action="store_true", help="discard unfinished shards / recompute a complete store")
    p.add_argument("--quiet", action="store_true", help="no progress bar or dataset summary")
    p.set_defaults(func=_cmd_pose)
