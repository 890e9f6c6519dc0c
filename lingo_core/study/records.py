"""Cell records: one JSON file per finished cell under ``work_dir/cells``.

The runner writes a record when a cell ends (``done``, ``failed`` or ``timeout``); the table and the
report read only records, so ``--report-only`` rebuilds both without training anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from .. import runs
from .cells import Cell
from .spec import METRICS, Study


def record_path(study: Study, cell: Cell) -> Path:
    return study.work_dir / "cells" / f"{cell.cell_id}.json"


def read_record(study: Study, cell: Cell) -> Optional[dict[str, Any]]:
    """The cell's record, or None when the cell has not ended yet (or its record is torn)."""
    try:
        return json.loads(record_path(study, cell).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_record(study: Study, cell: Cell, record: dict[str, Any]) -> None:
    runs.atomic_write_json(record_path(study, cell), record)


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
