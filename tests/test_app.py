"""The dashboard pages under ``streamlit.testing.v1.AppTest``, and the background launcher.

Every page is rendered through ``app.py`` (``st.navigation``) against a temporary runs folder
(``dashboard_runs_dir``: ``LINGO_RUNS_DIR`` set, the launch queue paused so nothing trains).
Finished runs are written by hand (``fake_run``) or trained in seconds with a tiny BERT.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from lingo_core import launcher, runs
from lingo_core.adapters import MethodSpec, has_rank_budget, register_method, unregister_method
from lingo_core.config import config_from_dict, save_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP = str(PROJECT_ROOT / "app.py")
MODULES = [f"{layer}.attention.self.{kind}" for layer in (0, 1) for kind in ("query", "value")]

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402


# -- helpers -----------------------------------------------------------------------------------------------
def app(page: str, timeout: float = 180) -> AppTest:
    """The app opened on ``pages/<page>.py``."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def chart_keys(at: AppTest) -> set:
    return {c.key for c in at.get("plotly_chart")}


def trace_values(values) -> list:
    """A plotly trace's x or y as a list (plotly.js specs carry numeric arrays as base64 ``bdata``)."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def fake_run(root: Path, name: str, state: str = "done", method: str = "ars", **status) -> Path:
    """A run directory with metrics, rank allocations and a report, written without training."""
    budget = {"init_r": 4, "target_r": 2, "tinit": 2, "tfinal": 2, "deltaT": 2}
    cfg = config_from_dict({"adapter": {"method": method, "adalora": budget}, "output_dir": str(root)})
    writer = runs.RunWriter.create(root, save_config(cfg), method, "demo/motifs", name)
    for step in range(1, 11):
        writer.log_metrics({"step": step, "epoch": step / 10, "loss": 1.0 / step, "lr": 1e-3})
        if step % 5 == 0:
            writer.log_metrics({"step": step, "epoch": 0, "dev_mcc": 0.1 * step, "dev_auroc": 0.7, "dev_auprc": 0.7, "dev_loss": 0.5})
    if has_rank_budget(method):
        for step, rank in ((4, 4), (6, 3), (8, 2)):
            writer.log_ranks(
                {
                    "step": step, "budget": rank * len(MODULES),
                    "active": {m: rank for m in MODULES},
                    "lambdas": {m: [0.3, 0.2, 0.1, 0.05][:rank] + [0.0] * (4 - rank) for m in MODULES},
                    "pruned": {m: [rank] if rank < 4 else [] for m in MODULES},
                    "reintroduced": {m: [] for m in MODULES},
                }
            )
    progress = {"step": 10, "total_step": 10, "fraction": 1.0, "elapsed_s": 12.0, "eta_s": 0.0}
    if state == "done":
        writer.write_report(
            {
                "total_step": 10, "selected_step": 10, "test": {"mcc": 0.5, "auroc": 0.8, "auprc": 0.75, "accuracy": 0.7},
                "parameters": {"trainable": 1000, "total": 100000, "percent": 1.0}, "wall_time_s": 12.0,
                "label_names": ["negative", "positive"], "final_ranks": {m: 2 for m in MODULES},
            }
        )
    writer.set_status(state, progress=progress, **status)
    return writer.path


@pytest.fixture(scope="module")
def trained_run(tiny_bert_dir, tmp_path_factory) -> Path:
    """A finished ARS run of the tiny BERT (seconds), with an exported adapter."""
    from lingo_core.train import train
    from tests.helpers import tiny_config

    out = tmp_path_factory.mktemp("trained")
    cfg = tiny_config(tiny_bert_dir, out, "ars", train={"max_steps": 6, "eval_every": 3}, adapter={"adalora": {"tinit": 1, "tfinal": 1}})
    path = train(cfg)
    assert runs.load_run(path).state == "done"
    return path


def install(run_dir: Path, runs_dir: Path) -> Path:
    """Copy a run into the dashboard's runs folder."""
    target = runs_dir / run_dir.name
    shutil.copytree(run_dir, target)
    return target


