"""Command line: ``python -m lingo_core {train,evaluate,list-models,list-methods,list-benchmarks,predict,panel,attribute,study}``."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
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
        path = resume(args.resume, trust_remote_code=args.trust_remote_code)
    elif args.run_dir:
        path = train_queued(args.run_dir, trust_remote_code=args.trust_remote_code)
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

    results = evaluate_run(args.run_dir, tuple(args.splits), trust_remote_code=args.trust_remote_code)
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


def cmd_panel(args: argparse.Namespace) -> int:
    from .panel.cli import run_cli

    return run_cli(args)


def cmd_attribute(args: argparse.Namespace) -> int:
    from .attribution import run_cli

    return run_cli(args)


def cmd_study(args: argparse.Namespace) -> int:
    from .study import run_cli

    return run_cli(args)


def add_scoring_options(p: argparse.ArgumentParser) -> None:
    """The input, window and output options ``predict`` and ``panel`` share."""
    p.add_argument("--fasta", metavar="F", help="FASTA file (multi-record, wrapped lines, .gz allowed)")
    p.add_argument("--csv", metavar="F", help="CSV/TSV file with a sequence column (and optionally an id column)")
    p.add_argument("--sequence-column", default="sequence")
    p.add_argument("--id-column", help="id column of --csv (default: 'id' if present, else file:line)")
    p.add_argument("--out", metavar="F", help="write .csv or .json instead of CSV to stdout (it appears only once complete)")
    p.add_argument("--aggregate", choices=["mean", "max"], default="mean", help="how window probabilities combine")
    p.add_argument("--window", type=int, metavar="NT", help="sliding window size in nt (default: what fits the model)")
    p.add_argument("--stride", type=int, metavar="NT", help="sliding window stride in nt (default: half a window)")
    p.add_argument(
        "--reverse-complement", "--rc", action=argparse.BooleanOptionalAction, default=None,
        help="average each sequence's probabilities with its reverse complement's (default: as the run scored dev and "
        "test, i.e. on with data.eval_strands: both)",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first invalid record instead of reporting it")
    p.add_argument("--batch-size", type=int, help="sequences per forward pass (default: chosen for the device)")
    p.add_argument("--chunk-size", type=int, default=512, metavar="N", help="records read, scored and written at a time (bounds memory)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's model.device)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lingo_core", description="LINGO: language models for genome understanding")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model; prints the run directory last")
    p.add_argument("config", nargs="?", help="config YAML (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. --set train.max_steps=20")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed/failed/cancelled run from its checkpoint")
    p.add_argument("--run-dir", metavar="RUN_DIR", help="train a queued run directory created ahead (by the app's launcher)")
    p.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP + " (with --resume / --run-dir)")
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
    add_scoring_options(p)
    p.add_argument("--threshold", type=float, default=0.5, help="multi-label: probability for a label to be predicted")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "panel", help="score sequences against every task of a panel of runs sharing one backbone (one column per task)"
    )
    p.add_argument("items", nargs="*", metavar="RUN_DIR... SEQ...", help="run folders, then raw sequences (or --fasta / --csv)")
    p.add_argument("--runs-dir", metavar="DIR", help="the largest group of compatible finished runs in DIR (instead of RUN_DIRs)")
    p.add_argument("--model", metavar="NAME", help="with --runs-dir: the group of this base model (e.g. minilm-l6)")
    p.add_argument("--list", action="store_true", help="with --runs-dir: list which runs can form a panel and why others cannot; score nothing")
    p.add_argument("--mode", choices=["auto", "switch", "mixed"], default="auto",
                   help="switch the active adapter per task, or mix tasks in one batch (auto: mixed on a GPU, switch on CPU)")
    add_scoring_options(p)
    p.set_defaults(func=cmd_panel)

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
    p.add_argument("--n-steps", type=positive_int, default=50, help="IG integration steps")
    p.add_argument("--internal-batch-size", type=positive_int, help="IG: interpolation steps per forward pass (memory bound)")
    p.add_argument("--batch-size", type=positive_int, help="ISM: mutants per forward pass")
    p.add_argument("--strict", action="store_true", help="stop at the first invalid record")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's model.device)")
    p.set_defaults(func=cmd_attribute)

    p = sub.add_parser("study", help="run a grid of tasks x methods x seeds from a study YAML (resumable); table + report")
    p.add_argument("study", metavar="STUDY.yaml")
    p.add_argument("--scale", help="profile of the study file to apply (overrides its 'scale' key)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a study key, e.g. --set seeds=[0]")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their state; run nothing")
    p.add_argument("--report-only", action="store_true", help="rebuild results.csv and report.md from finished cells")
    p.add_argument("--recover-records", action="store_true",
                   help="rebuild missing cell records from output_dir/results.csv (results written before records were kept there)")
    p.add_argument("--shard", metavar="I/N", help="run only the cells i with i %% N == I")
    p.add_argument("--cell", metavar="ID", help="run one cell (used by parallel runs)")
    p.add_argument("--grid", action="append", default=[], metavar="NAME", help="run only the cells of this grid (repeatable)")
    p.add_argument("--retry", action="store_true", help="rerun cells that timed out")
    p.set_defaults(func=cmd_study)

    for name in ("evaluate", "predict", "panel", "attribute"):  # commands that load a run directory's model
        sub.choices[name].add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    return parser


TRUST_HELP = (
    "allow the model's own Python code when the run's config.yaml asks for it (model.trust_remote_code); "
    "a run directory never switches it on by itself"
)
# files a command writes, by option: checked before any work so that a typo fails at once
OUTPUT_OPTIONS = {"predict": ("out",), "panel": ("out",), "attribute": ("out", "csv", "html")}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def check_output_paths(args: argparse.Namespace) -> None:
    """Refuse an output file that cannot be written (missing folder, a folder, read-only) before any work."""
    from .config import ConfigError

    for option in OUTPUT_OPTIONS.get(args.command, ()):
        value = getattr(args, option, None)
        if not value:
            continue
        path = Path(value).expanduser()
        flag = "--" + option.replace("_", "-")
        folder = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise ConfigError(f"{flag} {value}: is a folder; give a file name inside it")
        if not folder.is_dir():
            raise ConfigError(f"{flag} {value}: the folder {folder} does not exist; create it first or write elsewhere")
        if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise ConfigError(f"{flag} {value}: not writable; choose another path")


def _project_errors() -> tuple[type, ...]:
    """The error types whose messages are written for users: printed as they are."""
    from .attribution_results import AttributionError
    from .config import ConfigError
    from .data import DataError
    from .encoding import EncodingError
    from .inference import RunLoadError
    from .models import ModelError
    from .panel.compat import PanelError
    from .runs import RunFileError

    return (ConfigError, DataError, EncodingError, ModelError, RunLoadError, RunFileError, AttributionError, PanelError)


def _write_error_log(exc: BaseException, argv: Sequence[str]) -> Optional[Path]:
    """The full traceback in a log file (``$LINGO_LOG_DIR``, else the temp folder); None if it cannot be written."""
    folder = Path(os.environ.get("LINGO_LOG_DIR") or Path(tempfile.gettempdir()) / f"lingo-{os.getuid()}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"error-{stamp}-{os.getpid()}.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        text = "python -m lingo_core " + " ".join(argv) + "\n\n"
        text += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        path.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return path


def _raised_for_the_user(exc: BaseException) -> bool:
    """A ValueError/RuntimeError raised by this package's own code (not deep inside a library): a message for users."""
    if not isinstance(exc, (ValueError, RuntimeError)):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    package = str(Path(__file__).resolve().parent)
    return bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(package)


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; every error ends as a message on stderr and a non-zero exit code.

    Errors from bad input (the project's own types, missing files, refused values) print their
    message and exit 2. Anything else is unexpected: one line naming it, the full traceback in a log
    file whose path is printed, exit 1 (``LINGO_DEBUG=1`` re-raises instead).
    """
    from .inference import remote_code_allowed

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        check_output_paths(args)
        with remote_code_allowed(bool(getattr(args, "trust_remote_code", False))):
            return args.func(args)
    except _project_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing file, a taken name, a full disk: the message says which
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (| head): nothing left to say
        sys.stderr.close()
        return 1
    except Exception as exc:  # noqa: BLE001 - the last resort: one line and a pointer to the traceback
        if os.environ.get("LINGO_DEBUG") == "1":
            raise
        message = str(exc).strip()
        first = _one_line(message.splitlines()[0] if message else "")
        if _raised_for_the_user(exc) and first:  # e.g. "... is still running; it cannot be resumed twice"
            print(f"error: {first}", file=sys.stderr)
            return 2
        log = _write_error_log(exc, argv)
        where = f"; full traceback in {log}" if log else ""
        print(f"error: unexpected {type(exc).__name__}: {first or 'no message'}{where}", file=sys.stderr)
        return 1
