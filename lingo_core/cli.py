"""Command line: ``python -m lingo_core {train,evaluate,list-models,list-benchmarks}``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence


def _print_table(rows: list[dict], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train import resume, train, train_queued

    if args.resume:
        path = resume(args.resume)
    elif args.run_dir:
        path = train_queued(args.run_dir)
    else:
        if not args.config:
            raise SystemExit("train needs a CONFIG.yaml (or --resume RUN_DIR, or --run-dir RUN_DIR)")
        cfg = load_config(args.config, args.set)
        path = train(cfg)
    from .runs import load_run

    state = load_run(path).state
    if state != "done":
        print(f"run ended with state '{state}'", file=sys.stderr)
    report = load_run(path).report()
    if report:
        test = report["test"]
        print(
            f"test mcc={test.get('mcc'):.4f} auroc={test.get('auroc') or float('nan'):.4f} "
            f"(step {report['selected_step']} selected on dev; {report['parameters']['percent']:.3f}% trainable)",
            file=sys.stderr,
        )
    print(path)
    return 0 if state == "done" else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .loading import evaluate_run

    results = evaluate_run(args.run_dir, tuple(args.splits))
    print(json.dumps(results, indent=2))
    return 0


def cmd_list_models(args: argparse.Namespace) -> int:  # noqa: ARG001
    from .models import list_models

    rows = [{**r, "available": "yes" if r["available"] else "no"} for r in list_models()]
    _print_table(rows, ["name", "available", "install", "description"])
    return 0


def cmd_list_benchmarks(args: argparse.Namespace) -> int:
    from .data import list_benchmarks

    rows = list_benchmarks(args.root)
    rows = [{**r, "available": "yes" if r["available"] else "no"} for r in rows]
    _print_table(rows, ["name", "available", "description"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lingo_core", description="LINGO: language models for genome understanding")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model; prints the run directory last")
    p.add_argument("config", nargs="?", help="config YAML (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. --set train.max_steps=20")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed/failed/cancelled run from its checkpoint")
    p.add_argument("--run-dir", metavar="RUN_DIR", help="train a queued run directory created ahead (by the app's launcher)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="re-evaluate a run's model on its dev and test splits")
    p.add_argument("run_dir")
    p.add_argument("--splits", nargs="+", default=["dev", "test"], choices=["train", "dev", "test"])
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("list-models", help="registry models and whether they are available offline")
    p.set_defaults(func=cmd_list_models)

    p = sub.add_parser("list-benchmarks", help="named benchmarks and whether their data is present")
    p.add_argument("--root", help="data root (default: $LINGO_DATA_DIR or ../shared/data)")
    p.set_defaults(func=cmd_list_benchmarks)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .config import ConfigError
    from .data import DataError
    from .encoding import EncodingError
    from .models import ModelError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError, EncodingError, ModelError, FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
