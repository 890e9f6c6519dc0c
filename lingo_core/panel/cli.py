"""``python -m lingo_core panel``: score sequences against every task of a panel (see :func:`lingo_core.cli.build_parser`).

    python -m lingo_core panel runs/A runs/B runs/C ACGT... TTGA...      # run folders first, then sequences
    python -m lingo_core panel --runs-dir runs --fasta new.fa --out table.csv
    python -m lingo_core panel --runs-dir runs --list                    # which runs can form a panel, and why not

With ``--runs-dir`` the panel is the largest group of compatible finished runs in the folder (or the
group of ``--model NAME``); the runs left out are listed on stderr with the reason. Explicit run
folders must all be able to join, or nothing is scored (exit code 2, every reason printed).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Iterator

from .. import runs
from ..config import ConfigError
from ..predict import run_scoring_cli
from ..sequence_input import InputRecord
from .compat import Grouping, PanelError, describe_grouping, group_compatible
from .engine import PanelScores, load_panel

RUN_ID = re.compile(r"^\d{8}-\d{6}-")  # how run folders are named


def split_items(items: list[str]) -> tuple[list[str], list[str]]:
    """Positional arguments as (run folders, sequences): the run folders come first.

    An argument that names no folder but looks like a path or a run id is a run folder that is not
    there (an error), not a sequence.
    """
    run_dirs: list[str] = []
    k = 0
    while k < len(items) and Path(items[k]).expanduser().is_dir():
        run_dirs.append(items[k])
        k += 1
    sequences = items[k:]
    for item in sequences:
        if Path(item).expanduser().is_dir():
            raise ConfigError(f"{item} is a folder given after a sequence; give every RUN_DIR before the sequences")
        if "/" in item or "\\" in item or RUN_ID.match(item):
            raise ConfigError(f"{item}: no such run directory; give the path of a finished run's folder")
    return run_dirs, sequences


def _grouping(args: Any) -> Grouping:
    folder = Path(args.runs_dir).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"--runs-dir {args.runs_dir}: no such folder; give the folder that holds your run directories")
    found = runs.list_runs(folder)
    if not found:
        raise ConfigError(f"--runs-dir {args.runs_dir}: no run directories in it")
    return group_compatible(found, args.device)


def print_grouping(grouping: Grouping) -> None:
    """Every run with its group (the backbone it shares) or the reason it cannot join any panel."""
    rows = describe_grouping(grouping)
    for number, group in enumerate(grouping.groups, start=1):
        print(f"panel {number}: {len(group.runs)} run(s) sharing {group.key.describe()}")
        for row in rows:
            if row["group"] == number:
                print(f"  {row['run']}  {row['method']}  {row['task']}")
    if grouping.refused:
        print(f"cannot join any panel: {len(grouping.refused)} run(s)")
        for refusal in grouping.refused:
            print(f"  {refusal}")


def panel_runs(args: Any) -> list[runs.Run]:
    """The runs to load: the run folders given, or the chosen group of ``--runs-dir`` (the rest listed on stderr)."""
    if not args.runs_dir:
        return [runs.load_run(Path(p).expanduser()) for p in args.run_dirs]
    grouping = _grouping(args)
    groups = grouping.groups
    if args.model:
        groups = [g for g in groups if args.model in (g.key.model_name, g.key.model)]
        if not groups:
            names = sorted({g.key.model_name for g in grouping.groups})
            raise ConfigError(f"--model {args.model}: no finished run of that base model in {args.runs_dir} (found: {', '.join(names) or 'none'})")
    if not groups:
        lines = "\n".join(f"  - {refusal}" for refusal in grouping.refused)
        raise PanelError(f"no run in {args.runs_dir} can join a panel:\n{lines}")
    chosen = groups[0]
    left_out = [run for run in runs.list_runs(Path(args.runs_dir).expanduser()) if run not in chosen.runs]
    print(f"panel of {len(chosen.runs)} run(s) sharing {chosen.key.describe()}", file=sys.stderr)
    for run in left_out:
        print(f"left out {run.id}: {grouping.why_not(run, chosen)}", file=sys.stderr)
    return chosen.runs


def run_cli(args: Any) -> int:
    """``python -m lingo_core panel``."""
    args.run_dirs, args.sequences = split_items(args.items)
    if args.runs_dir and args.run_dirs:
        raise ConfigError("give run folders (RUN_DIR...) or --runs-dir DIR, not both")
    if args.list:
        if not args.runs_dir:
            raise ConfigError("--list needs --runs-dir DIR: the folder whose runs to group")
        print_grouping(_grouping(args))
        return 0
    if not args.runs_dir and not args.run_dirs:
        raise ConfigError("give the run folders of the panel (RUN_DIR... before the sequences) or --runs-dir DIR")

    def start(records: Iterator[InputRecord], chunk_records: int) -> tuple[Iterator[PanelScores], str]:
        panel = load_panel(panel_runs(args), args.device)
        chunks = panel.score_stream(
            records, chunk_records=chunk_records, aggregate=args.aggregate, stride=args.stride, window=args.window,
            reverse_complement=args.reverse_complement, strict=args.strict, batch_size=args.batch_size, mode=args.mode,
        )
        return chunks, f"against {len(panel.tasks)} task(s) ({len(panel.columns)} column(s)), backbone loaded once in {panel.load_seconds:.1f} s"

    return run_scoring_cli(args, "panel", start)
