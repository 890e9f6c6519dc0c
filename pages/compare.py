"""Compare: several runs side by side (metrics, cost, final rank patterns)."""

from __future__ import annotations

import streamlit as st

from lingo_core.plots import charts as dash
from pages._common import all_runs, initial_rank, run_label

st.title("Compare runs")
runs = all_runs()
if not runs:
    st.info("No runs yet.")
    st.page_link("pages/train.py", label="Launch one on the Train page", icon=":material/rocket_launch:")
    st.stop()

by_id = {r.id: r for r in runs}
finished = [r.id for r in runs if r.state == "done"]
if "compare_runs" in st.session_state:  # drop runs deleted since they were chosen
    st.session_state["compare_runs"] = [i for i in st.session_state["compare_runs"] if i in by_id]
else:
    st.session_state["compare_runs"] = (finished or [r.id for r in runs])[:4]
chosen = st.multiselect("Runs", list(by_id), key="compare_runs", format_func=lambda i: run_label(by_id[i]))
if not chosen:
    st.info("Choose one or more runs.")
    st.stop()

summaries = [by_id[i].summary() for i in chosen]
table = dash.compare_table(summaries)
labels = dash.short_run_labels(chosen)
st.dataframe(table, hide_index=True, key="compare_table")
st.caption("Test metrics are those of the checkpoint selected on the dev set; runs still training show none yet.")
st.download_button("Download the table (CSV)", table.to_csv(index=False).encode(), "lingo_compare.csv", "text/csv", key="compare_download")

c1, c2 = st.columns(2)
with c1:
    st.plotly_chart(dash.compare_figure(table, labels), key="compare_metrics")
with c2:
    st.plotly_chart(dash.cost_figure(table, labels), key="compare_cost")

st.subheader("Final rank patterns")
patterns = []
for run_id in chosen:
    run = by_id[run_id]
    pattern, source = dash.final_ranks(run.ranks(), run.report())
    if pattern:
        patterns.append((run_id, dash.rank_pattern_frame(pattern), source, initial_rank(run)))
if not patterns:
    st.caption("None of these runs has a rank budget (only methods with one, such as AdaLoRA and ARS, record rank patterns).")
else:
    zmax = max((p[3] or 0) for p in patterns) or None
    per_row = 2 if len(patterns) > 1 else 1
    for start in range(0, len(patterns), per_row):
        cols = st.columns(per_row)
        for col, (run_id, frame, source, _) in zip(cols, patterns[start : start + per_row]):
            with col:
                st.plotly_chart(dash.rank_pattern_figure(frame, f"{labels[run_id]} — {source}", zmax=zmax), key=f"compare_pattern_{run_id}")
