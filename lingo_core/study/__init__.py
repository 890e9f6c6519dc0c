"""Studies: a grid of tasks x methods x seeds (x models, encodings, prefixes, settings) from one file.

    python -m lingo_core study studies/cpu_study.yaml                  # run (resumable), table, report
    python -m lingo_core study studies/cpu_study.yaml --scale full     # the same study on the full data
    python -m lingo_core study studies/cpu_study.yaml --dry-run        # list the cells, run nothing
    python -m lingo_core study studies/cpu_study.yaml --report-only    # rebuild table + report from cells
    python -m lingo_core study studies/cpu_study.yaml --recover-records  # records of an older results.csv
    accelerate launch -m lingo_core study studies/cpu_study.yaml       # several GPUs: cells in parallel

The package, in the order data flows through it:

- :mod:`~lingo_core.study.spec`: the study file (its keys are documented there), profiles, sets and
  the declared ``comparisons``;
- :mod:`~lingo_core.study.cells`: grids expanded into cells, each identified by a hash of its config;
- :mod:`~lingo_core.study.runner` and :mod:`~lingo_core.study.baselines`: each unfinished cell trained
  (resumable, time-limited) or fitted (k-mer logistic regression); one record per cell
  (:mod:`~lingo_core.study.records`);
- :mod:`~lingo_core.study.table`: the tidy table ``results.csv`` from the records;
- :mod:`~lingo_core.study.stats` and :mod:`~lingo_core.study.report`: paired comparisons, choices on
  dev and ``report.md``, with figures from :mod:`lingo_core.plots.study`.

A finished cell (its record in ``output_dir/cells``, committed with the table) is skipped; a cell whose process was killed
resumes from its last checkpoint.
"""

from __future__ import annotations

import sys
from typing import Any

from .baselines import BASELINES, kmer_logistic_regression, kmer_matrix
from .cells import Cell, cell_identity, expand
from .records import keep_all_predictions, read_record, recover_records
from .report import REFERENCE_AUROC, write_report
from .runner import StudyInterrupted, run_study, run_train_cell
from ..config import deep_merge
from .spec import METRICS, Comparison, Study, StudyError, load_study
from .stats import POOLED, choose_on_dev, compare_methods
from .table import TABLE_COLUMNS, build_table, markdown_table, pivot_text, summarise, write_table


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise StudyError(f"--shard must look like INDEX/COUNT, e.g. 0/4, got {text!r}") from None
    if not 0 <= index < count:
        raise StudyError(f"--shard {text}: INDEX must be in [0, COUNT)")
    return index, count


def run_cli(args: Any) -> int:
    """``python -m lingo_core study STUDY.yaml [--scale S] [--set k=v] [--grid NAME ...] [--dry-run|--report-only|--cell ID]``.

    ``--grid`` runs only the cells of the named grids (the table and report still cover the whole study).
    """
    study_args = [args.study, *(["--scale", args.scale] if args.scale else []), *sum((["--set", s] for s in args.set), []),
                  *(["--retry"] if args.retry else [])]
    study = load_study(args.study, args.set, args.scale)
    cells = expand(study)
    if args.dry_run:
        for cell in cells:
            rec = read_record(study, cell)
            seeds = ",".join(str(s) for s in dict.fromkeys(seed for _, _, seed in cell.rows))
            print(f"{cell.cell_id}\t{','.join(cell.groups)}\t{cell.task}\t{cell.method}\tseed={seeds}\t{rec.get('status') if rec else 'pending'}")
        print(f"{len(cells)} cells; work dir {study.work_dir}; output {study.output_dir}", file=sys.stderr)
        return 0
    if args.recover_records:
        recovered = recover_records(study, cells)
        print(f"recovered {len(recovered)} cell record(s) from {study.output_dir / 'results.csv'}", file=sys.stderr)
        if not args.report_only:
            return 0
    if args.report_only:
        keep_all_predictions(study, cells)
        table = build_table(study, cells)
        path = write_table(study, table)
        write_report(study, table)
        print(path)
        return 0
    shard = _shard(args.shard) if args.shard else None
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.cell:
        run_study(study, only=[args.cell], retry=args.retry, log=log, write_outputs=False)
        return 0
    only = None
    if args.grid:
        known = {group for cell in cells for group in cell.groups}
        unknown = sorted(set(args.grid) - known)
        if unknown:
            raise StudyError(f"--grid {unknown}: no such grid in {args.study}; its grids are {sorted(known)}")
        only = [cell.cell_id for cell in cells if set(cell.groups) & set(args.grid)]
        study_args += sum((["--grid", g] for g in args.grid), [])
    path = run_study(study, shard=shard, only=only, retry=args.retry, log=log, study_args=study_args)
    print(path)
    table = build_table(study, cells)
    return 0 if (table["status"] == "done").all() and len(table) else 1


__all__ = [
    "BASELINES",
    "Cell",
    "Comparison",
    "METRICS",
    "POOLED",
    "REFERENCE_AUROC",
    "Study",
    "StudyError",
    "StudyInterrupted",
    "TABLE_COLUMNS",
    "build_table",
    "cell_identity",
    "choose_on_dev",
    "compare_methods",
    "deep_merge",
    "expand",
    "kmer_logistic_regression",
    "kmer_matrix",
    "load_study",
    "markdown_table",
    "pivot_text",
    "read_record",
    "recover_records",
    "run_cli",
    "run_study",
    "run_train_cell",
    "summarise",
    "write_report",
    "write_table",
]
