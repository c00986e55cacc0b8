"""``star train``, ``star demo``, ``star eval``, ``star extract`` and ``star export``: a run and its checkpoints."""

from __future__ import annotations

import argparse

from .arguments import add_checkpoint, add_checkpoint_or_features, add_config, add_force, run_config


def _cmd_train(args: argparse.Namespace) -> int:
    from star.engine import train

    cfg = run_config(args)
    summary = train(cfg)
    if summary:
        print(f"done: mean mAP {summary['mAP']:.2%} after epoch {summary['epoch']}; outputs in {cfg.output_dir}")
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


def _cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from star.engine import evaluate_features
    from star.engine.inference import evaluate_checkpoint
    from star.reports.feature_files import load_dataset_features, require_sets
    from star.reports.metrics_file import METRICS_FILE, check_metrics_outputs, write_metrics

    cfg = run_config(args)
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

    cfg = run_config(args)
    features = extract_checkpoint_features(cfg, args.checkpoint, args.out, splits=tuple(args.splits), force=args.force)
    counts = ", ".join(f"{name} {len(f)} x {f.feats.shape[1]}" for name, f in features.items())
    print(f"wrote {args.out}: {counts}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from star.export import export_onnx

    report = export_onnx(args.checkpoint, args.out, batch=args.batch, opset=args.opset, force=args.force)
    print(report.summary())
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train STAR (resumes from <output_dir>/last.pt when present)")
    add_config(p, required=True)
    p.set_defaults(func=_cmd_train, checkpoint=None)

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

    p = sub.add_parser("eval", help="evaluate a checkpoint (or saved features) in both modes; prints the table")
    add_checkpoint_or_features(p)
    p.add_argument("--output-dir", default=None, help="write metrics.json here")
    add_force(p, "metrics.json / cmc.png")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("extract", help="write query/gallery embeddings with pids, cameras, modalities, paths (.npz)")
    add_config(p, required=False)
    add_checkpoint(p)
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--splits", nargs="+", default=["query", "gallery"], choices=["train", "query", "gallery"])
    add_force(p, "features .npz")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("export", help="write a checkpoint's eval network as ONNX (standard ops, onnxruntime-checked)")
    p.add_argument("--checkpoint", required=True, help="best.pt / last.pt of a run")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--batch", default="dynamic", help="'dynamic' (default: a dynamic batch axis) or a fixed batch size")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: star.export.DEFAULT_OPSET)")
    add_force(p, "ONNX model")
    p.set_defaults(func=_cmd_export)
