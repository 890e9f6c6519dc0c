"""Chart data builders and figures of the dashboard (lingo_core.plots.charts), on synthetic records,
and the planned budget schedule the charts draw against what a real (tiny) run recorded."""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest

from lingo_core import runs
from lingo_core.plan import BudgetSchedule, schedule_of_run
from lingo_core.plots import charts as dash

MODULES = ["0.attention.self.query", "0.output.dense", "1.attention.self.query"]


def ranks_records() -> list[dict]:
    """Three allocations over three modules of init rank 4: prune, then reintroduce."""
    return [
        {
            "step": 4, "budget": 10,
            "active": {MODULES[0]: 4, MODULES[1]: 3, MODULES[2]: 3},
            "lambdas": {MODULES[0]: [0.5, 0.4, 0.3, 0.2], MODULES[1]: [0.6, 0.1, 0.0, 0.3], MODULES[2]: [0.2, 0.2, 0.0, 0.1]},
            "pruned": {MODULES[0]: [], MODULES[1]: [2], MODULES[2]: [2]},
            "reintroduced": {MODULES[0]: [], MODULES[1]: [], MODULES[2]: []},
            "rho": 0.1, "sampled": {MODULES[0]: [3]},
        },
        {
            "step": 6, "budget": 8,
            "active": {MODULES[0]: 3, MODULES[1]: 3, MODULES[2]: 2},
            "lambdas": {MODULES[0]: [0.5, 0.4, 0.3, 0.0], MODULES[1]: [0.6, 0.1, 0.25, 0.0], MODULES[2]: [0.2, 0.0, 0.0, 0.1]},
            "pruned": {MODULES[0]: [3], MODULES[1]: [3], MODULES[2]: [1]},
            "reintroduced": {MODULES[0]: [], MODULES[1]: [2], MODULES[2]: []},
            "rho": 0.05, "sampled": {MODULES[1]: [2, 99]},
        },
        {
            "step": 8, "budget": 6,
            "active": {MODULES[0]: 2, MODULES[1]: 2, MODULES[2]: 2},
            "lambdas": {MODULES[0]: [0.5, 0.4, 0.0, 0.0], MODULES[1]: [0.6, 0.0, 0.25, 0.0], MODULES[2]: [0.2, 0.0, 0.0, 0.1]},
            "pruned": {MODULES[0]: [2], MODULES[1]: [1], MODULES[2]: []},
            "reintroduced": {MODULES[0]: [], MODULES[1]: [], MODULES[2]: []},
            "rho": 0.0, "sampled": {},
        },
    ]


CONFIG = {"adapter": {"method": "ars", "adalora": {"init_r": 4, "target_r": 2, "tinit": 0.2, "tfinal": 0.2, "deltaT": 2}}}


# -- schedule ----------------------------------------------------------------------------------------------
def test_schedule_of_run_resolves_fractions_and_module_count():
    """The Runs page's curve: the run's config, its total steps and the modules of its first allocation."""
    schedule = schedule_of_run(CONFIG, 20, len(ranks_records()[0]["active"]))
    assert schedule == BudgetSchedule(init_budget=12, target_budget=6, tinit=4, tfinal=4, total_step=20, delta_t=2)
    assert schedule.at(0) == 12 and schedule.at(20) == 6
    steps = dash.schedule_frame(schedule)
    assert list(steps["step"]) == list(range(21)) and steps["scheduled"].is_monotonic_decreasing
    assert list(steps["scheduled"]) == [schedule.at(s) for s in range(21)]


@pytest.mark.parametrize(
    "config, n_modules, total",
    [
        ({"adapter": {"method": "lora"}}, 3, 20),  # no budget
        (CONFIG, 0, 20),  # no allocation yet: no modules known
        (CONFIG, 3, None),  # total_step unknown
        ({"adapter": {"method": "ars", "adalora": {"tinit": 15, "tfinal": 10}}}, 3, 20),  # empty schedule
        ({"adapter": {"method": "ars", "adalora": {"init_r": "eight"}}}, 3, 20),  # broken config
    ],
)
def test_schedule_of_run_is_none_when_there_is_no_schedule(config, n_modules, total):
    assert schedule_of_run(config, total, n_modules) is None


