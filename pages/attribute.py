"""Attribute: which nucleotides (and how much of the language prefix) drove a run's prediction."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any, Optional

import streamlit as st

from lingo_core.data import DataError
from lingo_core.plots.charts import logo_headroom
from pages._common import (
    MAX_PASTE_CHARS,
    load_task_cached,
    md,
    page_words,
    pick_model_run,
    predictor_for,
    sanitize_filename,
    show_exception,
    take_attribute_request,
    typed_config,
)

MAX_LENGTH = 2000  # nucleotides; ISM costs 3 x L forward passes
METHOD_NAMES = {"both": "IG and ISM (with their correlation)", "ig": "Integrated gradients (IG)", "ism": "In-silico mutagenesis (ISM)"}
EXAMPLE = "GCGTACCTATAAAAGCGTTACGACGGTACGATCGTTAGCATCGGGCCAATCGATCGTACGTTAGCAAGCTAGCTAGGCTAGCATCGACTGACTAGCTAGC"

st.title("Attribute")
request = take_attribute_request()
info = pick_model_run("attr_run", "By default the best finished run (test MCC) of the most recent task.")
run = info.run

run_cfg = typed_config(run)  # None when the run's config cannot be read
report = run.report() or {}
data_report = run.data_report() or {}
if not isinstance(report.get("label_names") or [], list):
    report = {}
label_names: list[str] = list(report.get("label_names") or data_report.get("label_names") or [])
wanted_target = st.session_state.pop("_attr_target_wanted", None)
if wanted_target in label_names:  # sent with the sequence: the class whose probability was clicked
    st.session_state["attr_target"] = wanted_target
if request is not None and request["run"] != run.id:
    st.warning(f"The run {md(request['run'])} the Panel pointed to has no model here any more; the sequence is filled in for the run picked above.")
elif request is not None:
    st.info(
        f"Opened from the Panel: **{md(request['id'])}** with the run of task **{md(info.task or '?')}**"
        + (f", explaining **{md(wanted_target)}**" if wanted_target in label_names else "")
        + ". Press Attribute to see which nucleotides drove its score."
    )


def test_sequences() -> Optional[Any]:
    """The test split of the run's own task (cached), or None with a message when it cannot be loaded."""
    if run_cfg is None:
        st.warning("The run's config cannot be read, so neither can its test set; paste a sequence instead.")
        return None
    try:
        return load_task_cached(json.dumps(dataclasses.asdict(run_cfg.data), sort_keys=True, default=str)).test
    except Exception as exc:  # noqa: BLE001 - data moved or missing
        st.warning(f"The run's test set cannot be loaded ({page_words(exc)}); paste a sequence instead.")
        return None


source = st.radio("Sequence", ["Paste a sequence", "From the run's test set"], key="attr_source", horizontal=True)
sequence, seq_id, motifs = None, "sequence", None
if source == "Paste a sequence":
    st.session_state.setdefault("attr_text", EXAMPLE)  # a value of its own, so that another page can fill it in
    text = st.text_area("One DNA sequence (raw or FASTA; the first record is used)", height=110, key="attr_text", max_chars=MAX_PASTE_CHARS)
    if text and text.strip():
        if text.lstrip().startswith(">"):
            from lingo_core.sequence_input import parse_fasta_records

            try:
                records = parse_fasta_records(text, "the pasted text")
            except DataError as exc:
                st.error(page_words(exc))
                records = []
            if len(records) > 1:
                st.caption(f"{len(records)} records pasted; attributing the first, **{md(records[0].id)}**.")
            if records:
                sequence, seq_id = records[0].sequence, records[0].id
        else:
            sequence = "".join(text.split())
else:
    split = test_sequences()
    if split is not None and len(split):
        n = min(len(split), 500)

        def describe(i: int) -> str:
            label = split.labels[i]
            if split.labels.ndim == 1 and 0 <= int(label) < len(label_names):
                label = label_names[int(label)]
            return f"{split.ids[i]} (label {label})"

        index = st.selectbox("Test sequence", range(n), key="attr_test_index", format_func=describe)
        sequence, seq_id = split.sequences[index], split.ids[index]
        if split.motifs is not None:
            motifs = split.motifs[index]
            if motifs:
                st.caption(
                    "Planted motifs, at positions counted from 0 as on the chart axes: "
                    + ", ".join(f"{md(name)} at {start}–{end - 1}" for start, end, name in motifs)
                )

if sequence is not None:
    from lingo_core.data import clean_sequence

    try:
        sequence, replaced = clean_sequence(sequence, f"sequence '{seq_id}'", run_cfg.data.iupac if run_cfg is not None else "n")
    except DataError as exc:
        st.error(page_words(exc))
        sequence = None
    else:
        if len(sequence) > MAX_LENGTH:
            st.error(
                f"The sequence has {len(sequence):,} nt; the dashboard attributes up to {MAX_LENGTH:,} nt (in-silico mutagenesis "
                f"needs 3 forward passes per nucleotide). Paste the region of interest, up to {MAX_LENGTH:,} nt."
            )
            sequence = None
        elif replaced:
            st.caption(f"{replaced} IUPAC ambiguity code(s) were read as N.")