# -- every page renders, with and without runs ----------------------------------------------------------------
@pytest.mark.parametrize("page", ["home", "runs", "predict", "attribute", "compare"])
def test_pages_render_without_any_run(dashboard_runs_dir, page):
    at = app(page)
    no_exception(at)
    assert at.title and at.info  # says what to do next


def test_home_lists_runs_and_quickstart_queues_a_run(dashboard_runs_dir):
    fake_run(dashboard_runs_dir, "20261125-100000-ars-demo_motifs-aaaa")
    at = app("home")
    assert len(at.dataframe) == 1
    assert "adaptive rank sampling" in texts(at.markdown)
    at.button(key="home_quickstart").click().run()
    no_exception(at)
    created = [r for r in runs.list_runs(dashboard_runs_dir) if r.id != "20261125-100000-ars-demo_motifs-aaaa"]
    assert len(created) == 1 and created[0].state == "queued"
    assert created[0].config["data"]["task"] == "demo/motifs" and created[0].config["model"]["name"] == "minilm-l6"
    assert "Queued" in texts(at.success)


# -- Train -------------------------------------------------------------------------------------------------------
def test_train_page_preview_count_and_launch_creates_a_run_directory(dashboard_runs_dir):
    from lingo_core.plan import plan_run

    at = app("train")
    no_exception(at)
    for key in ("train_task", "train_model", "train_prefix", "train_device"):
        assert at.selectbox(key=key) is not None
    for key in ("train_source", "train_seq_mode", "train_method", "train_ars_reintroduce", "train_ars_mode"):
        assert at.radio(key=key) is not None
    # the quickstart's ARS settings, one control per settings field, keyed train_<section>_<field>
    quickstart = {"train_adalora_init_r": 8, "train_adalora_target_r": 4, "train_adalora_deltaT": 10, "train_adalora_tinit": 0.1, "train_adalora_tfinal": 0.2}
    for key, value in quickstart.items():
        assert at.number_input(key=key).value == pytest.approx(value), key
    for key in ("train_max_steps", "train_batch", "train_lr"):
        assert at.number_input(key=key) is not None
    assert at.number_input(key="train_ars_reintroduce_rate").value == pytest.approx(0.1)
    assert at.text_input(key="train_ars_temperature").value == "1.0"
    assert at.checkbox(key="train_ars_rho_decay").value is True
    assert "More AdaLoRA settings" in [e.label for e in at.expander]
    assert "train_lora_target_modules" not in {w.key for w in at.text_input}  # ui=False
    assert at.selectbox(key="train_task").value == "demo/motifs"
    preview = texts(at.get("html"))
    assert "lingo-token" in preview and "lingo-prompt" in preview and "[CLS]" in preview
    assert "Domain: Synthetic Motifs" in texts(at.code)
    labels = {m.label: m.value for m in at.metric}
    assert labels["Trainable parameters"].replace(",", "").isdigit()
    assert "train_schedule_chart" in chart_keys(at)

    # the prefix edits the preview live
    at.selectbox(key="train_prefix").set_value("custom").run()
    at.text_area(key="train_template").set_value("Organism DNA. Sequence: {sequence} Is it a promoter?").run()
    no_exception(at)
    assert "Is it a promoter?" in texts(at.code) and "organism" in texts(at.get("html"))
    at.text_area(key="train_template").set_value("{sequence} {__class__}").run()
    assert "unknown field" in texts(at.error)
    assert at.button(key="train_launch").disabled
    at.selectbox(key="train_prefix").set_value("paper").run()

    # a temperature is a number or 'uniform'; anything else is a settings error
    at.text_input(key="train_ars_temperature").set_value("warm").run()
    assert "adapter.ars.temperature" in texts(at.error) and at.button(key="train_launch").disabled
    at.text_input(key="train_ars_temperature").set_value("uniform").run()
    at.number_input(key="train_adalora_tinit").set_value(2.0).run()  # >= 1: a step count, written as an int

    at.number_input(key="train_max_steps").set_value(20).run()
    at.text_input(key="train_run_name").set_value("../escape").run()
    assert "Run name" in texts(at.error) and at.button(key="train_launch").disabled
    at.text_input(key="train_run_name").set_value("apptest-run").run()
    assert not at.button(key="train_launch").disabled
    shown = {m.label: m.value for m in at.metric}
    spec = json.loads(next(c for c in at.get("plotly_chart") if c.key == "train_schedule_chart").proto.spec)
    at.button(key="train_launch").click().run()
    no_exception(at)
    run = runs.load_run(dashboard_runs_dir / "apptest-run")
    assert run.state == "queued"
    assert run.config["train"]["max_steps"] == 20 and run.config["adapter"]["method"] == "ars"
    assert run.config["adapter"]["ars"]["temperature"] == "uniform" and run.config["adapter"]["adalora"]["tinit"] == 2
    assert run.config["output_dir"] == str(dashboard_runs_dir)
    assert "apptest-run" in texts(at.success)
    # what the page showed is the plan of the config it wrote
    plan = plan_run(run.typed_config(), 1000, ["negative", "positive"])
    assert shown["Optimizer steps"] == "20" and shown["Schedule"] == "tinit 2 · tfinal 4"
    assert shown["Trainable parameters"] == f"{plan.parameters['trainable']:,}"
    curve = trace_values(next(trace for trace in spec["data"] if trace["name"] == "cubic schedule b(t)")["y"])
    assert curve == plan.schedule.curve()[1] and curve[0] == 8 * plan.budget_modules

    # the queue panel lists it and cancels it
    at.button(key="cancel_apptest-run").click().run()
    assert runs.load_run(run.path).state == "cancelled"


