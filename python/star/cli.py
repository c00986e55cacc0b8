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
        print(json.dumps(report.stats))
    else:
        print(report.summary)
        print(f"  {report.frames_checked} frames present" + (" and decodable" if args.decode else ""))
        print(f"  keypoint store: {report.keypoints or 'none found'}" + (" (aligned)" if report.keypoints else ""))
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
    p.add_argument("--keypoints", default=None, help="keypoint store directory (default: <root>/keypoints if present)")
    p.add_argument("--decode", action="store_true", help="also decode every frame (slow; finds corrupt JPEGs)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the per-split counts")
    p.set_defaults(func=_cmd_check_data)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
