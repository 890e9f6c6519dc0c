"""Runs / rank dynamics: one run, live while it trains (polled with ``st.fragment(run_every=...)``)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from lingo_core import launcher
from lingo_core.adapters import get_method, has_rank_budget
from lingo_core.plan import schedule_of_run
from lingo_core.plots import charts as dash
from lingo_core.runs import Run, load_run
from pages._common import all_runs, initial_rank, pick_run, show_exception, state_text

POLL_S = 2.0
LIVE = ("queued", "running")

st.title("Runs and rank dynamics")
runs = all_runs()
if not runs:
    st.info("No runs yet.")
    st.page_link("pages/train.py", label="Launch one on the Train page", icon=":material/rocket_launch:")
    st.stop()

selected = pick_run("Run", runs, key="runs_pick")
assert selected is not None
live = selected.state in LIVE


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def header(run: Run, status: dict, metrics: list[dict]) -> None:
    """State, what the run is, progress and the cancel/resume actions."""
    state = status.get("state", "unknown")
    st.markdown(f"**{state_text(state)}** · method **{run.method}** · model **{run.model_name}** · task **{run.task}**")
    progress = status.get("progress") or {}
    total = run.total_step
    step = max([progress.get("step") or 0] + [m.get("step", 0) for m in metrics[-5:]])
    if state == "queued":
        position = next((i + 1 for i, r in enumerate(launcher.queue(run.path.parent)) if r.id == run.id), None)
        st.progress(0.0, text="queued" + (f" (position {position})" if position else "; starting"))
    elif total:
        fraction = min(1.0, step / total)
        text = f"step {step}/{total} · elapsed {_duration(progress.get('elapsed_s'))}"
        if state == "running" and progress.get("eta_s") is not None:
            text += f" · about {_duration(progress.get('eta_s'))} left"
        st.progress(fraction, text=text)
    elif step:
        st.progress(0.0, text=f"step {step} · total not known yet")
    else:
        st.progress(0.0, text="loading data and model…" if state == "running" else state)

    c1, c2, _ = st.columns([1, 1, 4])
    if state in LIVE and c1.button("Cancel run", key="runs_cancel"):
        new_state = launcher.cancel(run.path)
        st.toast("Cancelled." if new_state == "cancelled" else "Cancel requested: the run stops after its current step.")
    if run.resumable and c2.button("Resume run", key="runs_resume", type="primary"):
        try:
            launcher.resume(run.path)
        except (RuntimeError, OSError) as exc:
            show_exception("Could not resume", exc)
        else:
            st.rerun()
    if state == "failed":
        st.error(f"The run failed: {status.get('error')}")
        if status.get("traceback"):
            with st.expander("Traceback", expanded=True):
                st.code(status["traceback"], language=None)
    elif state == "interrupted":
        st.warning(
            "The training process is gone (killed or the machine restarted) before the run finished."
            + (" Resume continues from the last checkpoint." if run.resumable else " It saved no checkpoint to resume from.")
        )
    elif state == "cancelled":
        st.info("The run was cancelled." + (" Resume continues from the last checkpoint." if run.resumable else ""))


def curves(metrics: list[dict]) -> None:
    loss, dev = dash.loss_frame(metrics), dash.dev_frame(metrics)
    c1, c2 = st.columns(2)
    with c1:
        if len(loss):
            st.plotly_chart(dash.loss_figure(loss), key="runs_loss")
        else:
            st.caption("No training steps logged yet.")
    with c2:
        if len(dev):
            st.plotly_chart(dash.dev_figure(dev), key="runs_dev")
        else:
            st.caption("No dev evaluation yet.")


def no_budget_text(method) -> str:
    """What a run without a rank budget adapts, from the registry."""
    try:
        summary = get_method(method).summary
    except ValueError:
        return f"{method}: not a registered method here; there is no rank budget to follow."
    return f"{summary}; there is no rank budget to follow."


def rank_dynamics(run: Run, ranks: list[dict]) -> None:
    st.subheader("Rank dynamics")
    if not has_rank_budget(run.method):
        st.info(no_budget_text(run.method))
        return
    if not ranks:
        st.caption("No rank allocation yet: the budget stays at its initial value until tinit.")
        return
    schedule = schedule_of_run(run.config, run.total_step, len(ranks[0].get("active") or {}))
    frame = dash.budget_frame(ranks, schedule)
    st.plotly_chart(dash.budget_figure(frame, dash.schedule_frame(schedule) if schedule else None), key="runs_budget")
    last = ranks[-1]
    pruned, back = int(frame["pruned"].sum()), int(frame["reintroduced"].sum())
    extra = f" · rho now {last['rho']:.3f}" if "rho" in last else ""
    st.caption(f"{len(ranks)} allocations · {pruned} prunings · {back} reintroductions{extra}")
    modules, steps, z = dash.rank_heatmap_data(ranks)
    st.plotly_chart(dash.rank_heatmap_figure(modules, steps, z), key="runs_heatmap")
    module = st.selectbox("Module for the |λ| trajectories", modules, key="runs_lambda_module")
    if module:
        values, events = dash.lambda_frames(ranks, module)
        st.plotly_chart(dash.lambda_figure(values, events, module), key="runs_lambda")
        norms = dash.update_norm_frame(ranks, module)
        if len(norms):
            st.plotly_chart(dash.update_norm_figure(norms, module), key="runs_update_norm")


def final_pattern(run: Run, ranks: list[dict], report) -> None:
    norms = (report or {}).get("update_norms")
    if norms:
        st.plotly_chart(dash.update_norms_figure(norms), key="runs_update_norms")
        st.caption(
            f"How much the exported adapter changes each layer's weight: median ‖ΔW‖ {float(np.median(list(norms.values()))):.3g}, "
            f"max {max(norms.values()):.3g}. Values near 0 mean the adapter does little there."
        )
    pattern, source = dash.final_ranks(ranks, report)
    if not pattern:
        return
    frame = dash.rank_pattern_frame(pattern)
    st.plotly_chart(dash.rank_pattern_figure(frame, f"Final rank per layer — {source}", zmax=initial_rank(run)), key="runs_final")


def details(run: Run, status: dict, report) -> None:
    if report:
        with st.expander("Report (test metrics of the dev-selected checkpoint)"):
            test = report.get("test") or {}
            cols = st.columns(4)
            for col, key in zip(cols, ("mcc", "auroc", "auprc", "accuracy")):
                value = test.get(key)
                col.metric(f"test {key.upper()}", "–" if value is None else f"{value:.4f}")
            st.json(report, expanded=False)
    data_report = run.data_report()
    if data_report:
        with st.expander("Data report"):
            st.json(data_report, expanded=False)
    with st.expander("Config"):
        st.json(run.config, expanded=False)
    log = run.log_tail(6000)
    if log:
        with st.expander("Training log (tail)"):
            st.code(log, language=None)


def view() -> None:
    """The whole run view; re-runs itself every POLL_S seconds while the run is live."""
    try:
        run = load_run(selected.path)
    except FileNotFoundError:
        st.warning("This run directory disappeared.")
        return
    status = run.status
    if live and status.get("state") not in LIVE:
        st.rerun()  # finished: one full rerun redraws everything and stops the polling
    metrics, ranks, report = run.metrics(), run.ranks(), run.report()
    header(run, status, metrics)
    curves(metrics)
    rank_dynamics(run, ranks)
    final_pattern(run, ranks, report)
    details(run, status, report)


st.fragment(view, run_every=POLL_S if live else None)()
if live:
    st.caption(f"Live: refreshes every {POLL_S:g} s while the run is queued or running.")
