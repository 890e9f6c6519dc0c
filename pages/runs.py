"""Runs / rank dynamics: one run, live while it trains.

Polling is cheap: a small timed fragment (the header: progress, elapsed time, ETA, cancel) looks at
the run's files every few seconds, reading only the lines appended to metrics.jsonl since the last
look (:class:`pages._common.JsonlTail`). The charts below are redrawn only when something they show
changed (a new allocation or dev evaluation, a state change, the report; new loss values at most
every ``LOSS_REDRAW_S``), and figures are rebuilt only when their data changed. The fragment backs
off (2 s, 5 s, 15 s) while nothing changes and stops once the run has ended.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import numpy as np
import streamlit as st

from lingo_core import launcher
from lingo_core.adapters import get_method, has_rank_budget
from lingo_core.plan import schedule_of_run
from lingo_core.plots import charts as dash
from lingo_core.runs import METRICS, RANKS, REPORT, STATUS
from pages._common import (
    LIVE_STATES,
    RunInfo,
    all_runs,
    checkpoint_steps,
    default_live_run,
    initial_rank,
    md,
    pick_run,
    show_damage,
    show_exception,
    state_text,
    step_plan,
    tail,
    typed_config,
)

LOSS_REDRAW_S = 10.0  # new loss values alone redraw the charts at most this often


def _stamp(path) -> Optional[tuple]:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def activity(info: RunInfo) -> float:
    """Seconds since the run's files last changed (as seen by this session): the back-off clock."""
    files = tuple(_stamp(info.path / name) for name in (STATUS, METRICS, RANKS, REPORT))
    seen = st.session_state.setdefault("runs_activity", {})
    now = time.time()
    previous = seen.get(info.id)
    if previous is None or previous[0] != files:
        seen[info.id] = (files, now)
        return 0.0
    return now - previous[1]


def chart_signature(info: RunInfo, metrics: list, ranks: list) -> tuple:
    """What the charts show, in short: they are redrawn when this changes."""
    dev = sum(1 for m in metrics if "dev_mcc" in m)
    return (info.id, info.state, len(ranks), dev, _stamp(info.path / REPORT))


def figure(name: str, key: Any, build) -> Any:
    """``build()``, or the figure built last time for the same ``key`` (its data unchanged)."""
    cache = st.session_state.setdefault("runs_figures", {})
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    fig = build()
    cache[name] = (key, fig)
    return fig


