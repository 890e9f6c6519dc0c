"""Panel: score sequences with every finished task at once: one backbone, one adapter per task.

Pick the base model (all its compatible finished runs are in the panel by default; the finished
runs that cannot join are listed with the reason), paste or upload sequences, and read a heat map of
sequences x tasks, each column headed by its task's test MCC and AUROC. A click on a cell opens that
sequence in Attribute for that task (so does "Open a sequence in Attribute", without a mouse). A
result belongs to the runs, input and options that produced it: changing any of them clears it.
Record ids, sequences, task names and descriptions are user or file text: shown escaped.
"""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd
import streamlit as st

from lingo_core.plots.panel import MAX_ROWS, clicked_cell, panel_heatmap_figure
from pages._common import (
    INPUT_FIELDS,
    LIVE_STATES,
    all_runs,
    digest,
    kept_result,
    md,
    page_words,
    panel_for,
    panel_grouping,
    send_to_attribute,
    sequence_input,
    show_exception,
)

CHUNK = 256  # records per progress update
FLAGS = ["length", "n_fraction", "n_windows", "duplicate_id", "error"]

st.title("Panel")
st.caption(
    "Every finished task at once: the base model is loaded once and each run's adapter is switched in for its "
    "task, so one table gives each sequence's probability under every task."
)
infos = all_runs()
finished = [i for i in infos if i.state == "done" and not i.damage]
training = [i for i in infos if i.state in LIVE_STATES]
if not finished:
    st.info(
        "No finished run yet. A panel scores sequences with several finished runs at once: train runs on different "
        "tasks on the Train page (the quickstart run on Home is the quickest), then come back."
    )
    st.stop()
by_id = {i.id: i for i in finished}
grouping = panel_grouping(tuple(str(i.path) for i in finished), tuple(i.run.weights_stamp() for i in finished))
if not grouping.groups:
    st.warning("None of the finished runs can join a panel:")
    st.markdown("\n".join(f"- **{md(r.run.id)}**: {md(r.reason)}" for r in grouping.refused))
    st.stop()


def group_label(k: int) -> str:
    key = grouping.groups[k].key
    return f"{key.text('model')} · {key.vocabulary} · {key.text('pooling')} · {key.text('precision')} ({len(grouping.groups[k].runs)} run(s))"


k = st.selectbox(
    "Base model", range(len(grouping.groups)), format_func=group_label, key="panel_group",
    help="Runs share a panel when they adapt the same base model with the same vocabulary, pooling and precision.",
)
group = grouping.groups[k]
ids = [run.id for run in group.runs]


def run_text(run_id: str) -> str:
    info = by_id[run_id]
    mcc = info.test_mcc
    return f"{info.task or '?'} · {info.method or '?'} · test MCC {'–' if mcc is None else f'{mcc:.3f}'} · {run_id}"


runs_key = "panel_runs_" + digest(group.key.describe())[:10]
# by default every run of the group; runs removed since are dropped from an earlier choice
st.session_state[runs_key] = [r for r in st.session_state.get(runs_key, ids) if r in ids]
chosen = st.multiselect(
    "Tasks in the panel (one finished run each)", ids, key=runs_key, format_func=run_text,
    help="By default every finished run of this base model.",
)
left_out = [(i, grouping.why_not(i.run, group)) for i in finished if i.id not in ids]
if left_out:
    with st.expander(f"{len(left_out)} finished run(s) cannot join this panel"):
        st.markdown("\n".join(f"- **{md(i.id)}** ({md(i.task or '?')}, {md(i.method or '?')}): {md(why)}" for i, why in left_out))
if training:
    st.caption(f"{len(training)} run(s) still queued or training can join once they finish.")
if not chosen:
    st.info("Pick at least one run for the panel.")
    st.stop()

records, input_key = sequence_input("panel")
with st.expander("Options"):
    c1, c2 = st.columns(2)
    aggregate = c1.radio("Long sequences: combine windows by", ["mean", "max"], key="panel_aggregate", horizontal=True)
    rc = c2.checkbox("Average with the reverse complement", False, key="panel_rc")

paths = tuple(str(by_id[r].path) for r in chosen)
stamps = tuple(by_id[r].run.weights_stamp() for r in chosen)
result_key = (paths, stamps, input_key, aggregate, rc) if input_key else None
stored = kept_result("panel_result", result_key)

