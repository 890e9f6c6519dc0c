"""Running a study: each unfinished cell in turn (or this process's share under ``accelerate launch``).

A trained cell is a run directory ``work_dir/runs/<cell_id>``: a cell whose process was killed
resumes from its last checkpoint, a finished one is only summarised. A cell that runs past the
study's ``budget.time_limit_s`` is cancelled and recorded as ``timeout``; a cell cancelled from
outside (SIGTERM, Ctrl-C, a CANCEL request) stops the study without a record, so the next run of
the same command resumes it.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

from .. import runs
from ..config import config_from_dict, config_values, save_config
from ..learning import dev_evaluations
from .baselines import run_baseline
from .cells import Cell, expand
from .records import clean_metrics, keep_all_predictions, keep_predictions, read_record, write_record
from .spec import Study, StudyError

Log = Callable[[str], None]


class StudyInterrupted(RuntimeError):
    """The study was asked to stop (SIGTERM, Ctrl-C or a CANCEL request): the running cell is left resumable."""


# -- one trained cell ------------------------------------------------------------------------------
def run_train_cell(cell: Cell, study: Study, time_limit_s: Optional[float] = None) -> dict[str, Any]:
    """Train one cell into ``work_dir/runs/<cell_id>`` (resuming a killed run) and return its record."""
    from ..train import Trainer, prepare

    runs_root = study.work_dir / "runs"
    cfg = config_from_dict({**cell.config, "output_dir": str(runs_root), "run_name": cell.cell_id})
    run_dir = runs_root / cell.cell_id
    started = time.time()
    trainer = None
    if run_dir.exists():
        run = _existing_run(run_dir)
        same = run is not None and run.config == config_values(cfg)
        if same and run.state == "done":
            return summarise_run(cell, run, None)
        if same and run.resumable:  # killed, failed or cancelled from outside (timeouts have a record)
            runs.clear_cancel(run_dir)
            trainer = Trainer(cfg, runs.RunWriter(run_dir), resume=True)
        else:
            shutil.rmtree(run_dir)
    if trainer is None:
        prepared = prepare(cfg)
        writer = runs.RunWriter.create(runs_root, save_config(cfg), cfg.adapter.method, cfg.data.task, cell.cell_id)
        trainer = Trainer(cfg, writer, prepared=prepared)
    timed_out = threading.Event()

    def time_up() -> None:
        timed_out.set()
        runs.request_cancel(run_dir)

    timer = None
    if time_limit_s:
        timer = threading.Timer(max(0.0, time_limit_s - (time.time() - started)), time_up)
        timer.daemon = True
        timer.start()
    error = None
    try:
        trainer.run()
    except Exception as exc:  # noqa: BLE001 - a failed cell is recorded, the study goes on
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if timer is not None:
            timer.cancel()
    run = runs.load_run(run_dir)
    if run.state == "cancelled" and not timed_out.is_set():
        # stopped from outside (SIGTERM, a CANCEL request): no record, so the next study run resumes it
        raise StudyInterrupted(f"{cell.cell_id} was cancelled from outside; run the study again to resume it")
    return summarise_run(cell, run, time.time() - started, error)


def _existing_run(run_dir: Path) -> Optional[runs.Run]:
    try:
        return runs.load_run(run_dir)
    except FileNotFoundError:  # a directory left before its config was written
        return None


def summarise_run(cell: Cell, run: runs.Run, wall: Optional[float], error: Optional[str] = None) -> dict[str, Any]:
    """The record of a trained cell from its run directory: status, metrics, parameters, ranks, data."""
    state, report = run.state, run.report() or {}
    record = {**cell.base_record(), "run_dir": str(run.path), "finished": runs.now()}
    if state == "done" and report:
        record["status"] = "done"
    else:
        record["status"] = "timeout" if state == "cancelled" else "failed"
        record["error"] = error or run.status.get("error") or f"run ended in state {state}"
        record["wall_time_s"] = round(wall, 2) if wall is not None else None
        return record
    data_report = run.data_report() or {}
    metrics = run.metrics()
    final_ranks = report.get("final_ranks")
    counts = data_report.get("counts", {})
    record.update(
        {
            "test": clean_metrics(report.get("test")),
            "dev": clean_metrics(report.get("dev")),
            "parameters": report.get("parameters"),
            "exported_params": exported_parameters(run),
            "final_ranks": final_ranks,
            "final_rank_total": int(sum(final_ranks.values())) if final_ranks else None,
            "wall_time_s": round(wall, 2) if wall is not None else report.get("wall_time_s"),
            "train_time_s": report.get("wall_time_s"),
            "steps": report.get("steps_done"),
            "selected_step": report.get("selected_step"),
            "n": {s: counts.get(s, {}).get("total") for s in ("train", "dev", "test")},
            "duplicates": data_report.get("duplicates", {}),
            "subsampling": data_report.get("subsampling", {}).get("description"),
            "detail": report.get("selection", ""),
            "learning": [f"{f.kind} (best dev MCC {f.best_mcc} at step {f.best_step}"
                         + (f", chance from step {f.collapse_step})" if f.collapse_step else ")")
                         for f in run.learning_findings(metrics)],
            # the dev curve outlives the run directory (not committed): [step, dev MCC] per evaluation
            "dev_curve": [[step, round(mcc, 4)] for step, mcc in dev_evaluations(metrics)],
            "device": report.get("device"),
        }
    )
    return record


# peft may copy the frozen, unchanged word-embedding matrix into a peft export; it is not a trained
# parameter (new nucleotide rows are saved as trainable tokens)


def exported_parameters(run: runs.Run) -> Optional[int]:
    """Parameters in the run's exported adapter: ``report.json``'s ``parameters.exported``, else counted."""
    recorded = ((run.report() or {}).get("parameters") or {}).get("exported")
    return int(recorded) if recorded is not None else run.exported_parameters()


# -- several processes -------------------------------------------------------------------------------
def distributed_shard() -> Optional[tuple[int, int, int]]:
    """(rank, world, local_rank) when started by ``accelerate launch``/``torchrun`` with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    local = int(os.environ.get("LOCAL_RANK", rank))
    return rank, world, local