def test_train_page_method_settings_follow_the_method(dashboard_runs_dir):
    at = app("train")
    at.radio(key="train_method").set_value("lora").run()
    no_exception(at)
    keys = {w.key for w in at.number_input}
    assert {"train_lora_r", "train_lora_lora_alpha", "train_lora_lora_dropout"} <= keys and "train_adalora_init_r" not in keys
    assert "train_schedule_chart" not in chart_keys(at) and "Schedule" not in {m.label for m in at.metric}
    at.radio(key="train_method").set_value("adalora").run()
    keys = {w.key for w in at.number_input}
    assert "train_adalora_init_r" in keys and "train_ars_reintroduce_rate" not in keys
    assert "train_lora_r" not in keys and "train_lora_lora_alpha" in keys  # AdaLoRA's rank is init_r, not LoRA's r
    at.radio(key="train_method").set_value("head").run()
    no_exception(at)
    assert not [w.key for w in at.number_input if w.key.startswith(("train_lora_", "train_adalora_", "train_ars_"))]
    assert "Trainable parameters" in {m.label for m in at.metric}
    at.radio(key="train_method").set_value("adalora").run()
    # a schedule that cannot fit the steps is reported before launch
    at.number_input(key="train_max_steps").set_value(3).run()
    at.number_input(key="train_adalora_tinit").set_value(2.0).run()
    assert "Budget schedule" in texts(at.error)
    assert at.button(key="train_launch").disabled


@dataclasses.dataclass
class ToySettings:
    width: int = dataclasses.field(default=3, metadata={"label": "Toy width", "help": "how wide the toy is", "min": 1, "max": 9})


@dataclasses.dataclass
class ToyChildSettings:
    depth: int = dataclasses.field(default=2, metadata={"label": "Toy depth", "min": 1, "max": 9})
    secret: int = dataclasses.field(default=0, metadata={"ui": False})


@pytest.fixture
def toy_methods():
    """``toy`` (one int setting) and ``toy_child`` (extends toy), registered from outside the package.

    The model is the head-only baseline's: enough for the page to plan the run.
    """
    head = "lingo_core.adapters.head.model:HeadOnly"
    register_method(MethodSpec(name="toy", summary="Toy: a method registered by a test", model=head, settings=ToySettings))
    register_method(MethodSpec(name="toy_child", summary="ToyChild: extends toy", model=head, settings=ToyChildSettings, extends="toy"))
    yield
    unregister_method("toy_child")
    unregister_method("toy")