clicked = st.button("Score with the panel", type="primary", key="panel_go", disabled=not records)
if clicked and records:
    result: Optional[dict[str, Any]] = None
    try:
        panel = panel_for(paths, stamps)
        bar = st.progress(0.0, text="scoring…")
        frames, done = [], 0
        for chunk in panel.score_stream(records, chunk_records=CHUNK, aggregate=aggregate, reverse_complement=rc):
            frames.append(chunk.to_frame())
            done += len(chunk)
            bar.progress(done / len(records), text=f"scored {done:,} of {len(records):,} against {len(panel.tasks)} task(s)")
        bar.empty()
        result = {"frame": pd.concat(frames, ignore_index=True), "columns": panel.task_table().to_dict(orient="records")}
    except Exception as exc:  # noqa: BLE001 - a run that cannot join or odd input must not crash the page
        show_exception("The panel could not score these sequences", exc, fields=INPUT_FIELDS)
    if result is not None:
        stored = (result_key, result)
        st.session_state["panel_result"] = stored


def open_cell(frame: pd.DataFrame, columns: list[dict[str, Any]], row: int, col: int) -> None:
    """Open record ``row`` in Attribute with the run of column ``col`` (explaining that column's label)."""
    record, column = frame.iloc[row], columns[col]
    if pd.isna(record[column["column"]]):
        st.warning(f"**{md(record['id'])}** was not scored by {md(column['column'])}: {md(record['error'])}")
        return
    send_to_attribute(str(column["run"]), str(record["id"]), str(record["sequence"]), str(column["label"]))


if stored:
    frame, columns = stored[1]["frame"], stored[1]["columns"]
    names = [c["column"] for c in columns]
    scored = int((frame["error"] == "").sum())
    n_tasks = len({c["run"] for c in columns})
    st.subheader(f"{scored} of {len(frame)} records scored against {n_tasks} task(s)")
    event = st.plotly_chart(
        panel_heatmap_figure(frame, columns), key="panel_heatmap", on_select="rerun", selection_mode="points",
    )
    more = f" The map shows the first {MAX_ROWS} records; the table and the download hold all {len(frame):,}." if len(frame) > MAX_ROWS else ""
    st.caption(
        "Each column is one task's probability for its label; above it, the task's test MCC and AUROC say how far "
        f"to trust it. Blank cells: records that could not be scored. Click a cell to open that sequence in Attribute for that task.{more}"
    )
    cell = clicked_cell(event)
    if cell is not None and st.session_state.get("_panel_clicked") != (stored[0], cell):
        st.session_state["_panel_clicked"] = (stored[0], cell)  # a selection is acted on once
        open_cell(frame, columns, *cell)
    with st.expander("Open a sequence in Attribute"):
        c1, c2, c3 = st.columns([2, 2, 1])
        row = c1.selectbox("Sequence", range(len(frame)), key="panel_open_row", format_func=lambda i: str(frame["id"].iloc[i]))
        col = c2.selectbox("Task and label", range(len(columns)), key="panel_open_column", format_func=lambda j: names[j])
        if c3.button("Open in Attribute", key="panel_open_go"):
            open_cell(frame, columns, row, col)

    st.markdown("**Tasks** (test metrics of each run's dev-selected model)")
    st.dataframe(
        pd.DataFrame(columns)[["column", "task", "label", "domain", "description", "method", "adapter", "test_mcc", "test_auroc", "run"]],
        hide_index=True, key="panel_tasks",
        column_config={"test_mcc": st.column_config.NumberColumn("test MCC", format="%.3f"), "test_auroc": st.column_config.NumberColumn("test AUROC", format="%.3f")},
    )
    st.dataframe(
        frame[["id", *names, *FLAGS]], hide_index=True, key="panel_table",
        column_config={c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="%.3f") for c in names},
    )
    errors = [e for e in frame["error"] if e]
    if errors:
        st.warning(f"{len(errors)} record(s) could not be scored:")
        st.markdown("\n".join(f"- {page_words(e, INPUT_FIELDS)}" for e in errors[:50]) + ("\n- …" if len(errors) > 50 else ""))
    st.download_button("Download CSV", frame.to_csv(index=False).encode(), "lingo_panel.csv", "text/csv", key="panel_download")
elif records:
    st.caption("Press Score with the panel to score these sequences against every task.")