def test_total_step_prefers_report_then_live_progress(tmp_path):
    writer = runs.RunWriter.create(tmp_path, "adapter: {method: ars}\n", "ars", "demo/motifs", "run")
    run = runs.load_run(writer.path)
    assert run.total_step is None
    writer.update_status(progress={"step": 3, "total_step": 40})
    assert run.total_step == 40
    writer.write_report({"total_step": 50})
    assert run.total_step == 50


@pytest.fixture(scope="module")
def tiny_ars_run(tiny_bert_dir, tmp_path_factory):
    """A finished ARS run of the tiny BERT (16 steps, allocations every 2 steps)."""
    from lingo_core.train import train
    from tests.helpers import tiny_config

    path = train(tiny_config(tiny_bert_dir, tmp_path_factory.mktemp("ars_run"), "ars"))
    run = runs.load_run(path)
    assert run.state == "done", run.status.get("error")
    return run


def test_recorded_budget_follows_the_planned_schedule(tiny_ars_run):
    """The curve the Runs page draws is the budget the run allocated, at every allocation."""
    ranks = tiny_ars_run.ranks()
    n_modules = len(ranks[0]["active"])
    schedule = schedule_of_run(tiny_ars_run.config, tiny_ars_run.total_step, n_modules)
    assert schedule is not None and schedule.total_step == 16 == tiny_ars_run.total_step
    assert schedule.init_budget == 4 * n_modules and schedule.target_budget == 2 * n_modules
    assert len(ranks) >= 3 and all(schedule.is_allocation_step(r["step"]) for r in ranks)
    for record in ranks:
        assert record["budget"] == schedule.at(record["step"]), record["step"]
        assert sum(record["active"].values()) == record["budget"]  # ARS fills the budget exactly
    assert ranks[-1]["budget"] == schedule.target_budget  # the final allocation reaches the target
    frame = dash.budget_frame(ranks, schedule)
    assert list(frame["scheduled"]) == list(frame["budget"])


def test_train_page_plan_counts_the_parameters_the_run_trained(tiny_ars_run):
    """The Train page's plan (pages._common.run_plan, an empty model) matches the trained model's count."""
    from pages._common import run_plan

    cfg = tiny_ars_run.typed_config()
    report = tiny_ars_run.report()
    plan = run_plan(json.dumps(cfg.to_dict(), sort_keys=True), 160, tuple(report["label_names"]), False)
    assert plan.parameters["trainable"] == report["parameters"]["trainable"] > 0
    assert plan.parameters["total"] == report["parameters"]["total"]
    assert plan.total_step == tiny_ars_run.total_step
    assert plan.budget_modules == len(tiny_ars_run.ranks()[0]["active"])
    assert plan.schedule == schedule_of_run(tiny_ars_run.config, tiny_ars_run.total_step, plan.budget_modules)


# -- frames ------------------------------------------------------------------------------------------------
def test_budget_frame_sums_active_ranks_and_counts_events():
    schedule = BudgetSchedule(12, 6, 4, 4, 20)
    frame = dash.budget_frame(ranks_records(), schedule)
    assert list(frame["step"]) == [4, 6, 8]
    assert list(frame["active"]) == [10, 8, 6]
    assert list(frame["budget"]) == [10, 8, 6]
    assert list(frame["pruned"]) == [2, 3, 2]
    assert list(frame["reintroduced"]) == [0, 1, 0]
    assert list(frame["scheduled"]) == [schedule.at(s) for s in (4, 6, 8)]
    assert dash.budget_frame([]).empty


def test_rank_heatmap_is_module_by_step_with_gaps_as_nan():
    records = ranks_records()
    records[1]["active"].pop(MODULES[2])
    modules, steps, z = dash.rank_heatmap_data(records)
    assert modules == MODULES and steps == [4, 6, 8]
    assert z.shape == (3, 3)
    assert z[0].tolist() == [4, 3, 2]
    assert math.isnan(z[2, 1])