def test_train_page_lists_a_registered_method_with_its_settings(dashboard_runs_dir, toy_methods):
    at = app("train")
    no_exception(at)
    assert {"TOY", "TOY_CHILD"} <= set(at.radio(key="train_method").options)
    at.radio(key="train_method").set_value("toy").run()
    no_exception(at)
    assert "Toy: a method registered by a test" in texts(at.caption)
    width = at.number_input(key="train_toy_width")
    assert width.label == "Toy width" and width.value == 3 and width.max == 9
    assert "Trainable parameters" in {m.label for m in at.metric}  # planned with the toy's model
    width.set_value(5).run()
    at.text_input(key="train_run_name").set_value("toy-run").run()
    at.button(key="train_launch").click().run()
    no_exception(at)
    config = runs.load_run(dashboard_runs_dir / "toy-run").config
    assert config["adapter"]["method"] == "toy" and config["adapter"]["toy"] == {"width": 5}

    # a method that extends another shows both sections, its own last; ui=False fields stay hidden
    at.radio(key="train_method").set_value("toy_child").run()
    no_exception(at)
    keys = [w.key for w in at.number_input if w.key.startswith("train_toy")]
    assert keys == ["train_toy_width", "train_toy_child_depth"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.csv", b"seq,label\nACGT,1\n", "missing column"),
        ("bad_chars.csv", b"sequence,label\nACGTQQ,1\nACGT,0\n", "invalid character"),
        ("nolabel.fasta", b">a\nACGT\n>b\nACGA\n", "has no label"),
        ("binary.csv", bytes(range(256)) * 4, "cannot"),
        ("empty.csv", b"", "empty"),
    ],
)
def test_train_page_invalid_upload_gives_an_inline_error(dashboard_runs_dir, name, content, message):
    at = app("train")
    at.radio(key="train_source").set_value("Upload a CSV or FASTA file").run()
    at.file_uploader(key="train_upload").upload(name, content, "text/plain").run()
    no_exception(at)
    assert message in texts(at.error).lower()
    assert at.button(key="train_launch").disabled
    assert not runs.list_runs(dashboard_runs_dir)


def test_train_page_valid_upload_is_saved_next_to_the_runs_folder(dashboard_runs_dir):
    rows = ["sequence,label"] + [f"{'ACGT' * 5}{'A' * (i % 7)},{i % 2}" for i in range(60)]
    at = app("train")
    at.radio(key="train_source").set_value("Upload a CSV or FASTA file").run()
    at.file_uploader(key="train_upload").upload("../../my data.csv", "\n".join(rows).encode(), "text/csv").run()
    no_exception(at)
    assert "48 / 6 / 6" in texts(at.success)
    saved = list((dashboard_runs_dir.parent / "uploads").iterdir())
    assert len(saved) == 1 and saved[0].name.endswith("-my_data.csv")


def test_upload_size_limit_and_file_names():
    from pages._common import UPLOAD_LIMIT_MB, sanitize_filename, upload_too_big

    assert upload_too_big(UPLOAD_LIMIT_MB * 1024 * 1024) is None
    assert "accepts files up to" in upload_too_big(UPLOAD_LIMIT_MB * 1024 * 1024 + 1)
    assert sanitize_filename("../../etc/passwd") == "passwd"
    assert sanitize_filename("..\\..\\x y;rm -rf.fa") == "x_y_rm_-rf.fa"
    assert sanitize_filename(".hidden") == "hidden"
    toml = (PROJECT_ROOT / ".streamlit" / "config.toml").read_text()
    assert 'address = "localhost"' in toml and f"maxUploadSize = {UPLOAD_LIMIT_MB}" in toml