def _fragment_only_run() -> bool:
    """Whether this script run reruns fragments only (a timed poll), not the whole page."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
    except ImportError:
        return False
    return bool(ctx and ctx.fragment_ids_this_run)


# -- header: what the run is, progress, actions ----------------------------------------------------------------
def cancel_consequence(info: RunInfo, step: int, progress: dict) -> str:
    """What cancelling now does, in words (the trainer writes a checkpoint at the step where it stops)."""
    if info.state == "queued":
        return "It has not started training: nothing is lost."
    per_step = (progress["elapsed_s"] / step) if step and progress.get("elapsed_s") else None
    total = progress.get("total")
    return (
        f"It stops after its current step ({f'step {step + 1:,} of {total:,}' if total else f'step {step + 1:,}'}) and saves a checkpoint "
        f"there: **Resume** continues from that step, so the {step:,} step(s) trained so far "
        f"(about {dash.duration_text(progress.get('elapsed_s'))}) are kept. "
        "It is evaluated on the test set and exported only when it finishes"
        + (f" (about {dash.duration_text(per_step * (total - step))} of training left)." if per_step and total else ".")
    )


def _close_dialog() -> None:
    st.session_state.pop("runs_cancel_dialog", None)


@st.dialog("Cancel this run?", on_dismiss=_close_dialog)
def cancel_dialog(info: RunInfo, step: int, progress: dict) -> None:
    st.markdown(md(cancel_consequence(info, step, progress)))
    c1, c2 = st.columns(2)
    if c1.button("Cancel the run", key="runs_cancel_confirm", type="primary"):
        new_state = launcher.cancel(info.path)
        _close_dialog()
        st.session_state["runs_toast"] = "Cancelled." if new_state == "cancelled" else "Cancel requested: the run stops after its current step."
        st.rerun()
    if c2.button("Keep training", key="runs_cancel_keep"):
        _close_dialog()
        st.rerun()


def why_not_resumable(info: RunInfo, step: int) -> str:
    """Why a run that ended early cannot be resumed."""
    plan = step_plan(info.run)
    first = f" (the first would have been written at step {plan.checkpoint_every:,}, at its first dev evaluation)" if plan else ""
    return (
        f"It cannot be resumed: it stopped at step {step:,}, before it wrote its first checkpoint{first}, so there is "
        "nothing to continue from. Start it again to train from step 0 with the same settings."
    )


def header(info: RunInfo, metrics: list, status: dict) -> None:
    """State, what the run is, progress with elapsed time and ETA, and the cancel/resume actions."""
    state = info.state
    st.markdown(
        f"**{state_text(state)}** · method **{md(info.method or '?')}** · model **{md(info.model_name or '?')}** · task **{md(info.task or '?')}**"
    )
    total = None
    try:
        total = info.run.total_step
    except Exception:  # noqa: BLE001
        total = None
    last_step = metrics[-1].get("step") if metrics and isinstance(metrics[-1].get("step"), int) else 0
    progress = dash.live_progress(status, last_step, total, time.time())
    step, total = progress["step"], progress["total"]
    if state == "queued":
        queue_ids = [r.id for r in launcher.queue(info.path.parent)]
        position = queue_ids.index(info.id) + 1 if info.id in queue_ids else None
        st.progress(0.0, text="queued" + (f" · position {position} in the queue" if position else " · starting"))
    elif total:
        text = f"step {step:,} of {total:,} · elapsed {dash.duration_text(progress['elapsed_s'])}"
        if state == "running":
            text += f" · about {dash.duration_text(progress['eta_s'])} left" if progress["eta_s"] is not None else " · time left: measuring…"
        st.progress(min(1.0, step / total), text=text)
    elif step:
        st.progress(0.0, text=f"step {step:,} · total not known yet")
    else:
        st.progress(0.0, text="loading data and model…" if state == "running" else state)

    c1, c2, _ = st.columns([1, 1.3, 3])
    if state in LIVE_STATES and c1.button("Cancel run", key="runs_cancel"):
        if state == "queued":
            launcher.cancel(info.path)
            st.session_state["runs_toast"] = "Cancelled."
            st.rerun()
        st.session_state["runs_cancel_dialog"] = info.id
    if st.session_state.get("runs_cancel_dialog") == info.id and state in LIVE_STATES:
        cancel_dialog(info, step, progress)
    resumable = False
    try:
        resumable = info.run.resumable
    except Exception:  # noqa: BLE001
        resumable = False
    if resumable and c2.button("Resume run", key="runs_resume", type="primary"):
        try:
            launcher.resume(info.path)
        except (RuntimeError, OSError) as exc:
            show_exception("Could not resume", exc)
        else:
            st.rerun()
    ended_early = state in ("interrupted", "failed", "cancelled")
    if ended_early and not resumable and c2.button("Start again from step 0", key="runs_restart"):
        start_again(info)
    if state == "failed":
        st.error(f"The run failed: {md(status.get('error'))}")
        if status.get("traceback"):
            with st.expander("Traceback", expanded=True):
                st.code(str(status["traceback"]), language=None)
    elif state == "interrupted":
        st.warning("The training process is gone (killed, or the machine restarted) before the run finished.")
    elif state == "cancelled":
        st.info("The run was cancelled.")
    for finding in info.run.learning_findings(metrics):
        show = st.info if finding.provisional else st.warning
        show(f"{md(finding.summary)} {md(finding.advice)} Set it in the **Learning rate** field on the Train page.")
    if ended_early:
        if resumable:
            last, _ = checkpoint_steps(info.run, step, metrics)
            st.caption(f"Resume continues from its last checkpoint{f' (step {last:,})' if last else ''}, with the same settings and the same random state.")
        else:
            st.caption(why_not_resumable(info, step))


def start_again(info: RunInfo) -> None:
    """Queue a new run with this run's settings (a run that cannot be resumed)."""
    import dataclasses

    cfg = typed_config(info.run)
    if cfg is None:
        st.error("This run's settings cannot be read, so it cannot be started again; configure it on the Train page.")
        return
    try:
        path = launcher.launch(dataclasses.replace(cfg, run_name=None))
    except launcher.DuplicateRunError as exc:
        st.warning(f"A run with the same settings is already {md(exc.run.state)}: **{md(exc.run.id)}**.")
        return
    except (OSError, ValueError) as exc:
        show_exception("Could not start it again", exc)
        return
    st.session_state["selected_run"] = path.name
    st.query_params["run"] = path.name
    st.session_state.pop("runs_pick", None)
    st.rerun()