def test_lambda_frames_mark_pruned_at_previous_value_and_skip_bad_indices():
    values, events = dash.lambda_frames(ranks_records(), MODULES[1])
    assert len(values) == 12 and set(values["index"]) == {0, 1, 2, 3}
    pruned = events[events["kind"] == "pruned"].set_index("step")
    assert pruned.loc[6, "index"] == 3 and pruned.loc[6, "value"] == pytest.approx(0.3)  # last value before pruning
    assert pruned.loc[8, "value"] == pytest.approx(0.1)
    back = events[events["kind"] == "reintroduced"]
    assert back[["step", "index"]].values.tolist() == [[6, 2]] and back["value"].iloc[0] == pytest.approx(0.25)
    sampled = events[events["kind"] == "sampled"]
    assert sampled["index"].tolist() == [2]  # index 99 is out of range and dropped
    empty_values, empty_events = dash.lambda_frames(ranks_records(), "no.such.module")
    assert empty_values.empty and empty_events.empty


@pytest.mark.parametrize(
    "name, expected",
    [
        ("3.attention.self.query", (3, "query")),
        ("1.intermediate.dense", (1, "intermediate.dense")),
        ("0.self_attn.q_proj", (0, "q_proj")),
        ("transformer.h.11.mlp.c_fc", (11, "c_fc")),
        ("classifier", (None, "classifier")),
    ],
)
def test_split_module_finds_layer_and_type(name, expected):
    assert dash.split_module(name) == expected


def test_final_ranks_prefers_the_dev_selected_report_pattern():
    records = ranks_records()
    pattern, source = dash.final_ranks(records, {"final_ranks": {MODULES[0]: 4, MODULES[1]: 1, MODULES[2]: 2}})
    assert pattern[MODULES[1]] == 1 and "dev-selected" in source
    pattern, source = dash.final_ranks(records, None)
    assert pattern == records[-1]["active"] and "step 8" in source
    assert dash.final_ranks([], None) == ({}, "")


def test_rank_pattern_frame_is_layer_by_type():
    frame = dash.rank_pattern_frame({MODULES[0]: 4, MODULES[1]: 1, MODULES[2]: 2})
    assert list(frame.index) == [0, 1] and list(frame.columns) == ["query", "output.dense"]
    assert frame.loc[0, "query"] == 4 and frame.loc[1, "query"] == 2
    assert math.isnan(frame.loc[1, "output.dense"])


def test_metric_frames_skip_missing_and_non_finite_values():
    metrics = [
        {"step": 1, "loss": 0.9},
        {"step": 2, "loss": 0.7},
        {"step": 2, "epoch": 0, "dev_mcc": 0.5, "dev_auroc": float("nan"), "dev_loss": 0.6},
    ]
    assert dash.loss_frame(metrics)["loss"].tolist() == [0.9, 0.7]
    dev = dash.dev_frame(metrics)
    assert sorted(dev["metric"]) == ["loss", "mcc"]
    assert dash.loss_frame([]).empty and dash.dev_frame([]).empty


def summary(**kw) -> dict:
    base = {
        "id": "20261125-153000-ars-demo_motifs-3f2a", "state": "done", "method": "ars", "model": "minilm-l6",
        "task": "demo/motifs", "progress": {"fraction": 1.0}, "best_dev_mcc": 0.812345, "test_mcc": 0.8,
        "test_auroc": 0.9, "test_auprc": 0.91, "trainable_percent": 1.2861, "wall_time_s": 123.456,
    }
    base.update(kw)
    return base


def test_runs_and_compare_tables():
    running = summary(id="20261125-160000-lora-demo_motifs-0001", state="running", progress={"fraction": 0.25}, test_mcc=None, trainable_percent=None, best_dev_mcc=None, method=None)
    damaged = summary(id="broken", state="unknown", damage="status.json holds a list instead of a JSON object", progress=[1, 2])
    table = dash.runs_table([summary(), running, damaged])
    assert list(table.columns) == dash.RUNS_COLUMNS
    assert table["run"].tolist() == ["runs?run=20261125-153000-ars-demo_motifs-3f2a", "runs?run=20261125-160000-lora-demo_motifs-0001", "runs?run=broken"]
    assert table["status"].tolist() == ["done", "running", "damaged"]
    assert table["progress"].tolist() == ["100 %", "25 %", "–"]
    assert table["best dev MCC"].tolist() == ["0.812", "–", "0.812"] and table["method"].iloc[1] == "–"
    assert table["problem"].tolist() == ["", "", "status.json holds a list instead of a JSON object"]
    assert not table.isna().any().any() and "None" not in table.to_numpy().ravel().tolist()  # never a literal None
    compare = dash.compare_table([summary(), running])
    assert list(compare.columns) == dash.COMPARE_COLUMNS
    assert dash.COMPARE_COLUMNS.index("best dev MCC") < dash.COMPARE_COLUMNS.index("wall time (s)")  # not cut off at the right
    assert compare["wall time (s)"].iloc[0] == 123.5 and compare["MCC"].isna().iloc[1]
    assert dash.runs_table([]).empty and dash.compare_table([]).empty
    assert dash.run_link("a b/c") == "runs?run=a%20b%2Fc"