# -- Runs ------------------------------------------------------------------------------------------------------------
def test_runs_page_shows_curves_budget_heatmap_lambdas_and_final_pattern(dashboard_runs_dir):
    fake_run(dashboard_runs_dir, "20261125-100000-ars-demo_motifs-aaaa")
    at = app("runs")
    no_exception(at)
    assert {"runs_loss", "runs_dev", "runs_budget", "runs_heatmap", "runs_lambda", "runs_final"} <= chart_keys(at)
    heat = next(c for c in at.get("plotly_chart") if c.key == "runs_heatmap")
    spec = json.loads(heat.proto.spec)
    assert spec["data"][0]["type"] == "heatmap" and spec["data"][0]["y"] == MODULES
    assert at.selectbox(key="runs_lambda_module").options == MODULES
    at.selectbox(key="runs_lambda_module").set_value(MODULES[2]).run()
    no_exception(at)
    assert "3 allocations" in texts(at.caption)
    assert not [b for b in at.button if b.key in ("runs_cancel", "runs_resume")]


def test_runs_and_compare_pages_survive_a_run_with_a_broken_config(dashboard_runs_dir):
    """A config that no longer validates (here: a rank that is not a number) must not crash a page:
    the charts are drawn without the planned curve and colour-scale maximum."""
    path = fake_run(dashboard_runs_dir, "20261125-100000-ars-demo_motifs-bad")
    config = yaml.safe_load((path / runs.CONFIG).read_text())
    config["adapter"]["adalora"]["init_r"] = "eight"
    (path / runs.CONFIG).write_text(yaml.safe_dump(config))
    for page in ("runs", "compare"):
        at = app(page)
        no_exception(at)
    at = app("runs")
    assert {"runs_budget", "runs_heatmap", "runs_final"} <= chart_keys(at)
    budget = json.loads(next(c for c in at.get("plotly_chart") if c.key == "runs_budget").proto.spec)
    assert "cubic schedule b(t)" not in [trace["name"] for trace in budget["data"]]


def test_runs_page_draws_the_planned_schedule_and_no_budget_for_lora(dashboard_runs_dir):
    fake_run(dashboard_runs_dir, "20261125-100000-ars-demo_motifs-aaaa")
    at = app("runs")
    budget = json.loads(next(c for c in at.get("plotly_chart") if c.key == "runs_budget").proto.spec)
    curve = next(trace for trace in budget["data"] if trace["name"] == "cubic schedule b(t)")
    # 4 modules x init_r 4 until tinit (2 steps of 10), 4 x target_r 2 for the last tfinal (2) steps
    values = trace_values(curve["y"])
    assert len(values) == 11 and values[0] == 16 and values[-1] == 8
    final = json.loads(next(c for c in at.get("plotly_chart") if c.key == "runs_final").proto.spec)
    assert final["data"][0]["zmax"] == 4  # the colour scale tops out at init_r
    fake_run(dashboard_runs_dir, "20261125-100001-lora-demo_motifs-bbbb", method="lora")
    at = app("runs")  # the newest run: LoRA
    no_exception(at)
    assert "LoRA: a fixed rank r" in texts(at.info) and "no rank budget" in texts(at.info)
    assert "runs_budget" not in chart_keys(at)


def test_runs_page_live_run_can_be_cancelled(dashboard_runs_dir):
    path = fake_run(dashboard_runs_dir, "20261125-100000-ars-demo_motifs-live", state="running", pid=os.getpid())
    at = app("runs")
    no_exception(at)
    assert "refreshes every" in texts(at.caption)
    at.button(key="runs_cancel").click().run()
    assert (path / runs.CANCEL).exists()


def test_runs_page_failed_run_shows_error_and_traceback(dashboard_runs_dir):
    fake_run(dashboard_runs_dir, "20261125-100000-ars-demo_motifs-fail", state="failed", error="ValueError: boom", traceback="Traceback (most recent call last):\n  ...\nValueError: boom")
    at = app("runs")
    no_exception(at)
    assert "ValueError: boom" in texts(at.error)
    assert "Traceback" in texts(at.code)


