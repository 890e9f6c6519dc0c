"""The tidy table (one row per grid x cell x seed), its summaries and markdown rendering."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from .. import runs
from .cells import Cell, expand
from .records import predictions_path, read_record
from .spec import METRICS, Study

TABLE_COLUMNS = [
    "group", "task", "method", "seed", "model", "encoding", "prefix", "setting", "status",
    *[f"test_{m}" for m in METRICS], *[f"dev_{m}" for m in METRICS],
    "trainable_params", "total_params", "trainable_percent", "exported_params", "final_rank_total",
    "wall_time_s", "train_time_s", "steps", "selected_step", "n_train", "n_dev", "n_test",
    "train_dup_removed", "test_train_dup", "detail", "cell_id", "run_dir", "test_predictions",
]


def _row(cell: Cell, record: dict[str, Any], group: str, setting: str, seed: int, predictions: str = "") -> dict[str, Any]:
    test, dev = record.get("test") or {}, record.get("dev") or {}
    params = record.get("parameters") or {}
    n = record.get("n") or {}
    dups = record.get("duplicates") or {}
    return {
        "group": group,
        "task": cell.task,
        "method": cell.method,
        "seed": seed,
        "model": cell.model,
        "encoding": cell.encoding,
        "prefix": cell.prefix,
        "setting": setting,
        "status": record.get("status"),
        **{f"test_{m}": test.get(m) for m in METRICS},
        **{f"dev_{m}": dev.get(m) for m in METRICS},
        "trainable_params": params.get("trainable"),
        "total_params": params.get("total"),
        "trainable_percent": params.get("percent"),
        "exported_params": record.get("exported_params"),
        "final_rank_total": record.get("final_rank_total"),
        "wall_time_s": record.get("wall_time_s"),
        "train_time_s": record.get("train_time_s"),
        "steps": record.get("steps"),
        "selected_step": record.get("selected_step"),
        "n_train": n.get("train"),
        "n_dev": n.get("dev"),
        "n_test": n.get("test"),
        "train_dup_removed": dups.get("train_rows_removed"),
        "test_train_dup": dups.get("test_train"),
        "detail": _detail(record),
        "cell_id": cell.cell_id,
        "run_dir": record.get("run_dir", ""),
        "test_predictions": predictions,
    }


def _detail(record: dict[str, Any]) -> str:
    """How the cell was selected (or why it failed), and any learning failure (:mod:`lingo_core.learning`)."""
    findings = record.get("learning") if isinstance(record.get("learning"), list) else []
    parts = [str(record.get("detail") or record.get("error") or ""), *(f for f in findings if isinstance(f, str))]
    return "; ".join(p for p in parts if p)


def build_table(study: Study, cells: Optional[list[Cell]] = None) -> pd.DataFrame:
    """One row per grid x cell with a record (done, failed or timeout), in the study's order."""
    rows = []
    for cell in cells if cells is not None else expand(study):
        record = read_record(study, cell)
        if record is not None:
            kept = predictions_path(study, cell)  # where the study keeps them, never a path a record names
            predictions = str(kept) if kept.is_file() else ""
            rows.extend(_row(cell, record, group, setting, seed, predictions) for group, setting, seed in cell.rows)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def write_table(study: Study, table: pd.DataFrame) -> Path:
    """``output_dir/results.csv``."""
    path = study.output_dir / "results.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_text(path, table.to_csv(index=False, float_format="%.6g"))
    return path


def summarise(table: pd.DataFrame, metric: str = "test_mcc", by: Sequence[str] = ("task", "method")) -> pd.DataFrame:
    """Mean, sample standard deviation, min, max and count over seeds of ``metric`` per ``by``."""
    done = table[table["status"] == "done"]
    if done.empty:
        return pd.DataFrame(columns=[*by, "mean", "std", "min", "max", "n"])
    grouped = done.groupby(list(by), sort=False)[metric]
    return grouped.agg(mean="mean", std="std", min="min", max="max", n="count").reset_index()


def format_spread(mean: float, std: float, n: int, digits: int = 3) -> str:
    """``"0.412 ± 0.031"`` (no spread for one seed), ``"–"`` for a missing mean."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    spread = "" if n < 2 or std is None or math.isnan(std) else f" ± {std:.{digits}f}"
    return f"{mean:.{digits}f}{spread}"


def pivot_text(table: pd.DataFrame, metric: str, methods: Sequence[str], tasks: Sequence[str]) -> pd.DataFrame:
    """task x method cells 'mean ± std' for a metric (std over seeds)."""
    stats = summarise(table, metric)
    lookup = {(r.task, r.method): r for r in stats.itertuples()}
    rows = []
    for task in tasks:
        row = {"task": task}
        for method in methods:
            r = lookup.get((task, method))
            row[method] = format_spread(r.mean, r.std, r.n) if r is not None else "–"
        rows.append(row)
    return pd.DataFrame(rows, columns=["task", *methods])


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (empty cells for None/NaN), or a note when ``frame`` is empty."""
    if frame.empty:
        return "_no finished cells_\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"