def test_short_run_labels_are_readable_and_unique():
    ids = ["20261125-153000-ars-demo_motifs-3f2a", "20261125-153001-lora-demo_motifs-99aa"]
    assert dash.short_run_labels(ids) == {ids[0]: "ars demo_motifs 3f2a", ids[1]: "lora demo_motifs 99aa"}
    assert dash.short_run_labels(["my-run"]) == {"my-run": "my-run"}


# -- token preview -----------------------------------------------------------------------------------------
def test_token_preview_escapes_everything_and_shows_spans():
    tokens = ["[CLS]", "<script>", "ac", "##gta", "[SEP]"]
    kinds = ["special", "prompt", "sequence", "sequence", "special"]
    spans = [None, None, (0, 2), (2, 5), None]
    html = dash.token_preview_html(tokens, kinds, spans, "ACGTA")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "3–5 · GTA" in html and "lingo-prompt" in html and html.count("lingo-token ") == 5
    summary_ = dash.token_summary(kinds, spans, "ACGTA")
    assert summary_ == {"tokens": 5, "prompt": 1, "special": 2, "sequence": 2, "nucleotides": 5, "covered": 5, "nt_per_token": 2.5}


# -- figures -----------------------------------------------------------------------------------------------
def test_figures_build_from_records_and_from_nothing():
    records = ranks_records()
    schedule = BudgetSchedule(12, 6, 4, 4, 20)
    metrics = [{"step": 1, "loss": 0.9}, {"step": 2, "dev_mcc": 0.4, "dev_loss": 0.7}]
    figures = {
        "loss": dash.loss_figure(dash.loss_frame(metrics)),
        "dev": dash.dev_figure(dash.dev_frame(metrics)),
        "budget": dash.budget_figure(dash.budget_frame(records, schedule), dash.schedule_frame(schedule)),
        "heatmap": dash.rank_heatmap_figure(*dash.rank_heatmap_data(records)),
        "lambda": dash.lambda_figure(*dash.lambda_frames(records, MODULES[1]), MODULES[1]),
        "pattern": dash.rank_pattern_figure(dash.rank_pattern_frame(records[-1]["active"]), zmax=4),
        "compare": dash.compare_figure(dash.compare_table([summary()])),
        "cost": dash.cost_figure(dash.compare_table([summary(), summary(id="x", trainable_percent=0.5)])),
    }
    for name, fig in figures.items():
        assert isinstance(fig, go.Figure), name
        fig.to_json()  # serialisable, as st.plotly_chart needs
    assert len(figures["budget"].data) == 5  # schedule, pruned, reintroduced, active, recorded
    assert len(figures["lambda"].data) == 4 + 3  # four |lambda| lines + three event kinds
    heat = figures["heatmap"].data[0]
    assert np.asarray(heat.z).shape == (3, 3) and list(heat.y) == MODULES
    cells = figures["pattern"].data[0]
    assert list(cells.x) == ["query", "output.dense"] and cells.text[0][0] == "2"
    # nothing recorded yet: still a figure, no crash
    assert isinstance(dash.budget_figure(dash.budget_frame([])), go.Figure)
    assert isinstance(dash.lambda_figure(*dash.lambda_frames([], "m"), "m"), go.Figure)
    assert isinstance(dash.dev_figure(dash.dev_frame([])), go.Figure)


