"""Predict: score pasted or uploaded sequences with a trained run; download the table.

A result belongs to the input, run and options that produced it: any change of those (or an input
error) clears it, so a table and its Download button never describe other sequences. Record ids
and sequences are user text: shown escaped, never as markdown.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from pages._common import INPUT_FIELDS as FIELDS
from pages._common import kept_result, md, page_words, pick_model_run, predictor_for, sequence_input, show_exception

CHUNK = 256  # records per progress update

st.title("Predict")
info = pick_model_run(
    "predict_run",
    "Runs with an exported adapter, or a best checkpoint while they train. By default the best finished run (test MCC) of the most recent task.",
)
run = info.run
if not run.has_adapter:
    st.caption("This run has not finished: predictions use its best checkpoint so far.")

records, input_key = sequence_input("predict")

with st.expander("Options"):
    c1, c2, c3 = st.columns(3)
    aggregate = c1.radio("Long sequences: combine windows by", ["mean", "max"], key="predict_aggregate", horizontal=True)
    if st.session_state.get("predict_rc_run") != run.id:  # each run starts as it scored its own dev and test sets
        st.session_state["predict_rc"] = run.eval_strands == "both"
        st.session_state["predict_rc_run"] = run.id
    rc = c2.checkbox(
        "Average with the reverse complement", key="predict_rc",
        help="Score each sequence on both strands and average the probabilities. On by default for runs that were "
        "scored that way while training (\"Score dev and test on both strands\" on the Train page).",
    )
    threshold = c3.slider("Threshold (multi-label)", 0.0, 1.0, 0.5, 0.01, key="predict_threshold")

result_key = (run.id, run.weights_stamp(), input_key, aggregate, rc, threshold) if input_key else None
stored = kept_result("predict_result", result_key)

clicked = st.button("Predict", type="primary", key="predict_go", disabled=not records)
if clicked and records:
    result = None
    try:
        with st.spinner("Loading the trained model…"):
            predictor = predictor_for(str(run.path), run.weights_stamp())
        bar = st.progress(0.0, text="scoring…")
        rows, first = [], None
        for start in range(0, len(records), CHUNK):
            part = predictor.predict(records[start : start + CHUNK], aggregate=aggregate, reverse_complement=rc, threshold=threshold)
            first = first or part
            rows.extend(part.rows)
            done = min(len(records), start + CHUNK)
            bar.progress(done / len(records), text=f"scored {done:,} of {len(records):,}")
        seen: set[str] = set()
        for row in rows:  # duplicate ids across chunks too
            row.duplicate_id = row.duplicate_id or row.id in seen
            seen.add(row.id)
        result = dataclasses.replace(first, rows=rows)
        bar.empty()
    except Exception as exc:  # noqa: BLE001 - a broken run or odd input must not crash the page
        show_exception("Prediction failed", exc)
    if result is not None:
        stored = (result_key, result)
        st.session_state["predict_result"] = stored

if stored:
    result = stored[1]
    frame = result.to_frame()
    scored = len(result) - len(result.errors)
    st.subheader(f"{scored} of {len(result)} records scored")
    good = [r for r in result.rows if r.probabilities is not None]
    if 0 < len(good) <= 5:  # a few records: say it in words too
        st.markdown(
            "\n".join(
                f"- **{md(r.id)}**: predicted **{md(r.predicted or '–')}** · "
                + ", ".join(f"P({md(name)}) = {p:.3f}" for name, p in zip(result.label_names, r.probabilities))
                for r in good
            )
        )
    prob_columns = [c for c in frame.columns if c.startswith("prob_")]
    shown = frame[["id"] + prob_columns + ["predicted", "length", "n_fraction", "n_windows", "duplicate_id", "error"]]
    st.dataframe(
        shown,
        hide_index=True,
        key="predict_table",
        column_config={c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="%.3f") for c in prob_columns},
    )
    if result.errors:
        st.warning(f"{len(result.errors)} record(s) could not be scored:")
        st.markdown("\n".join(f"- {page_words(e, FIELDS)}" for e in result.errors[:50]) + ("\n- …" if len(result.errors) > 50 else ""))
    flags = frame[(frame["n_fraction"] > 0.1) | (frame["duplicate_id"]) | (frame["windows_truncated"] > 0)]
    if len(flags):
        st.caption(f"{len(flags)} record(s) flagged: more than 10% N, a duplicate id, or a window cut to fit the model.")
    st.caption(md(result.aggregation_text()))
    st.download_button("Download CSV", frame.to_csv(index=False).encode(), f"lingo_predictions_{run.id}.csv", "text/csv", key="predict_download")
elif records:
    st.caption("Press Predict to score these sequences.")
