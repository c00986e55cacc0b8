"""``star visrank``, ``star explain`` and ``star table``: pictures and tables of trained runs."""

from __future__ import annotations

import argparse
import sys

from .arguments import add_checkpoint, add_checkpoint_or_features, add_config, add_force, run_config


def _cmd_visrank(args: argparse.Namespace) -> int:
    from pathlib import Path

    from star.config.schema import EvalConfig
    from star.engine.inference import extract_checkpoint_features, rank_lists_from_features
    from star.output_paths import check_output_dir
    from star.reports.feature_files import load_dataset_features
    from star.reports.rank_lists import check_rank_list_options

    cfg = run_config(args)
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

    cfg = run_config(args)
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


def _cmd_table(args: argparse.Namespace) -> int:
    from star.reports.run_table import run_table

    text, notes = run_table(args.run_dirs, args.format, args.group_by)
    print(text)
    for note in notes:  # on stderr, so a csv/latex table on stdout stays clean
        print(f"note: {note}", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
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
    add_checkpoint(p)
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