# -- issue 11: charts that read at a glance ------------------------------------------------------------------
def test_budget_chart_draws_the_curves_over_the_bars_on_an_integer_event_axis():
    schedule = BudgetSchedule(12, 6, 4, 4, 20)
    fig = dash.budget_figure(dash.budget_frame(ranks_records(), schedule), dash.schedule_frame(schedule))
    lines = [t for t in fig.data if t.type == "scatter"]
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.yaxis for t in lines} == {"y2"} and {t.yaxis for t in bars} == {"y"}
    assert fig.layout.yaxis2.overlaying == "y"  # plotly draws the overlaying axis's traces on top: b(t) over the bars
    events = fig.layout.yaxis
    assert events.tickformat == "d" and events.dtick >= 1 and events.side == "right" and events.showgrid is False
    assert events.range[1] >= 3 * 3  # at most 3 events per allocation: the bars fill the lower third
    assert events.title.font.color == dash.SECONDARY
    plan_only = dash.budget_figure(dash.budget_frame([]), dash.schedule_frame(schedule))  # the Train page's preview
    assert [t.yaxis for t in plan_only.data] == ["y"] and plan_only.layout.yaxis.title.text == "total rank"


def test_lambda_chart_with_a_single_allocation_shows_points_at_a_whole_step():
    values, events = dash.lambda_frames(ranks_records()[:1], MODULES[0])
    fig = dash.lambda_figure(values, events, MODULES[0])
    lines = [t for t in fig.data if t.name.startswith("λ")]
    assert lines and all("markers" in t.mode for t in lines)
    assert list(fig.layout.xaxis.tickvals) == [4] and list(fig.layout.xaxis.ticktext) == ["4"]
    many = [{**ranks_records()[0], "step": s} for s in range(0, 400, 10)]
    fig = dash.lambda_figure(*dash.lambda_frames(many, MODULES[0]), MODULES[0])
    assert fig.layout.xaxis.tickformat == "d" and all(t.mode == "lines" for t in fig.data if t.name.startswith("λ"))


def test_cost_chart_labels_every_log_tick_and_leaves_room_for_point_labels():
    table = dash.compare_table([summary(trainable_percent=0.2, test_mcc=0.5), summary(id="x", trainable_percent=1.3, test_mcc=0.7), summary(id="y", trainable_percent=12.0, test_mcc=0.8)])
    fig = dash.cost_figure(table)
    axis = fig.layout.xaxis
    assert axis.type == "log" and list(axis.tickvals) == [0.2, 0.5, 1, 2, 5, 10, 20]
    assert list(axis.ticktext) == ["0.2 %", "0.5 %", "1 %", "2 %", "5 %", "10 %", "20 %"]  # never a bare "2 5 1 2 5 10"
    assert fig.data[0].cliponaxis is False and fig.layout.yaxis.range[1] > 0.8 + 0.05  # the top label fits
    close = dash.cost_figure(dash.compare_table([summary(trainable_percent=1.0), summary(id="x", trainable_percent=1.2)]))
    assert close.layout.xaxis.type is None and close.layout.xaxis.ticksuffix == " %"


def test_every_rank_heat_map_uses_one_scale_from_0_to_init_r():
    records = ranks_records()
    heat = dash.rank_heatmap_figure(*dash.rank_heatmap_data(records), zmax=8).data[0]
    pattern = dash.rank_pattern_figure(dash.rank_pattern_frame(records[-1]["active"]), zmax=8).data[0]
    for trace in (heat, pattern):
        assert (trace.zmin, trace.zmax, trace.colorscale[0][1]) == (0, 8, heat.colorscale[0][1])
        assert trace.colorbar.dtick == 1
    auto = dash.rank_heatmap_figure(*dash.rank_heatmap_data(records)).data[0]
    assert auto.zmax == 4  # unknown init_r: the largest rank recorded, never a scale that moves per chart


def test_live_progress_moves_with_the_step_counter_and_the_clock():
    import datetime as dt

    now = 1_800_000_000.0
    stamp = dt.datetime.fromtimestamp(now - 40, dt.timezone.utc).isoformat(timespec="seconds")
    status = {"state": "running", "updated": stamp, "progress": {"step": 5, "total_step": 25, "elapsed_s": 50.0}}
    live = dash.live_progress(status, 9, None, now)
    assert live["step"] == 9 and live["total"] == 25
    assert live["elapsed_s"] == pytest.approx(90.0)  # 50 s at step 5, and 40 s since
    assert live["eta_s"] == pytest.approx(10.0 * (25 - 9))  # 10 s per step, as measured at step 5
    done = dash.live_progress({**status, "state": "done"}, 25, 25, now + 1000)
    assert done["elapsed_s"] == 50.0 and done["eta_s"] is None  # a finished run's clock stops
    assert dash.live_progress({"state": "running"}, 0, None, now) == {"step": 0, "total": None, "elapsed_s": None, "eta_s": None}
    assert [dash.duration_text(s) for s in (None, 45, 600, 3900)] == ["–", "45 s", "10 min", "1 h 05 min"]