# -- charts ------------------------------------------------------------------------------------------------------
def curves(info: RunInfo, metrics: list, key: tuple) -> None:
    c1, c2 = st.columns(2)
    loss_key = (info.id, len(metrics))  # the loss curve changes with every new metric line, and only then
    with c1:
        loss = figure("loss_frame", loss_key, lambda: dash.loss_frame(metrics))
        if len(loss):
            st.plotly_chart(figure("loss", loss_key, lambda: dash.loss_figure(loss)), key="runs_loss")
        else:
            st.caption("No training steps logged yet: the run is loading its data and model, or waiting in the queue.")
    with c2:
        dev = figure("dev_frame", key, lambda: dash.dev_frame(metrics))
        if len(dev):
            st.plotly_chart(figure("dev", key, lambda: dash.dev_figure(dev)), key="runs_dev")
        else:
            plan = step_plan(info.run)
            st.caption("No dev evaluation yet" + (f": the first is at step {plan.eval_every:,}." if plan else "."))


def no_budget_text(method) -> str:
    """What a run without a rank budget adapts, from the registry."""
    try:
        summary = get_method(method).summary
    except ValueError:
        return f"{method}: not a registered method here; there is no rank budget to follow."
    return f"{summary}; there is no rank budget to follow."


def rank_dynamics(info: RunInfo, ranks: list, key: tuple) -> None:
    st.subheader("Rank dynamics")
    if not has_rank_budget(info.method):
        st.info(md(no_budget_text(info.method)))
        return
    if not ranks:
        st.caption("No rank allocation yet: the budget stays at its initial value until tinit, then the heat map and budget chart appear here.")
        return
    zmax = initial_rank(info.run, ranks)

    def budget():
        total = None
        try:
            total = info.run.total_step
        except Exception:  # noqa: BLE001
            total = None
        schedule = schedule_of_run(info.config, total, len(ranks[0].get("active") or {}))
        frame = dash.budget_frame(ranks, schedule)
        return frame, dash.budget_figure(frame, dash.schedule_frame(schedule) if schedule else None)

    frame, fig = figure("budget", key, budget)
    st.plotly_chart(fig, key="runs_budget")
    last = ranks[-1]
    pruned, back = int(frame["pruned"].sum()), int(frame["reintroduced"].sum())
    extra = f" · rho now {last['rho']:.3f}" if isinstance(last.get("rho"), (int, float)) else ""
    st.caption(f"{len(ranks)} allocation{'s' if len(ranks) != 1 else ''} · {pruned} prunings · {back} reintroductions{extra}")
    modules, steps, z = figure("heat_data", key, lambda: dash.rank_heatmap_data(ranks))
    st.plotly_chart(figure("heatmap", key, lambda: dash.rank_heatmap_figure(modules, steps, z, zmax=zmax)), key="runs_heatmap")
    st.caption(f"Colour: active rank, 0 to the initial rank {zmax} (the same scale on every rank heat map)." if zmax else "Colour: active rank.")
    module = st.selectbox("Module for the |λ| trajectories", modules, key="runs_lambda_module")
    if module:
        values, events = figure("lambda_frames", (*key, module), lambda: dash.lambda_frames(ranks, module))
        st.plotly_chart(figure("lambda", (*key, module), lambda: dash.lambda_figure(values, events, module)), key="runs_lambda")
        norms = figure("norm_frame", (*key, module), lambda: dash.update_norm_frame(ranks, module))
        if len(norms):
            st.plotly_chart(figure("norm", (*key, module), lambda: dash.update_norm_figure(norms, module)), key="runs_update_norm")


