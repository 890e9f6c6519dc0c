"""Predict: score pasted or uploaded sequences with a trained run; download the table.

A result belongs to the input, run and options that produced it: any change of those (or an input
error) clears it, so a table and its Download button never describe other sequences. Record ids
and sequences are user text: shown escaped, never as markdown.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional

import streamlit as st

from lingo_core.data import DataError
from pages._common import (
    MAX_PASTE_CHARS,
    MAX_SEQUENCE_NT,
    MAX_TOTAL_NT,
    UPLOAD_LIMIT_MB,
    all_runs,
    best_finished_run,
    md,
    page_words,
    pick_run,
    predictor_for,
    save_upload,
    show_exception,
    upload_too_big,
)

MAX_RECORDS = 20_000
CHUNK = 256  # records per progress update
EXAMPLE = ">example1\nGCGTACCTATAAAAGCGTTACGACGGTCCAATCGATCGTACG\n>example2\nACGTTGCAGTCAGTTAGCATCGATCGATCGGATCGATTAGCA"
FIELDS = {"seq": "Sequence column (CSV)", "id": "Id column (CSV)"}

st.title("Predict")
infos = all_runs()
info = pick_run(
    "Trained run",
    infos,
    key="predict_run",
    accept=lambda i: i.has_model,
    help="Runs with an exported adapter, or a best checkpoint while they train. By default the best finished run (test MCC) of the most recent task.",
    default=best_finished_run(infos),
    with_score=True,
    share="selected_model_run",
)
if info is None:
    damaged = [i for i in infos if i.damage]
    st.info("No run has a trained model yet. Finish a run first (the quickstart run on Home is the quickest).")
    if damaged:
        st.caption(f"{len(damaged)} run(s) are damaged and not offered here; the Runs page says what is wrong with each.")
    st.stop()
run = info.run
if not run.has_adapter:
    st.caption("This run has not finished: predictions use its best checkpoint so far.")


def parse_pasted(text: str):
    """FASTA (lines starting with '>') or one sequence per line, as prediction records."""
    from lingo_core.sequence_input import parse_fasta_records, records_from_sequences

    if text.lstrip().startswith(">"):
        return parse_fasta_records(text, "the pasted text")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return records_from_sequences(lines)


def digest(*parts) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


source = st.radio("Input", ["Paste sequences", "Upload FASTA or CSV"], key="predict_source", horizontal=True)
records = None
input_key = None
try:
    if source == "Paste sequences":
        text = st.text_area(
            f"Sequences: one per line, or FASTA (up to {MAX_PASTE_CHARS:,} characters; each sequence up to {MAX_SEQUENCE_NT:,} nt)",
            EXAMPLE, height=160, key="predict_text", max_chars=MAX_PASTE_CHARS,
        )
        input_key = digest("paste", text)
        if text and text.strip():
            records = parse_pasted(text)
    else:
        uploaded = st.file_uploader(f"FASTA (.fa/.fasta/.fna) or CSV/TSV with a sequence column (up to {UPLOAD_LIMIT_MB} MB)", type=["fa", "fasta", "fna", "csv", "tsv"], key="predict_upload", max_upload_size=UPLOAD_LIMIT_MB)
        c1, c2 = st.columns(2)
        sequence_column = c1.text_input(FIELDS["seq"], "sequence", key="predict_seq_col").strip() or "sequence"
        id_column = c2.text_input(FIELDS["id"], "", key="predict_id_col", help="Blank: a column named 'id' if there is one, else the line number").strip() or None
        if uploaded is not None:
            too_big = upload_too_big(uploaded.size)
            if too_big:
                st.error(md(too_big))
            else:
                from lingo_core.sequence_input import read_csv_input, read_fasta_input

                data = uploaded.getvalue()
                path = save_upload(data, uploaded.name)
                input_key = digest("upload", data, sequence_column, id_column)
                try:
                    if path.suffix.lower() in (".csv", ".tsv"):
                        records = read_csv_input(path, sequence_column, id_column)
                    else:
                        records = read_fasta_input(path)
                except (DataError, ValueError) as exc:
                    st.error(f"The file cannot be read: {page_words(exc, FIELDS, {path: uploaded.name})}")
                    records, input_key = None, None
                else:
                    for record in records:  # where a record came from: the uploaded name, not the stored copy
                        record.where = record.where.replace(str(path), uploaded.name)
except (DataError, ValueError) as exc:
    st.error(f"The input cannot be read: {page_words(exc, FIELDS)}")
    records, input_key = None, None

if records is not None and len(records) > MAX_RECORDS:
    st.error(f"{len(records):,} records; the dashboard scores up to {MAX_RECORDS:,} at a time. Split the file into smaller ones.")
    records, input_key = None, None
if records:
    too_long = [r for r in records if len(r.sequence) > MAX_SEQUENCE_NT]
    if too_long:
        names = ", ".join(f"{md(r.id)} ({len(r.sequence):,} nt)" for r in too_long[:5]) + (", …" if len(too_long) > 5 else "")
        st.warning(
            f"{len(too_long)} sequence(s) are longer than {MAX_SEQUENCE_NT:,} nt, the longest the dashboard scores "
            f"(longer ones would keep the app busy for minutes): {names}. They are left out; paste or upload the region "
            f"of interest (up to {MAX_SEQUENCE_NT:,} nt) instead."
        )
        records = [r for r in records if len(r.sequence) <= MAX_SEQUENCE_NT]
    total = sum(len(r.sequence) for r in records)
    if total > MAX_TOTAL_NT:
        st.error(f"{total:,} nt in all; the dashboard scores up to {MAX_TOTAL_NT:,} nt at a time. Split the input into smaller parts.")
        records = None
if not records:
    input_key = None

with st.expander("Options"):
    c1, c2, c3 = st.columns(3)
    aggregate = c1.radio("Long sequences: combine windows by", ["mean", "max"], key="predict_aggregate", horizontal=True)
    rc = c2.checkbox("Average with the reverse complement", False, key="predict_rc")
    threshold = c3.slider("Threshold (multi-label)", 0.0, 1.0, 0.5, 0.01, key="predict_threshold")

result_key = (run.id, run.weights_stamp(), input_key, aggregate, rc, threshold) if input_key else None
stored: Optional[tuple] = st.session_state.get("predict_result")
if stored is not None and stored[0] != result_key:
    del st.session_state["predict_result"]  # the input, run or options changed: the old table is not this input's
    stored = None

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