def test_poll_interval_backs_off_and_stops():
    assert dash.poll_interval("running", 0) == 2.0
    assert dash.poll_interval("running", 60) == 5.0 and dash.poll_interval("running", 600) == 15.0
    assert dash.poll_interval("queued", 0) == 5.0 and dash.poll_interval("queued", 600) == 15.0
    for state in ("done", "failed", "cancelled", "interrupted", "unknown", None):
        assert dash.poll_interval(state, 0) is None


def test_logo_headroom_keeps_the_tallest_letters_inside_the_frame():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1)
    axes[0].bar([0, 1], [0.3, -0.1])
    axes[0].set_ylim(-0.1, 0.3)  # what logomaker does: limits at the tallest stack exactly
    axes[1].set_ylim(0.0, 1.0)
    dash.logo_headroom(fig)
    low, high = axes[0].get_ylim()
    assert high >= 0.3 + 0.15 * 0.4 - 1e-9 and low <= -0.1 - 0.15 * 0.4 + 1e-9
    assert axes[1].get_ylim()[0] == 0.0 and axes[1].get_ylim()[1] > 1.0
    plt.close(fig)


def test_time_estimate_is_steps_times_the_measured_or_benchmarked_cost():
    from pages._estimate import SETUP_S, Work, benchmarked_cost, estimate, measured_cost, tokens_per_sequence, work_of

    config = {"train": {"batch_size": 16, "grad_accum": 1, "eval_every": 50}}
    report = {"wall_time_s": 600.0, "total_step": 250, "plan": {"eval_every": 50}}
    data = {"token_stats": {"mean_tokens": 62.0}, "counts": {"train": {"total": 2000}, "dev": {"total": 300}, "test": {"total": 300}}}
    cost = measured_cost(config, {"state": "done"}, report, data)
    work = work_of(config, 250, 50, 300, 0, 62.0)
    assert cost == pytest.approx(600.0 / work.units)
    same = work_of(config, 250, 50, 300, 300, 62.0)
    guess = estimate(same, "minilm-l6", [("minilm-l6", cost), ("other-model", 1.0)])
    assert "measured on 1 earlier minilm-l6 run" in guess.basis
    assert guess.seconds == pytest.approx(SETUP_S + 600.0 + cost * 300 * 62.0 / 3)  # plus the test evaluation
    assert guess.per_step_s == pytest.approx(cost * 16 * 62.0)
    twice = estimate(work_of(config, 500, 50, 300, 300, 62.0), "minilm-l6", [("minilm-l6", cost)])
    assert twice.seconds > 1.8 * (guess.seconds - SETUP_S)  # twice the steps: about twice the time
    bench = estimate(same, "minilm-l6", [], gflops=184.0)
    assert "benchmarked" in bench.basis and bench.per_step_s == pytest.approx(0.51 / 1024 * 16 * 62.0)
    slower = estimate(same, "minilm-l6", [], gflops=92.0)
    assert slower.seconds - SETUP_S == pytest.approx(2 * (bench.seconds - SETUP_S))  # half the speed here: twice the time
    assert estimate(same, "some/unknown-model", [], gflops=184.0) is None  # size unknown until the model is loaded
    assert estimate(same, "some/unknown-model", [], model_params=45.4e6, gflops=184.0).per_step_s == pytest.approx(2 * bench.per_step_s)
    assert tokens_per_sequence(100, "native", 6, 512) == pytest.approx(14 + 100 / 2.07)
    assert tokens_per_sequence(10_000, "nucleotide", 6, 512) == 512
    assert benchmarked_cost(22.7e6, 184.0) == pytest.approx(0.51 / 1024)
    assert isinstance(work, Work)
