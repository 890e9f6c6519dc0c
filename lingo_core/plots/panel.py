"""The panel's heat map: sequences x tasks, each column headed by its task's test MCC and AUROC.

Plain functions (no Streamlit): the Panel page draws :func:`panel_heatmap_figure` and turns a click
into a (sequence, column) pair with :func:`clicked_cell`. Record ids, task names, labels and
descriptions are user or file text: HTML-escaped, so plotly's label markup cannot turn them into
links.
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

MAX_ROWS = 200  # sequences drawn; the table and the download hold every record
CELL_TEXT_CELLS = 1500  # probabilities printed in the cells up to this many cells


def _metric(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def column_header(column: Mapping[str, Any]) -> str:
    """Tick label of a column: the task's name, the label, and its test MCC / AUROC (escaped, plotly line breaks)."""
    name = str(column["column"])
    task = name.rsplit(":", 1)[0]
    return (
        f"{html.escape(task)}<br><b>{html.escape(str(column['label']))}</b><br>"
        f"MCC {_metric(column.get('test_mcc'))} · AUROC {_metric(column.get('test_auroc'))}"
    )


def panel_heatmap_figure(frame: pd.DataFrame, columns: Sequence[Mapping[str, Any]], max_rows: int = MAX_ROWS) -> go.Figure:
    """Sequences (rows, in input order) x task columns (probability 0-1; blank where a record was not scored).

    ``columns`` are :meth:`lingo_core.panel.Panel.task_table` records. Hovering a cell shows the
    record, the task and label, the probability, the task's domain and description and its test
    metrics. An invisible marker sits on every cell, so that a click selects it (plotly heat maps
    cannot be selected): ``customdata`` holds (row, column).
    """
    shown = frame.iloc[:max_rows]
    names = [str(c["column"]) for c in columns]
    z = shown[names].to_numpy(dtype=float) if len(shown) else np.zeros((0, len(names)))
    ids = [html.escape(str(i)) for i in shown["id"]]
    rows, cols = np.meshgrid(np.arange(len(shown)), np.arange(len(names)), indexing="ij")
    hover = np.empty(z.shape, dtype=object)
    for j, column in enumerate(columns):
        about = html.escape(f"{column.get('domain') or ''}: {column.get('description') or ''}".strip(": "))
        metrics = f"test MCC {_metric(column.get('test_mcc'))}, AUROC {_metric(column.get('test_auroc'))} (run {html.escape(str(column.get('run')))})"
        for i in range(len(shown)):
            p = "not scored" if math.isnan(z[i, j]) else f"{z[i, j]:.3f}"
            hover[i, j] = (
                f"<b>{ids[i]}</b><br>{html.escape(str(column['column']))}: P = {p}<br>{_wrap(about)}<br>{metrics}"
                "<br><i>click: open in Attribute</i>"
            )
    heat = go.Heatmap(
        z=z, x=list(range(len(names))), y=list(range(len(shown))), zmin=0.0, zmax=1.0, colorscale="Blues",
        colorbar={"title": {"text": "P(label)"}}, hoverinfo="skip", xgap=1, ygap=1,
        text=np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.2f}")(np.nan_to_num(z))) if z.size <= CELL_TEXT_CELLS else None,
        texttemplate="%{text}" if z.size <= CELL_TEXT_CELLS else None,
    )
    clicks = go.Scatter(
        x=cols.ravel(), y=rows.ravel(), mode="markers", customdata=np.stack([rows.ravel(), cols.ravel()], axis=1),
        marker={"symbol": "square", "size": 18, "opacity": 0.0, "color": "#000"}, hovertext=hover.ravel(),
        hovertemplate="%{hovertext}<extra></extra>", showlegend=False, name="cells",
    )
    fig = go.Figure([heat, clicks])
    fig.update_layout(
        height=min(2400, 170 + 26 * max(len(shown), 3)),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"tickvals": list(range(len(names))), "ticktext": [column_header(c) for c in columns], "side": "top", "fixedrange": True},
        yaxis={"tickvals": list(range(len(shown))), "ticktext": ids, "autorange": "reversed", "fixedrange": True},
        plot_bgcolor="#f0f0f0",
        hoverlabel={"align": "left"},
    )
    return fig


def _wrap(text: str, width: int = 70) -> str:
    """Plotly hover text wrapped at spaces (it does not wrap by itself)."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join(lines + ([line] if line else []))


def clicked_cell(event: Any) -> Optional[tuple[int, int]]:
    """(row, column) of the cell a click selected on :func:`panel_heatmap_figure`, or None.

    The markers sit at x = column, y = row; their ``customdata`` (row, column) says the same and
    comes back as a list, or as ``{"0": row, "1": column}`` when plotly sent it as a typed array.
    """
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for point in points or []:
        if not isinstance(point, Mapping):
            continue
        data = point.get("customdata")
        if isinstance(data, Mapping):
            data = [data.get("0"), data.get("1")]
        if not (isinstance(data, (list, tuple)) and len(data) == 2):
            data = [point.get("y"), point.get("x")]
        try:
            return int(data[0]), int(data[1])
        except (TypeError, ValueError):
            continue
    return None
