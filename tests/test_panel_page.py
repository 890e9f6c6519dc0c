"""The Panel page under AppTest (runs of a tiny BERT), its heat map builder, and Attribute opened from a cell.

The live click on a heat-map cell is checked in the browser (tests/test_e2e_browser.py); here the
page is driven through its "Open a sequence in Attribute" controls, which take the same path.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lingo_core import runs
from lingo_core.panel import load_panel
from lingo_core.plots.panel import MAX_ROWS, clicked_cell, column_header, panel_heatmap_figure
from lingo_core.train import train
from tests.helpers import tiny_config
from tests.test_app import app, fake_run, install, no_exception, raw_texts, texts

GOOD = "ACGTTATAAAGGCCAATCGTACGTACCGATTAGC"
INJECTED = "<b>bold</b>[click](http://evil.example/x)"  # one word: a FASTA id ends at the first space


@pytest.fixture(scope="module")
def page_runs(tiny_bert_dir, tmp_path_factory) -> list[Path]:
    """A LoRA and a head-only run of the tiny BERT on the demo task (seconds each)."""
    out = tmp_path_factory.mktemp("panel_page_runs")
    made = [train(tiny_config(tiny_bert_dir, out, method, train={"max_steps": 4, "eval_every": 4})) for method in ("lora", "head")]
    assert all(runs.load_run(p).state == "done" for p in made)
    return made


def spec_array(values) -> np.ndarray:
    """A plotly.js array from a chart spec (numeric arrays come as base64 ``bdata`` with their shape)."""
    if isinstance(values, dict) and "bdata" in values:
        shape = tuple(int(n) for n in str(values.get("shape", "-1")).split(","))
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).reshape(shape)
    return np.asarray(values, dtype=float)


def scored_page(runs_dir: Path, page_runs: list[Path], text: str):
    for run_dir in page_runs:
        install(run_dir, runs_dir)
    at = app("panel")
    no_exception(at)
    at.text_area(key="panel_text").set_value(text).run()
    at.button(key="panel_go").click().run()
    no_exception(at)
    return at


def test_panel_page_scores_every_task_draws_the_map_and_downloads(dashboard_runs_dir, page_runs):
    fake_run(dashboard_runs_dir, "20261125-090000-full-demo_motifs-full", method="full")  # cannot join: said why
    at = scored_page(dashboard_runs_dir, page_runs, f">good\n{GOOD}\n>bad\nACGTXXACGT\n")
    assert at.selectbox(key="panel_group") is not None
    chosen = at.multiselect[0].value
    assert sorted(chosen) == sorted(p.name for p in page_runs)  # every finished run of the base model by default
    assert any("cannot join this panel" in e.label for e in at.expander)
    assert "full fine-tuning changed every weight of the backbone" in texts(at.markdown)
    assert "1 of 2 records scored against 2 task(s)" in at.subheader[0].value
    table = at.dataframe[1].value
    panel = load_panel([dashboard_runs_dir / name for name in chosen])
    expected = panel.score([GOOD, "ACGTXXACGT"], ids=["good", "bad"])
    for column in panel.columns:  # the page shows what the engine computes
        assert np.isclose(table[column.name].iloc[0], expected[column.name].iloc[0], atol=1e-6)
        assert math.isnan(table[column.name].iloc[1])
    assert "invalid character 'X'" in table["error"].iloc[1] and "could not be scored" in texts(at.warning)
    tasks = at.dataframe[0].value
    assert set(tasks["run"]) == set(chosen) and {"test_mcc", "test_auroc", "description"} <= set(tasks.columns)
    heat = json.loads(next(c for c in at.get("plotly_chart") if c.key == "panel_heatmap").proto.spec)
    z = spec_array(heat["data"][0]["z"])
    assert heat["data"][0]["type"] == "heatmap" and z.shape == (2, 2) and np.isnan(z[1]).all() and not np.isnan(z[0]).any()
    mcc = runs.load_run(dashboard_runs_dir / chosen[0]).report()["test"]["mcc"]
    assert any(f"MCC {mcc:.2f}" in tick for tick in heat["layout"]["xaxis"]["ticktext"])
    assert at.get("download_button")


def test_panel_result_belongs_to_its_input_and_runs(dashboard_runs_dir, page_runs):
    at = scored_page(dashboard_runs_dir, page_runs, f">one\n{GOOD}\n")
    assert at.get("download_button")
    at.text_area(key="panel_text").set_value(f">other\n{GOOD[::-1]}\n").run()
    assert not at.get("download_button") and "Press Score with the panel" in texts(at.caption)
    at.button(key="panel_go").click().run()
    assert list(at.dataframe[1].value["id"]) == ["other"]
    at.multiselect[0].set_value([page_runs[0].name]).run()  # one run fewer: the old table goes
    assert not at.get("download_button")
    at.button(key="panel_go").click().run()
    assert "against 1 task(s)" in at.subheader[0].value


def test_a_cell_opens_attribute_with_the_sequence_and_the_task(dashboard_runs_dir, page_runs):
    at = scored_page(dashboard_runs_dir, page_runs, f">first\nACGTACGTACGTACGTACGT\n>second\n{GOOD}\n")
    columns = at.selectbox(key="panel_open_column").options
    tasks = at.dataframe[0].value
    wanted_run = tasks.loc[tasks["column"] == columns[1], "run"].iloc[0]
    at.selectbox(key="panel_open_row").set_value(1).run()
    at.selectbox(key="panel_open_column").set_value(1).run()
    at.button(key="panel_open_go").click().run()
    no_exception(at)
    assert at.title[0].value == "Attribute"
    assert at.text_area(key="attr_text").value == f">second\n{GOOD}"
    assert at.selectbox(key="attr_run").value == wanted_run
    assert at.selectbox(key="attr_target").value == "positive"
    assert "Opened from the Panel" in texts(at.info) and "second" in texts(at.info)
    at.switch_page("pages/attribute.py")  # AppTest reruns the page it was told to; the app itself stays on Attribute
    at.button(key="attr_go").click().run()  # and it attributes that sequence
    no_exception(at)
    assert "attr_heatmap" in {c.key for c in at.get("plotly_chart")}


def test_attribute_page_takes_a_sent_sequence_once_and_ignores_a_malformed_request(dashboard_runs_dir, page_runs):
    run_dir = install(page_runs[0], dashboard_runs_dir)
    at = app("attribute")
    at.session_state["attribute_request"] = {"run": run_dir.name, "id": "sent", "sequence": GOOD, "target": "negative"}
    at.switch_page("pages/attribute.py").run()
    no_exception(at)
    assert at.text_area(key="attr_text").value == f">sent\n{GOOD}" and at.selectbox(key="attr_target").value == "negative"
    at.text_area(key="attr_text").set_value("ACGTACGT").run()  # the request is used once: the user's edit stays
    assert at.text_area(key="attr_text").value == "ACGTACGT" and "Opened from the Panel" not in texts(at.info)
    at.session_state["attribute_request"] = {"run": run_dir.name, "id": 3}
    at.run()
    no_exception(at)
    assert at.text_area(key="attr_text").value == "ACGTACGT"
    at.session_state["attribute_request"] = {"run": "20261125-000000-lora-gone-0000", "id": "late", "sequence": GOOD}
    at.run()  # a run deleted since: the sequence is filled in for the run on the page, and the page says so
    no_exception(at)
    assert at.text_area(key="attr_text").value == f">late\n{GOOD}" and "has no model here any more" in texts(at.warning)


def test_panel_page_escapes_record_ids_and_lists_what_cannot_join(dashboard_runs_dir, page_runs):
    at = scored_page(dashboard_runs_dir, page_runs, f">{INJECTED}\n{GOOD}\n>www.evil.example\nACGTXX\n")
    shown = raw_texts(at.markdown)
    assert "](" not in shown and "<b>" not in shown and "www.evil" not in shown
    heat = json.loads(next(c for c in at.get("plotly_chart") if c.key == "panel_heatmap").proto.spec)
    ticks = heat["layout"]["yaxis"]["ticktext"]
    assert ticks[0] == "&lt;b&gt;bold&lt;/b&gt;[click](http://evil.example/x)" and all("<" not in tick for tick in ticks)


def test_panel_page_without_a_compatible_run_says_why(dashboard_runs_dir):
    fake_run(dashboard_runs_dir, "20261125-090000-full-demo_motifs-full", method="full")
    at = app("panel")
    no_exception(at)
    assert "None of the finished runs can join a panel" in texts(at.warning) and "full fine-tuning" in texts(at.markdown)


# -- the heat map builder ------------------------------------------------------------------------------------------
COLUMNS = [
    {"column": "gue/prom_core_tata:promoter", "label": "promoter", "run": "r1", "domain": "DNA Promoter",
     "description": "Label 1 means a TATA promoter.", "test_mcc": 0.8123, "test_auroc": 0.93},
    {"column": "x<b>:y", "label": "y", "run": "r2", "domain": "", "description": "", "test_mcc": None, "test_auroc": float("nan")},
]


def test_heatmap_is_records_by_columns_with_metrics_above_and_a_clickable_marker_per_cell():
    frame = pd.DataFrame({"id": ["a", "<i>b</i>", "c"], "gue/prom_core_tata:promoter": [0.9, np.nan, 0.1], "x<b>:y": [0.2, np.nan, 0.7]})
    fig = panel_heatmap_figure(frame, COLUMNS).to_plotly_json()
    heat, cells = fig["data"]
    z = spec_array(heat["z"])
    assert z.shape == (3, 2) and np.isnan(z[1]).all() and z[2, 1] == 0.7
    assert fig["layout"]["xaxis"]["ticktext"][0] == "gue/prom_core_tata<br><b>promoter</b><br>MCC 0.81 · AUROC 0.93"
    assert fig["layout"]["xaxis"]["ticktext"][1] == "x&lt;b&gt;<br><b>y</b><br>MCC – · AUROC –"
    assert fig["layout"]["yaxis"]["ticktext"] == ["a", "&lt;i&gt;b&lt;/i&gt;", "c"]
    assert spec_array(cells["customdata"]).astype(int).tolist() == [[r, c] for r in range(3) for c in range(2)]
    assert "not scored" in cells["hovertext"][2] and "DNA Promoter: Label 1 means a TATA promoter." in cells["hovertext"][0]
    long = pd.DataFrame({"id": [f"s{i}" for i in range(MAX_ROWS + 5)], "gue/prom_core_tata:promoter": 0.5, "x<b>:y": 0.5})
    assert len(panel_heatmap_figure(long, COLUMNS).to_plotly_json()["layout"]["yaxis"]["ticktext"]) == MAX_ROWS
    assert column_header({"column": "t:l", "label": "l"}).endswith("MCC – · AUROC –")


@pytest.mark.parametrize(
    "event, cell",
    [
        ({"selection": {"points": [{"customdata": [2, 1], "x": 1, "y": 2}]}}, (2, 1)),
        ({"selection": {"points": [{"curve_number": 1, "x": 1, "y": 1, "customdata": {"0": 1, "1": 1}}]}}, (1, 1)),  # as the browser sends it
        ({"selection": {"points": [{"x": 0, "y": 4}]}}, (4, 0)),
        ({"selection": {"points": []}}, None),
        ({"selection": {"points": [{"x": 1}]}}, None),
        (None, None),
        ({}, None),
    ],
)
def test_a_click_event_names_its_cell(event, cell):
    assert clicked_cell(event) == cell