c1, c2, c3, c4 = st.columns(4)
method = c1.radio("Method", list(METHOD_NAMES), key="attr_method", format_func=METHOD_NAMES.get)
target_options = ["predicted class"] + label_names
target_choice = c2.selectbox("Explain the class", target_options, key="attr_target")
n_steps = c3.slider("IG steps", 8, 200, 32, 8, key="attr_steps", disabled=method == "ism")
baseline = c4.radio("IG baseline", ["pad", "N"], key="attr_baseline", disabled=method == "ism", help="pad: sequence tokens replaced by padding; N: by an all-N sequence")
include_prompt = c4.checkbox("Measure the prompt's share", True, key="attr_prompt", disabled=method == "ism", help="The prefix tokens are also replaced in the IG baseline, so their contribution is measured")

clicked = st.button("Attribute", type="primary", key="attr_go", disabled=sequence is None)
settings = {"run": run.id, "stamp": run.weights_stamp(), "seq": hashlib.sha1((sequence or "").encode()).hexdigest(), "method": method, "target": target_choice, "n_steps": n_steps, "baseline": baseline, "prompt": include_prompt}
if clicked and sequence is not None:
    from lingo_core.attribution import AttributionError, attribute

    target = None if target_choice == "predicted class" else target_choice
    try:
        with st.status("Attributing…", expanded=True) as status:
            st.write("Loading the trained model…")
            predictor = predictor_for(str(run.path), run.weights_stamp())
            result = None
            if method in ("ig", "both"):
                st.write(f"Integrated gradients ({n_steps} steps)…")
                result = attribute(predictor, sequence, "ig", target, id=seq_id, baseline=baseline, include_prompt=include_prompt, n_steps=n_steps)
            if method in ("ism", "both"):
                st.write(f"In-silico mutagenesis ({3 * len(sequence):,} mutants)…")
                ism = attribute(predictor, sequence, "ism", result.target if result is not None else target, id=seq_id)
                if result is None:
                    result = ism
                else:
                    result.ism = ism.ism
                    result.settings["method"] = "both"
            status.update(label="Done", state="complete", expanded=False)
        st.session_state["attr_result"] = (settings, result, motifs)
    except (AttributionError, DataError, ValueError) as exc:
        show_exception("Attribution failed", exc)
    except Exception as exc:  # noqa: BLE001 - keep the page alive whatever the model does
        show_exception("Attribution failed unexpectedly", exc)

stored = st.session_state.get("attr_result")
if stored and (sequence is None or stored[0]["run"] != run.id or stored[0]["stamp"] != settings["stamp"] or stored[0]["seq"] != settings["seq"]):
    del st.session_state["attr_result"]  # a result belongs to its run and sequence: a new or invalid input clears it
    stored = None
if stored:
    from lingo_core.plots import attribution as plots

    _, result, stored_motifs = stored
    if stored[0] != settings:
        st.caption("Showing the result for this sequence with the previous settings (press Attribute to update).")
    probs = ", ".join(f"{md(name)} {p:.3f}" for name, p in zip(result.label_names, result.probabilities))
    st.markdown(f"**{md(result.id)}** ({len(result.sequence)} nt): P = {probs}; explaining **{md(result.target_name)}** (log-odds).")
    cols = st.columns(4)
    corr = result.correlation()
    if result.ig is not None:
        cols[0].metric("Prompt share of |IG|", f"{result.ig.prompt_share:.1%}", help="Share of the absolute attribution carried by the language prefix tokens")
        cols[1].metric("IG convergence delta", f"{result.ig.delta:+.3g}", help="Sum of attributions minus the score difference to the baseline; near 0 is good")
    if corr["pearson"] is not None:
        cols[2].metric("IG vs ISM Pearson r", f"{corr['pearson']:.2f}")
        cols[3].metric("IG vs ISM Spearman ρ", f"{corr['spearman']:.2f}")
    st.plotly_chart(plots.attribution_heatmap_figure(result), key="attr_heatmap")
    st.plotly_chart(plots.attribution_track_figure(result, motifs=stored_motifs), key="attr_track")
    with st.expander("Sequence logo", expanded=True):
        try:
            import matplotlib.pyplot as plt

            fig = logo_headroom(plots.logo_figure(result))
            st.pyplot(fig, clear_figure=True)
            plt.close(fig)
        except Exception as exc:  # noqa: BLE001 - logomaker missing or odd input
            st.caption(f"No logo: {md(exc)}")
    if result.ig is not None and result.ig.include_prompt:
        st.plotly_chart(plots.prompt_contribution_figure(result.ig), key="attr_prompt_chart")
    if result.ism is not None:
        st.plotly_chart(plots.ism_heatmap_figure(result.ism), key="attr_ism")

    with tempfile.TemporaryDirectory() as tmp:
        npz_path = Path(result.to_npz(Path(tmp) / "attribution.npz"))
        npz = npz_path.read_bytes()
    buffer = io.StringIO()
    result.to_frame().to_csv(buffer, index=False)
    c1, c2 = st.columns(2)
    c1.download_button("Download npz (TF-MoDISco style arrays)", npz, f"lingo_attribution_{sanitize_filename(result.id)}.npz", "application/octet-stream", key="attr_npz")
    c2.download_button("Download CSV (one row per nucleotide)", buffer.getvalue().encode(), f"lingo_attribution_{sanitize_filename(result.id)}.csv", "text/csv", key="attr_csv")