def final_pattern(info: RunInfo, ranks: list, report, key: tuple) -> None:
    norms = (report or {}).get("update_norms")
    if isinstance(norms, dict) and norms and all(isinstance(v, (int, float)) for v in norms.values()):
        st.plotly_chart(figure("update_norms", key, lambda: dash.update_norms_figure(norms)), key="runs_update_norms")
        st.caption(
            f"How much the exported adapter changes each layer's weight: median ‖ΔW‖ {float(np.median(list(norms.values()))):.3g}, "
            f"max {max(norms.values()):.3g}. Values near 0 mean the adapter does little there."
        )
    pattern, source = dash.final_ranks(ranks, report)
    if not pattern:
        return
    zmax = initial_rank(info.run, ranks)
    fig = figure("final", key, lambda: dash.rank_pattern_figure(dash.rank_pattern_frame(pattern), f"Final rank per layer — {source}", zmax=zmax))
    st.plotly_chart(fig, key="runs_final")


def details(info: RunInfo, report) -> None:
    if report:
        with st.expander("Report (test metrics of the dev-selected checkpoint)"):
            test = report.get("test") if isinstance(report.get("test"), dict) else {}
            cols = st.columns(4)
            for col, name in zip(cols, ("mcc", "auroc", "auprc", "accuracy")):
                value = test.get(name)
                col.metric(f"test {name.upper()}", f"{value:.4f}" if isinstance(value, (int, float)) else "–")
            if info.run.eval_strands == "both":
                st.caption("Dev and test were scored as the mean over both strands of each sequence (\"Score dev and test "
                           "on both strands\" on the Train page); the Predict page does the same for this run by default.")
            st.json(report, expanded=False)
    data_report = info.run.data_report()
    if data_report:
        with st.expander("Data report"):
            st.json(data_report, expanded=False)
    with st.expander("Config"):
        st.json(info.config, expanded=False)
    log = info.run.log_tail(6000)
    if log:
        with st.expander("Training log (tail)"):
            st.code(log, language=None)


# -- the page ----------------------------------------------------------------------------------------------------
st.title("Runs and rank dynamics")
infos = all_runs()
if not infos:
    st.info("No runs yet: start the quickstart run on Home, or configure one on the Train page.")
    st.page_link("pages/train.py", label="Launch one on the Train page", icon=":material/rocket_launch:")
    st.stop()

selected = pick_run("Run", infos, key="runs_pick", default=default_live_run(infos))
assert selected is not None
if st.session_state.get("runs_toast"):
    st.toast(st.session_state.pop("runs_toast"))
if selected.damage:
    show_damage(selected)
    st.stop()

metrics = tail(selected.path / METRICS).records
ranks = tail(selected.path / RANKS).records
drawn = chart_signature(selected, metrics, ranks)
st.session_state["runs_drawn"] = (drawn, len(metrics), time.time())
idle = activity(selected)
interval = dash.poll_interval(selected.state, idle)


def live_header() -> None:
    """The header, polled: reads the run's status and only the new metric lines; asks for a full redraw
    when the charts would show something new, and for a new polling interval when the run goes quiet."""
    status = selected.run.status  # never raises; only this file and the new metric lines are read per poll
    state = status.get("state") if isinstance(status.get("state"), str) else "unknown"
    info = dataclasses.replace(selected, state=state, status=status)
    new_metrics = tail(info.path / METRICS).records
    header(info, new_metrics, info.status)
    if not _fragment_only_run():
        return
    new_ranks = tail(info.path / RANKS).records
    drawn_sig, drawn_metrics, drawn_at = st.session_state.get("runs_drawn", (None, 0, 0.0))
    changed = chart_signature(info, new_metrics, new_ranks) != drawn_sig
    loss_due = len(new_metrics) > drawn_metrics and time.time() - drawn_at >= LOSS_REDRAW_S
    backoff = dash.poll_interval(info.state, activity(info)) != interval
    if changed or loss_due or backoff:
        st.rerun()


st.fragment(live_header, run_every=interval)()
key = drawn
curves(selected, metrics, key)
rank_dynamics(selected, ranks, key)
report = selected.run.report()
final_pattern(selected, ranks, report, key)
details(selected, report)
if interval:
    st.caption(
        f"Live: checks the run every {interval:g} s"
        + (" (it has not changed for a while)" if interval > 2 else "")
        + f"; charts redraw when a new allocation, dev evaluation or state arrives, loss curves at most every {LOSS_REDRAW_S:g} s."
    )
