"""Command line: ``python -m lingo_core {train,evaluate,list-models,list-methods,list-benchmarks,predict,attribute,study}``."""

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
    from accelerate import PartialState

    from .runs import load_run

    if not PartialState().is_main_process:
        return 0  # under accelerate/torchrun only the main process reports
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
    from .inference import evaluate_run

    results = evaluate_run(args.run_dir, tuple(args.splits))
    print(json.dumps(results, indent=2))
    return 0


def cmd_list_models(args: argparse.Namespace) -> int:  # noqa: ARG001
    from .models import list_models

    rows = [{**r, "available": "yes" if r["available"] else "no"} for r in list_models()]
    _print_table(rows, ["name", "available", "install", "description"])
    return 0


def cmd_list_methods(args: argparse.Namespace) -> int:  # noqa: ARG001
    from .adapters import get_method, method_names, settings_fields

    rows = []
    for name in method_names():
        spec = get_method(name)
        keys = [f"{section}.{f.name}" for section, f in settings_fields(name)]
        rows.append({"method": name, "rank budget": "yes" if spec.rank_budget else "no", "summary": spec.summary, "settings (adapter.*)": ", ".join(keys) or "-"})
    _print_table(rows, ["method", "rank budget", "summary", "settings (adapter.*)"])
    return 0


def cmd_list_benchmarks(args: argparse.Namespace) -> int:
    from .data import list_benchmarks

    rows = list_benchmarks(args.root)
    rows = [{**r, "available": "yes" if r["available"] else "no"} for r in rows]
    _print_table(rows, ["name", "available", "description"])
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import run_cli

    return run_cli(args)


def cmd_attribute(args: argparse.Namespace) -> int:
    from .attribution import run_cli

    return run_cli(args)


def cmd_study(args: argparse.Namespace) -> int:
    from .study import run_cli

    return run_cli(args)


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
    p = sub.add_parser("list-methods", help="adapter methods in the registry and their settings")
    p.set_defaults(func=cmd_list_methods)

    p = sub.add_parser("list-benchmarks", help="named benchmarks and whether their data is present")
    p.add_argument("--root", help="data root (default: $LINGO_DATA_DIR or ../shared/data)")
    p.set_defaults(func=cmd_list_benchmarks)

    p = sub.add_parser("predict", help="score sequences with a trained run (CSV to stdout, or --out F.csv/F.json)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("sequences", nargs="*", metavar="SEQ", help="raw sequences (or use --fasta / --csv)")
    p.add_argument("--fasta", metavar="F", help="FASTA file (multi-record, wrapped lines, .gz allowed)")
    p.add_argument("--csv", metavar="F", help="CSV/TSV file with a sequence column (and optionally an id column)")
    p.add_argument("--sequence-column", default="sequence")
    p.add_argument("--id-column", help="id column of --csv (default: 'id' if present, else file:line)")
    p.add_argument("--out", metavar="F", help="write .csv or .json instead of CSV to stdout")
    p.add_argument("--aggregate", choices=["mean", "max"], default="mean", help="how window probabilities combine")
    p.add_argument("--window", type=int, metavar="NT", help="sliding window size in nt (default: what fits the model)")
    p.add_argument("--stride", type=int, metavar="NT", help="sliding window stride in nt (default: half a window)")
    p.add_argument("--reverse-complement", "--rc", action="store_true", help="average with the reverse complement")
    p.add_argument("--strict", action="store_true", help="stop at the first invalid record instead of reporting it")
    p.add_argument("--threshold", type=float, default=0.5, help="multi-label: probability for a label to be predicted")
    p.add_argument("--batch-size", type=int, help="sequences per forward pass (default: chosen for the device)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's model.device)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("attribute", help="integrated gradients / in-silico mutagenesis per nucleotide (.npz, .csv, .html)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("sequences", nargs="*", metavar="SEQ", help="raw sequence(s) (or use --fasta)")
    p.add_argument("--fasta", metavar="F", help="FASTA file; every record is attributed")
    p.add_argument("--method", choices=["ig", "ism", "both"], default="both")
    p.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    p.add_argument("--out", metavar="F", help="per-nucleotide arrays: F.npz (ig, ism, ism_matrix, onehot) or F.csv")
    p.add_argument("--csv", metavar="F", help="also write the per-nucleotide table as CSV")
    p.add_argument("--html", metavar="F", help="write the plotly figures to an HTML file")
    p.add_argument("--baseline", choices=["pad", "N"], default="pad", help="IG baseline for sequence tokens")
    p.add_argument("--keep-prompt", action="store_true", help="IG: keep the prompt in the baseline (it then gets 0 by construction)")
    p.add_argument("--n-steps", type=int, default=50, help="IG integration steps")
    p.add_argument("--internal-batch-size", type=int, help="IG: interpolation steps per forward pass (memory bound)")
    p.add_argument("--batch-size", type=int, help="ISM: mutants per forward pass")
    p.add_argument("--strict", action="store_true", help="stop at the first invalid record")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's model.device)")
    p.set_defaults(func=cmd_attribute)

    p = sub.add_parser("study", help="run a grid of tasks x methods x seeds from a study YAML (resumable); table + report")
    p.add_argument("study", metavar="STUDY.yaml")
    p.add_argument("--scale", help="profile of the study file to apply (overrides its 'scale' key)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a study key, e.g. --set seeds=[0]")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their state; run nothing")
    p.add_argument("--report-only", action="store_true", help="rebuild results.csv and report.md from finished cells")
    p.add_argument("--shard", metavar="I/N", help="run only the cells i with i %% N == I")
    p.add_argument("--cell", metavar="ID", help="run one cell (used by parallel runs)")
    p.add_argument("--grid", action="append", default=[], metavar="NAME", help="run only the cells of this grid (repeatable)")
    p.add_argument("--retry", action="store_true", help="rerun cells that timed out")
    p.set_defaults(func=cmd_study)
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
