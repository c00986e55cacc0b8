"""The ``star`` command line. The only module of the package that parses arguments.

Each subcommand is a ``_cmd_<name>(args)`` function registered in ``_build_parser``;
the work itself lives in the library modules so the Python API mirrors the CLI.
Errors: ``main`` prints a :class:`star.errors.StarError` (a problem the user can fix) as
one ``error:`` line and returns its exit code (3 for a diverged training, else 1), and so
is an OSError the machine caused (disk full, read-only, no permission); Ctrl-C prints one
line and returns 130. Any other exception is a bug and propagates with its traceback. ``STAR_DEBUG=1`` shows the
traceback of user errors too.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Iterator

from star._version import __version__
from star.console import log_to_stdout
from star.errors import StarError, is_environment_write_error, write_failure_reason

# The exit code of a command stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130


def _exit_code(error: StarError) -> int:
    if "star.engine" in sys.modules:  # only the engine raises TrainingDiverged; importing it costs seconds
        from star.engine import TrainingDiverged

        if isinstance(error, TrainingDiverged):
            return 3
    return 1


class _DatasetNames:
    """``choices`` for ``--dataset``: ``star.data.DATASET_NAMES``, read only when an argument is
    checked or help is printed (importing star.data takes seconds; ``star --version`` should not)."""

    @staticmethod
    def _names() -> tuple[str, ...]:
        from star.data.registry import DATASET_NAMES

        return DATASET_NAMES

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


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


# ----------------------------------------------------------------------------- training and evaluation
def _run_config(args: argparse.Namespace):
    """The RunConfig of a command: --config (else the checkpoint's own config) plus overrides."""
    from star.config import ConfigError, config_from_dict, load_config

    if args.config is None and getattr(args, "checkpoint", None):
        from star.engine.inference import run_config_from_checkpoint

        tree = run_config_from_checkpoint(args.checkpoint)
        return config_from_dict(tree, args.overrides, source=f"the config saved in {args.checkpoint}")
    if args.config is None:
        raise ConfigError("--config is required")
    return load_config(args.config, args.overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from star.engine import train

    cfg = _run_config(args)
    summary = train(cfg)
    if summary:
        print(f"done: mean mAP {summary['mAP']:.2%} after epoch {summary['epoch']}; outputs in {cfg.output_dir}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from star.engine import evaluate_features
    from star.engine.inference import evaluate_checkpoint
    from star.reports.feature_files import load_dataset_features, require_sets
    from star.reports.metrics_file import METRICS_FILE, check_metrics_outputs, write_metrics

    cfg = _run_config(args)
    out = Path(args.output_dir) if args.output_dir else None
    if args.features:
        if out is not None:
            check_metrics_outputs(out, inputs=[args.features], force=args.force)
        sets = load_dataset_features(args.features, cfg.data.dataset)
        require_sets(sets, ("query", "gallery"), args.features)
        result = evaluate_features(
            sets["query"],
            sets["gallery"],
            protocol=cfg.eval.protocol,
            dataset=cfg.data.dataset,
            same_modality=cfg.eval.same_modality,
            rerank=cfg.eval.rerank,
            max_rank=cfg.eval.max_rank,
        )
        if out is not None:
            write_metrics(result, out / METRICS_FILE)
    else:
        result = evaluate_checkpoint(cfg, args.checkpoint, output_dir=out, visrank=False, force=args.force)
    print(result.table)
    if out is not None:
        print(f"wrote {out / METRICS_FILE}")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from star.engine.inference import extract_checkpoint_features

    cfg = _run_config(args)
    features = extract_checkpoint_features(cfg, args.checkpoint, args.out, splits=tuple(args.splits), force=args.force)
    counts = ", ".join(f"{name} {len(f)} x {f.feats.shape[1]}" for name, f in features.items())
    print(f"wrote {args.out}: {counts}")
    return 0


def _cmd_visrank(args: argparse.Namespace) -> int:
    from pathlib import Path

    from star.config.schema import EvalConfig
    from star.engine.inference import extract_checkpoint_features, rank_lists_from_features
    from star.output_paths import check_output_dir
    from star.reports.feature_files import load_dataset_features
    from star.reports.rank_lists import check_rank_list_options

    cfg = _run_config(args)
    out = check_output_dir(args.out, "rank-list folder")
    # Unset: EvalConfig's defaults (not the run's values: a run may have visrank_queries 0).
    topk = EvalConfig.visrank_topk if args.topk is None else args.topk
    num_queries = EvalConfig.visrank_queries if args.num_queries is None else args.num_queries
    check_rank_list_options(topk=topk, num_queries=num_queries)
    if args.features:
        features = load_dataset_features(args.features, cfg.data.dataset)
    else:
        features = extract_checkpoint_features(cfg, args.checkpoint, Path(out) / "features.npz")
    paths = rank_lists_from_features(cfg, features, out, topk=topk, num_queries=num_queries)
    print(f"wrote {len(paths)} rank-list pictures to {args.out}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from star.explain import default_output_dir, explain_checkpoint

    cfg = _run_config(args)
    out = args.out if args.out is not None else default_output_dir(args.checkpoint)
    limits = {
        name: value
        for name, value in (("max_tracklets", args.max_tracklets), ("saliency_tracklets", args.saliency_tracklets))
        if value is not None
    }
    result = explain_checkpoint(cfg, args.checkpoint, split=args.split, output_dir=out, force=args.force, **limits)
    used = ", ".join(f"{m.modality} {m.tracklets}" for m in result.modalities.values())
    absent = sorted({s for m in result.modalities.values() for s in m.absent})
    print(
        f"explained {used} tracklets of {result.dataset} ({result.split}); wrote explain.json and "
        f"{', '.join(result.figures) or 'no pictures'} to {out}"
        + (f"; absent: {', '.join(absent)} (reasons in explain.json)" if absent else "")
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from star.demo import demo_config
    from star.engine import train
    from star.engine.checkpoint import BEST
    from star.explain import default_output_dir, explain_checkpoint

    start = time.perf_counter()
    cfg = demo_config(args.out, args.data, args.overrides)
    summary = train(cfg)
    best = Path(cfg.output_dir) / BEST
    explain_checkpoint(cfg, best, output_dir=default_output_dir(best))
    print(
        f"demo finished in {time.perf_counter() - start:.0f} s: mean mAP {summary['mAP']:.2%} "
        f"(chance is a few %); metrics.json, rank lists (visrank/), the skeleton guidance (explain/), logs and "
        f"checkpoints in {cfg.output_dir}"
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from star.export import export_onnx

    report = export_onnx(args.checkpoint, args.out, batch=args.batch, opset=args.opset, force=args.force)
    print(report.summary())
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    from star.reports.run_table import run_table

    text, notes = run_table(args.run_dirs, args.format, args.group_by)
    print(text)
    for note in notes:  # on stderr, so a csv/latex table on stdout stays clean
        print(f"note: {note}", file=sys.stderr)
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="star",
        description="STAR video visible-infrared person re-ID: data, pose, training, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"star-reid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add_dataset(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", required=True, choices=_DatasetNames(), metavar="NAME", help="dataset: %(choices)s")
        p.add_argument("--root", required=True, help="dataset root directory")

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

    def add_config(p: argparse.ArgumentParser, *, required: bool) -> None:
        p.add_argument("--config", required=required, help="YAML config (configs/...); _base_ files are inherited")
        p.add_argument(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help="config overrides, e.g. optim.lr=0.01 data.root=/data/HITSZ-VCM train.amp=false",
        )

    def add_force(p: argparse.ArgumentParser, kind: str) -> None:
        p.add_argument(
            "--force",
            action="store_true",
            help=f"replace an existing output file that is not a {kind} (never an input of the command)",
        )

    def add_checkpoint_or_features(p: argparse.ArgumentParser) -> None:
        add_config(p, required=False)
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--checkpoint", help="best.pt / last.pt of a run (its config is used unless --config)")
        source.add_argument("--features", help="a features .npz written by `star extract` (needs --config)")

    p = sub.add_parser("train", help="train STAR (resumes from <output_dir>/last.pt when present)")
    add_config(p, required=True)
    p.set_defaults(func=_cmd_train, checkpoint=None)

    p = sub.add_parser("eval", help="evaluate a checkpoint (or saved features) in both modes; prints the table")
    add_checkpoint_or_features(p)
    p.add_argument("--output-dir", default=None, help="write metrics.json here")
    add_force(p, "metrics.json / cmc.png")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("extract", help="write query/gallery embeddings with pids, cameras, modalities, paths (.npz)")
    add_config(p, required=False)
    p.add_argument(
        "--checkpoint", required=True, help="best.pt / last.pt of a run (its config is used unless --config)"
    )
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--splits", nargs="+", default=["query", "gallery"], choices=["train", "query", "gallery"])
    add_force(p, "features .npz")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser(
        "visrank", help="draw rank lists: query strip, top-k gallery strips, green/red borders, skeletons"
    )
    add_checkpoint_or_features(p)
    p.add_argument("--out", required=True, help="output directory for the pictures")
    p.add_argument(
        "--topk", type=int, default=None, help="gallery tracklets per query (default: EvalConfig.visrank_topk)"
    )
    p.add_argument(
        "--num-queries", type=int, default=None, help="pictures to draw (default: EvalConfig.visrank_queries)"
    )
    p.set_defaults(func=_cmd_visrank)

    p = sub.add_parser(
        "explain",
        help="what the skeleton guidance does per modality: joint attention and saliency, "
        "exponent mix, frame correction (explain.json + pictures)",
    )
    add_config(p, required=False)
    p.add_argument(
        "--checkpoint", required=True, help="best.pt / last.pt of a run (its config is used unless --config)"
    )
    p.add_argument("--split", default="test", choices=["test", "train"], help="test = query + gallery (default)")
    p.add_argument("--out", default=None, help="output folder (default: explain/ beside the checkpoint)")
    p.add_argument(
        "--max-tracklets",
        type=int,
        default=None,
        metavar="N",
        help="tracklets per modality, spread over the split (default: star.explain.DEFAULT_MAX_TRACKLETS; 0 = all)",
    )
    p.add_argument(
        "--saliency-tracklets",
        type=int,
        default=None,
        metavar="N",
        help="of those, tracklets whose keypoint saliency (an exact Jacobian, slow) is measured "
        "(default: star.explain.DEFAULT_SALIENCY_TRACKLETS; 0 = all)",
    )
    add_force(p, "explain.json / picture")
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("demo", help="generate the synthetic dataset, train STAR on the CPU, evaluate, draw rank lists")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo; a rerun resumes/reports)")
    p.add_argument(
        "--data",
        default=None,
        help="synthetic dataset folder (default $STAR_CACHE_DIR/synthetic or ~/.cache/star-reid/synthetic; "
        "generated when missing)",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. seed=1 optim.epochs=4")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("export", help="write a checkpoint's eval network as ONNX (standard ops, onnxruntime-checked)")
    p.add_argument("--checkpoint", required=True, help="best.pt / last.pt of a run")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--batch", default="dynamic", help="'dynamic' (default: a dynamic batch axis) or a fixed batch size")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: star.export.DEFAULT_OPSET)")
    add_force(p, "ONNX model")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("table", help="aggregate runs: one row per configuration, mean ± std over seeds")
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (each with metrics.json and config.yaml)"
    )
    p.add_argument("--format", default="markdown", help="markdown (default), csv or latex")
    p.add_argument(
        "--group-by",
        action="append",
        default=[],
        metavar="KEY",
        help="rows by this config key (repeatable, e.g. model.sequence.enabled) instead of by whole config",
    )
    p.set_defaults(func=_cmd_table)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    log_to_stdout()  # the library's messages: plain lines on stdout
    try:
        return int(args.func(args) or 0)
    except StarError as e:
        if os.environ.get("STAR_DEBUG") == "1":
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return _exit_code(e)
    except OSError as e:
        if not is_environment_write_error(e):
            raise  # a bug: shown with its traceback
        # the machine refused a file operation outside star.fileio's writers (a folder, OpenCV)
        if os.environ.get("STAR_DEBUG") == "1":
            traceback.print_exc()
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{write_failure_reason(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # every command writes atomically and resumes (train: last.pt; pose: its shards)
        print("\ninterrupted, rerun the same command to resume", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
