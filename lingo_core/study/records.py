"""Cell records: one JSON file per ended cell under ``output_dir/cells``.

The runner writes a record when a cell ends (``done``, ``failed`` or ``timeout``); the table and the
report read only records, so ``--report-only`` rebuilds both without training anything. Records sit
beside ``results.csv`` (and are committed with it), not with the run directories in ``work_dir``: a
fresh clone of a study's results knows which cells have finished. Records of the older layout
(``work_dir/cells``) are still read, and :func:`recover_records` rebuilds missing ones from a
``results.csv`` written before records were kept with it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from .. import runs
from .cells import Cell
from .spec import METRICS, Study


def record_path(study: Study, cell: Cell) -> Path:
    return study.output_dir / "cells" / f"{cell.cell_id}.json"


def legacy_record_path(study: Study, cell: Cell) -> Path:
    """Where records were kept before they moved beside ``results.csv``."""
    return study.work_dir / "cells" / f"{cell.cell_id}.json"


def read_record(study: Study, cell: Cell) -> Optional[dict[str, Any]]:
    """The cell's record, or None when the cell has not ended yet (or its record is torn)."""
    for path in (record_path(study, cell), legacy_record_path(study, cell)):
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return None


def write_record(study: Study, cell: Cell, record: dict[str, Any]) -> None:
    runs.atomic_write_json(record_path(study, cell), record)


def predictions_path(study: Study, cell: Cell) -> Path:
    return study.output_dir / "cells" / f"{cell.cell_id}.test.csv"


def keep_predictions(study: Study, cell: Cell, record: dict[str, Any]) -> bool:
    """Copy a finished trained cell's test predictions from its run directory to
    :func:`predictions_path`, beside its record; True when it copied them.

    The report's prediction statistics (disagreement, test-set bootstrap) then survive the run
    directories, which are not committed. Nothing is copied when the copy exists already, or the
    run directory is gone or kept no predictions.
    """
    target = predictions_path(study, cell)
    if record.get("status") != "done" or not record.get("run_dir") or target.exists():
        return False
    source = Path(record["run_dir"]) / runs.PREDICTIONS.format(split="test")
    try:
        text = source.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    runs.atomic_write_text(target, text)
    return True


def keep_all_predictions(study: Study, cells: list[Cell]) -> int:
    """:func:`keep_predictions` for every recorded trained cell (cells that ended before predictions were kept)."""
    kept = 0
    for cell in cells:
        record = read_record(study, cell)
        if record is not None and cell.kind == "train":
            kept += keep_predictions(study, cell, record)
    return kept


def clean_metrics(metrics: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The study's metrics (:data:`~lingo_core.study.spec.METRICS`) of a metrics dict."""
    return {k: metrics.get(k) for k in METRICS} if metrics else {}


def cell_records(study: Study, cells: list[Cell]) -> list[dict[str, Any]]:
    """Every existing record of ``cells``, in their order, with the cell's ``groups`` added."""
    out = []
    for cell in cells:
        record = read_record(study, cell)
        if record is not None:
            out.append({**record, "groups": cell.groups})
    return out


def _value(row: pd.Series, column: str) -> Any:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def record_from_row(cell: Cell, row: pd.Series) -> dict[str, Any]:
    """A cell's record rebuilt from its ``results.csv`` row (what the table kept of it).

    Per-module final ranks and learning findings are not in the table (the findings are part of
    ``detail``), so a rebuilt record has ``final_rank_total`` but no ``final_ranks``.
    """
    as_int = lambda column: None if _value(row, column) is None else int(_value(row, column))  # noqa: E731
    return {
        **cell.base_record(),
        "status": _value(row, "status"),
        "test": {m: _value(row, f"test_{m}") for m in METRICS},
        "dev": {m: _value(row, f"dev_{m}") for m in METRICS},
        "parameters": {"trainable": as_int("trainable_params"), "total": as_int("total_params"),
                       "percent": _value(row, "trainable_percent")},
        "exported_params": as_int("exported_params"),
        "final_rank_total": as_int("final_rank_total"),
        "wall_time_s": _value(row, "wall_time_s"),
        "train_time_s": _value(row, "train_time_s"),
        "steps": as_int("steps"),
        "selected_step": as_int("selected_step"),
        "n": {s: as_int(f"n_{s}") for s in ("train", "dev", "test")},
        "duplicates": {"train_rows_removed": as_int("train_dup_removed"), "test_train": as_int("test_train_dup")},
        "detail": _value(row, "detail") or "",
        "run_dir": _value(row, "run_dir") or "",
        "recovered_from": "results.csv",
    }


def recover_records(study: Study, cells: list[Cell]) -> list[str]:
    """Write the record of every cell that has none but has rows in ``output_dir/results.csv``.

    For results written before records were kept beside the table: the table row of a cell id is
    what that cell's record held (the id hashes the cell's whole config). Returns the recovered ids.
    """
    table_path = study.output_dir / "results.csv"
    if not table_path.exists():
        return []
    table = pd.read_csv(table_path)
    first_rows = table.drop_duplicates("cell_id").set_index("cell_id")
    recovered = []
    for cell in cells:
        if read_record(study, cell) is None and cell.cell_id in first_rows.index:
            write_record(study, cell, record_from_row(cell, first_rows.loc[cell.cell_id]))
            recovered.append(cell.cell_id)
    return recovered