_DIST_VARS = (
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
    "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT",
    "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_ERROR_FILE",
)


def _cell_subprocess(study_args: list[str], cell: Cell, local_rank: int) -> None:
    """Run one cell in a single-process child pinned to this process's GPU (no DDP across cells)."""
    import torch

    env = {k: v for k, v in os.environ.items() if k not in _DIST_VARS and not k.startswith("ACCELERATE_")}
    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        env["CUDA_VISIBLE_DEVICES"] = devices[local_rank % len(devices)]
    subprocess.run([sys.executable, "-m", "lingo_core", "study", *study_args, "--cell", cell.cell_id], env=env, check=False)


# -- the study -----------------------------------------------------------------------------------------
def _select(cells: list[Cell], shard: Optional[tuple[int, int]], only: Optional[Sequence[str]]) -> list[Cell]:
    if only:
        wanted = set(only)
        missing = wanted - {c.cell_id for c in cells}
        if missing:
            raise StudyError(f"unknown cell id(s) {sorted(missing)}; see --dry-run for the list")
        cells = [c for c in cells if c.cell_id in wanted]
    return [c for i, c in enumerate(cells) if shard is None or i % shard[1] == shard[0]]


def _run_cell(study: Study, cell: Cell, label: str, log: Log) -> dict[str, Any]:
    """Run one cell in this process and write its record (a failure is recorded, an interrupt raised)."""
    try:
        if cell.kind == "train":
            record = run_train_cell(cell, study, study.time_limit_s)
        else:
            record = run_baseline(cell)
    except (StudyInterrupted, KeyboardInterrupt):
        log(f"{label}: interrupted; run the same command again to resume")
        raise
    except Exception as exc:  # noqa: BLE001
        record = {**cell.base_record(), "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(), "finished": runs.now()}
    write_record(study, cell, record)
    if cell.kind == "train":
        keep_predictions(study, cell, record)
    gc.collect()
    return record


def run_study(
    study: Study,
    shard: Optional[tuple[int, int]] = None,
    only: Optional[Sequence[str]] = None,
    retry: bool = False,
    log: Log = print,
    study_args: Optional[list[str]] = None,
    write_outputs: bool = True,
) -> Optional[Path]:
    """Run every unfinished cell (this shard's share), then write the table and the report.

    Cells run in turn in this process. Under ``accelerate launch`` with several processes, cell i
    goes to process ``i % world`` and runs in a single-process child pinned to that process's GPU.
    A cell recorded as ``timeout`` is rerun only with ``retry``.
    """
    from .report import write_report
    from .table import build_table, write_table

    distributed = distributed_shard()
    local_rank = 0
    if shard is None and distributed is not None:
        shard, local_rank = distributed[:2], distributed[2]
    mine = _select(expand(study), shard, only)
    study.work_dir.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_text(study.work_dir / "study.yaml", yaml.safe_dump(study.spec, sort_keys=False))
    t0 = time.time()
    for n, cell in enumerate(mine, 1):
        previous = read_record(study, cell)
        label = f"[{n}/{len(mine)}] {cell.task} {cell.method} seed={cell.seed} ({cell.cell_id})"
        if previous and (previous.get("status") == "done" or (previous.get("status") == "timeout" and not retry)):
            log(f"{label}: {previous['status']} already, skipped")
            continue
        log(f"{label}: running ({runs.now()}, study elapsed {time.time() - t0:.0f} s)")
        if distributed is not None and study_args is not None and cell.kind == "train":
            _cell_subprocess(study_args, cell, local_rank)
            record = read_record(study, cell) or {**cell.base_record(), "status": "failed", "error": "child process wrote no record"}
        else:
            record = _run_cell(study, cell, label, log)
        test = record.get("test") or {}
        summary = (f"test mcc={test['mcc']:.4f} auroc={test.get('auroc') or float('nan'):.4f}"
                   if test.get("mcc") is not None else record.get("error", ""))
        log(f"{label}: {record['status']} {summary} ({record.get('wall_time_s')} s)")
    if not write_outputs:
        return None
    keep_all_predictions(study, expand(study))
    table = build_table(study)
    path = write_table(study, table)
    write_report(study, table)
    log(f"table: {path}\nreport: {study.output_dir / 'report.md'}")
    return path