def test_runs_page_killed_run_can_be_resumed(dashboard_runs_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = fake_run(dashboard_runs_dir, "20261125-100000-ars-demo_motifs-kill", state="running", pid=dead.pid)
    (path / runs.CHECKPOINT).mkdir()
    (path / runs.CHECKPOINT / runs.STATE_FILE).write_bytes(b"checkpoint")
    at = app("runs")
    no_exception(at)
    assert "process is gone" in texts(at.warning)
    at.button(key="runs_resume").click().run()
    no_exception(at)
    status = runs.load_run(path).status
    assert status["state"] == "queued" and status["resume"] is True


# -- Compare ----------------------------------------------------------------------------------------------------------
def test_compare_page_table_charts_and_patterns(dashboard_runs_dir):
    fake_run(dashboard_runs_dir, "20261125-100000-ars-demo_motifs-aaaa")
    fake_run(dashboard_runs_dir, "20261125-100001-lora-demo_motifs-bbbb", method="lora")
    at = app("compare")
    no_exception(at)
    assert len(at.multiselect(key="compare_runs").value) == 2
    table = at.dataframe[0].value
    assert list(table["method"]) == ["lora", "ars"] and list(table["MCC"]) == [0.5, 0.5]
    assert {"compare_metrics", "compare_cost", "compare_pattern_20261125-100000-ars-demo_motifs-aaaa"} <= chart_keys(at)
    assert at.get("download_button")


# -- Predict and Attribute (a real tiny model) -------------------------------------------------------------------------
def test_predict_page_scores_pasted_sequences_and_lists_problems(dashboard_runs_dir, trained_run):
    install(trained_run, dashboard_runs_dir)
    at = app("predict")
    no_exception(at)
    at.text_area(key="predict_text").set_value(">good\nACGTTATAAAGGCCAATCGT\n>bad\nACGTXXACGT\n").run()
    at.button(key="predict_go").click().run()
    no_exception(at)
    frame = at.dataframe[0].value
    assert list(frame["id"]) == ["good", "bad"]
    assert 0.0 <= frame["prob_positive"].iloc[0] <= 1.0 and frame["predicted"].iloc[0] in ("negative", "positive")
    assert "invalid character 'X'" in frame["error"].iloc[1]
    assert "could not be scored" in texts(at.warning) and "'bad'" in texts(at.markdown)
    assert at.get("download_button")


@pytest.mark.parametrize(
    "name, content",
    [("notfasta.fa", b"ACGT\n>x\nACGT\n"), ("wrong.csv", b"id,seq\na,ACGT\n"), ("binary.fa", bytes(range(256)) * 4)],
)
def test_predict_page_invalid_upload_gives_an_error(dashboard_runs_dir, trained_run, name, content):
    install(trained_run, dashboard_runs_dir)
    at = app("predict")
    at.radio(key="predict_source").set_value("Upload FASTA or CSV").run()
    at.file_uploader(key="predict_upload").upload(name, content).run()
    no_exception(at)
    assert "cannot be read" in texts(at.error)
    assert at.button(key="predict_go").disabled


def test_attribute_page_heatmap_prompt_share_and_downloads(dashboard_runs_dir, trained_run):
    install(trained_run, dashboard_runs_dir)
    at = app("attribute")
    no_exception(at)
    at.text_area(key="attr_text").set_value("ACGTTATAAAGGCCAATCGTACGT").run()
    at.slider(key="attr_steps").set_value(8).run()
    at.button(key="attr_go").click().run()
    no_exception(at)
    labels = {m.label for m in at.metric}
    assert {"Prompt share of |IG|", "IG vs ISM Pearson r"} <= labels
    assert {"attr_heatmap", "attr_track", "attr_prompt_chart", "attr_ism"} <= chart_keys(at)
    heat = json.loads(next(c for c in at.get("plotly_chart") if c.key == "attr_heatmap").proto.spec)
    assert heat["data"][0]["y"] == ["IG", "ISM"]
    assert len(at.get("download_button")) == 2
    # a test-set sequence of the run's own task (with its planted motifs)
    at.radio(key="attr_source").set_value("From the run's test set").run()
    no_exception(at)
    assert at.selectbox(key="attr_test_index") is not None


def test_attribute_page_rejects_invalid_sequences(dashboard_runs_dir, trained_run):
    install(trained_run, dashboard_runs_dir)
    at = app("attribute")
    at.text_area(key="attr_text").set_value("ACGT<b>ZZ").run()
    no_exception(at)
    assert "invalid character" in texts(at.error)
    assert at.button(key="attr_go").disabled


# -- the launcher ------------------------------------------------------------------------------------------------------
def _cfg(root: Path):
    return config_from_dict({"train": {"max_steps": 3}, "output_dir": str(root)})


def test_launcher_queue_runs_one_at_a_time_and_settles_dead_starts(tmp_path, monkeypatch):
    """Two queued runs with one slot start one after the other; a process that dies before
    training starts leaves its run failed with the log, not queued forever."""
    monkeypatch.setenv("LINGO_MAX_PARALLEL", "1")
    monkeypatch.setattr(launcher, "kick", lambda root: None)
    first = launcher.launch(_cfg(tmp_path), tmp_path)
    time.sleep(1.1)  # run ids and queue order are stamped to the second
    second = launcher.launch(_cfg(tmp_path), tmp_path, allow_duplicate=True)
    started: dict[str, tuple[float, subprocess.Popen]] = {}

    def fake_start(run):  # a "training" process that exits at once without training
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.0); print('no training here')"], stdout=open(run.path / runs.LOG, "ab"))
        started[run.id] = (time.time(), proc)
        runs.RunWriter(run.path).update_status(launch_pid=proc.pid)
        assert sum(launcher.is_active(r) for r in runs.list_runs(tmp_path)) <= 1
        return proc

    monkeypatch.setattr(launcher, "start", fake_start)
    launcher.drain(tmp_path, poll_s=0.1)
    assert list(started) == [first.name, second.name]
    assert started[second.name][0] >= started[first.name][0] + 1.0  # waited for the slot
    started[second.name][1].wait()
    launcher._settle_dead_starts(runs.list_runs(tmp_path), {})
    for path in (first, second):
        status = runs.load_run(path).status
        assert status["state"] == "failed" and "before training started" in status["error"]
        assert "no training here" in status["traceback"]


