"""Compare: several runs side by side (metrics, cost, final rank patterns)."""

from __future__ import annotations

import html

import streamlit as st

from lingo_core.plots import charts as dash
from pages._common import all_runs, initial_rank, md, run_label

st.title("Compare runs")
infos = all_runs()
if not infos:
    st.info("No runs yet: start the quickstart run on Home, or configure one on the Train page.")
    st.page_link("pages/train.py", label="Launch one on the Train page", icon=":material/rocket_launch:")
    st.stop()

by_id = {i.id: i for i in infos}
finished = [i.id for i in infos if i.state == "done" and not i.damage]
if "compare_runs" in st.session_state:  # drop runs deleted since they were chosen
    st.session_state["compare_runs"] = [i for i in st.session_state["compare_runs"] if i in by_id]
else:
    healthy = [i.id for i in infos if not i.damage]
    st.session_state["compare_runs"] = (finished or healthy)[:4]
chosen = st.multiselect("Runs", list(by_id), key="compare_runs", format_func=lambda i: run_label(by_id[i]))
if not chosen:
    st.info("Choose one or more runs above: finished runs show their test metrics, cost and final rank patterns.")
    st.stop()

damaged = [by_id[i] for i in chosen if by_id[i].damage]
for info in damaged:
    st.warning(f"Run **{md(info.id)}** is damaged ({md(info.damage)}): it is listed, but nothing of it can be compared.")
tasks = sorted({by_id[i].task or "?" for i in chosen if not by_id[i].damage})
if len(tasks) > 1:
    st.warning(
        "These runs were trained on different tasks (" + ", ".join(f"**{md(t)}**" for t in tasks) + "): their metrics "
        "measure different things and are not comparable. Choose runs of one task to compare methods."
    )

summaries = [by_id[i].summary for i in chosen]
table = dash.compare_table(summaries)
labels = dash.short_run_labels(chosen)
st.dataframe(
    table,
    hide_index=True,
    key="compare_table",
    column_config={  # widths that show every header whole: the best dev MCC was cut off on a laptop screen
        "run": st.column_config.TextColumn("run", width=230),
        "method": st.column_config.TextColumn("method", width=70),
        "task": st.column_config.TextColumn("task", width=120),
        **{c: st.column_config.NumberColumn(c, width=70) for c in ("MCC", "AUROC", "AUPRC")},
        "best dev MCC": st.column_config.NumberColumn("best dev MCC", width=105),
        "trainable %": st.column_config.NumberColumn("trainable %", width=95),
        "wall time (s)": st.column_config.NumberColumn("wall time (s)", width=100),
        "state": st.column_config.TextColumn("state", width=100),
        "model": st.column_config.TextColumn("model", width=110),
    },
)
st.caption("Test metrics are those of the checkpoint selected on the dev set; runs still training show none yet.")
st.download_button("Download the table (CSV)", table.to_csv(index=False).encode(), "lingo_compare.csv", "text/csv", key="compare_download")

scored = table.dropna(subset=["MCC"])
if not len(scored):
    st.info(
        "None of the chosen runs has test metrics yet: they appear when a run finishes (its dev-selected checkpoint is "
        "evaluated on the test set). Watch a run on the Runs page, or choose finished runs above."
    )
else:
    c1, c2 = st.columns(2)
    with c1:
        st.plotly_chart(dash.compare_figure(scored, labels), key="compare_metrics")
    with c2:
        if len(scored.dropna(subset=["trainable %"])):
            st.plotly_chart(dash.cost_figure(scored, labels), key="compare_cost")
        else:
            st.caption("No trainable-parameter count recorded for these runs, so there is no cost chart.")

st.subheader("Final rank patterns")
patterns = []
for run_id in chosen:
    info = by_id[run_id]
    if info.damage:
        continue
    ranks = info.run.ranks()
    pattern, source = dash.final_ranks(ranks, info.run.report())
    if pattern:
        patterns.append((run_id, dash.rank_pattern_frame(pattern), source, initial_rank(info.run, ranks)))
if not patterns:
    st.caption(
        "None of these runs has a rank pattern yet: only methods with a rank budget (AdaLoRA, ARS) record one, from their "
        "first allocation on. Choose such runs to compare where each put its rank."
    )
else:
    zmax = max((p[3] or 0) for p in patterns) or None
    st.caption(f"One colour scale for all: rank 0 to {zmax}, the largest initial rank among them." if zmax else "")
    per_row = 2 if len(patterns) > 1 else 1
    for start in range(0, len(patterns), per_row):
        cols = st.columns(per_row)
        for col, (run_id, frame, source, _) in zip(cols, patterns[start : start + per_row]):
            with col:
                title = f"{html.escape(labels[run_id])}<br><sup>{html.escape(source)}</sup>"  # plotly reads tags in titles
                st.plotly_chart(dash.rank_pattern_figure(frame, title, zmax=zmax), key=f"compare_pattern_{run_id}")