def test_launcher_cancel_resume_and_paused_queue(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGO_MAX_PARALLEL", "0")
    assert launcher.kick(tmp_path) is None  # paused: no queue runner
    path = launcher.launch(_cfg(tmp_path), tmp_path)
    run = runs.load_run(path)
    assert run.state == "queued" and yaml.safe_load((path / runs.CONFIG).read_text())["output_dir"] == str(tmp_path)
    assert [r.id for r in launcher.queue(tmp_path)] == [path.name]
    with pytest.raises(RuntimeError, match="cannot be resumed"):
        launcher.resume(path)
    assert launcher.cancel(path) == "cancelled"
    assert launcher.cancel(path) == "cancelled"  # idempotent
    with pytest.raises(RuntimeError, match="no checkpoint"):
        launcher.resume(path)
    (path / runs.CHECKPOINT).mkdir()
    (path / runs.CHECKPOINT / runs.STATE_FILE).write_bytes(b"x")
    launcher.resume(path)
    status = runs.load_run(path).status
    assert status["state"] == "queued" and status["resume"] and not (path / runs.CANCEL).exists()
    with pytest.raises(ValueError, match="run_name"):
        launcher.launch(config_from_dict({"run_name": "../outside"}), tmp_path)
    assert not (tmp_path.parent / "outside").exists()
    monkeypatch.setenv("LINGO_MAX_PARALLEL", "two")
    assert launcher.max_parallel() == 1
    monkeypatch.setenv("LINGO_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert launcher.runs_root() == (tmp_path / "elsewhere").resolve()
    assert launcher.uploads_root() == (tmp_path / "uploads").resolve()


def test_launch_refuses_an_identical_queued_or_running_config(tmp_path, monkeypatch):
    """A double click must not queue the same hours of work twice: the second launch of an
    identical config raises DuplicateRunError naming the first, unless duplicates are allowed."""
    monkeypatch.setenv("LINGO_MAX_PARALLEL", "0")
    first = launcher.launch(_cfg(tmp_path), tmp_path)
    with pytest.raises(launcher.DuplicateRunError) as caught:
        launcher.launch(_cfg(tmp_path), tmp_path)
    assert caught.value.run.id == first.name and "already queued" in str(caught.value)
    assert len(runs.list_runs(tmp_path)) == 1
    # the progress bar, the run name and the folder do not make a run different; a setting does
    same = config_from_dict({"train": {"max_steps": 3, "progress_bar": False}, "run_name": "other-name"})
    assert launcher.identical_active_run(same, tmp_path).id == first.name
    assert launcher.identical_active_run(config_from_dict({"train": {"max_steps": 4}}), tmp_path) is None
    second = launcher.launch(_cfg(tmp_path), tmp_path, allow_duplicate=True)
    assert {r.id for r in runs.list_runs(tmp_path)} == {first.name, second.name}
    # once the first is no longer queued or running, the same config launches again
    launcher.cancel(first)
    launcher.cancel(second)
    third = launcher.launch(_cfg(tmp_path), tmp_path)
    assert runs.load_run(third).state == "queued"


def test_list_runs_newest_first_by_creation_time_not_by_name(tmp_path):
    """Named runs used to sort first (by id); the order is when each run was made."""
    old = fake_run(tmp_path, "20261125-100000-ars-demo_motifs-aaaa")
    named = fake_run(tmp_path, "zzz-named-first")
    newest = fake_run(tmp_path, "aaa-named-last")
    for path, created in ((old, "2026-11-25T10:00:00+00:00"), (named, "2026-11-25T09:00:00+00:00"), (newest, "2026-11-26T08:00:00+00:00")):
        status = json.loads((path / runs.STATUS).read_text())
        (path / runs.STATUS).write_text(json.dumps({**status, "created": created}))
    (newest.parent / "damaged").mkdir()
    (newest.parent / "damaged" / runs.CONFIG).write_text("adapter: {method: ars}\n")
    (newest.parent / "damaged" / runs.STATUS).write_text("[1, 2]")  # no creation time: config.yaml's mtime (now)
    assert [r.id for r in runs.list_runs(tmp_path)] == ["damaged", newest.name, old.name, named.name]


@pytest.mark.parametrize("garbage", ["[1, 2, 3]", "not json at all", "\"queued\"", '{"state": ["queued"]}', '{"state": "queued", "launch_pid": "abc"}'])
def test_queue_runner_survives_a_damaged_status(tmp_path, monkeypatch, garbage):
    """A list-valued or garbage status.json used to kill the queue runner, leaving queued runs queued
    forever: the runner skips the damaged run and starts the good one."""
    monkeypatch.setenv("LINGO_MAX_PARALLEL", "1")
    monkeypatch.setattr(launcher, "kick", lambda root: None)
    bad = launcher.launch(config_from_dict({"train": {"max_steps": 5}}), tmp_path)
    (bad / runs.STATUS).write_text(garbage)
    good = launcher.launch(_cfg(tmp_path), tmp_path)
    started = []

    def fake_start(run):
        started.append(run.id)
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        runs.RunWriter(run.path).update_status(launch_pid=proc.pid)
        return proc

    monkeypatch.setattr(launcher, "start", fake_start)
    launcher.drain(tmp_path, poll_s=0.05)
    assert good.name in started
    if "launch_pid" in garbage:  # a queued run whose launch pid is not a number: never started, so it starts
        assert started.count(bad.name) == 1
    else:  # not a readable status: never started, and never the end of the queue
        assert bad.name not in started and runs.load_run(bad).state == "unknown"


def test_queue_runner_goes_on_when_one_run_cannot_start(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGO_MAX_PARALLEL", "1")
    monkeypatch.setattr(launcher, "kick", lambda root: None)
    first = launcher.launch(_cfg(tmp_path), tmp_path)
    time.sleep(1.1)
    second = launcher.launch(config_from_dict({"train": {"max_steps": 4}}), tmp_path)
    started = []

    def fake_start(run):
        if run.id == first.name:
            raise OSError("disk gone")
        started.append(run.id)
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        runs.RunWriter(run.path).update_status(launch_pid=proc.pid)
        return proc

    monkeypatch.setattr(launcher, "start", fake_start)
    launcher.drain(tmp_path, poll_s=0.05)
    assert started == [second.name]
    status = runs.load_run(first).status
    assert status["state"] == "failed" and "disk gone" in status["error"]
