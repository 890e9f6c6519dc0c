"""Home: what LINGO is, the runs so far (links to each), and a one-click quickstart run."""

from __future__ import annotations

import streamlit as st

from lingo_core import launcher
from lingo_core.config import ConfigError, load_config
from lingo_core.plots.charts import RUN_LINK_TEXT, duration_text, runs_table
from pages._common import LIVE_STATES, all_runs, earlier_costs, load_task_cached, machine_gflops, md, runs_root, show_exception

QUICKSTART = launcher.PROJECT_ROOT / "configs" / "quickstart.yaml"
TABLE_POLL_S = 5.0  # while a run is queued or running
IDLE_POLL_S = 30.0  # otherwise: a run started from another tab or the command line appears within this


@st.cache_data(ttl=60, show_spinner=False)
def available_data() -> str:
    """One sentence on the data found: the demo task and the benchmarks under the data root."""
    from lingo_core.data import list_benchmarks

    found = [b["name"] for b in list_benchmarks() if b["available"] and b["name"] != "demo/motifs"]
    if not found:
        return "No real benchmark was found under the data root (set LINGO_DATA_DIR); the demo task is always there."
    return f"Besides the demo task, {len(found)} benchmark(s) were found under the data root and can be trained on the Train page."


def quickstart_config():
    return load_config(QUICKSTART, ["train.progress_bar=false"])


def quickstart_estimate(infos) -> str:
    """``about 4 min here`` for the quickstart run on this machine, or "" when it cannot be estimated."""
    import json

    from lingo_core.plan import plan_steps
    from pages._estimate import estimate, tokens_per_sequence, work_of

    try:
        cfg = quickstart_config()
        task = load_task_cached(json.dumps(cfg.to_dict()["data"], sort_keys=True, default=str))
        plan = plan_steps(cfg, len(task.train))
        mean_length = sum(map(len, task.train.sequences[:500])) / max(1, min(500, len(task.train)))
        tokens = tokens_per_sequence(mean_length, cfg.encoding.sequence, cfg.encoding.k, cfg.encoding.max_length)
        work = work_of(cfg.to_dict(), plan.total_step, plan.eval_every, len(task.dev), len(task.test), tokens)
        guess = estimate(work, cfg.model.name, earlier_costs(infos), gflops=machine_gflops())
    except Exception:  # noqa: BLE001 - an estimate is a courtesy; the button works without it
        return ""
    return f"about {duration_text(guess.seconds)} here" if guess else ""


st.title("LINGO")
st.markdown(
    "LINGO adapts pre-trained **natural-language** models to **DNA sequence classification**: every "
    "sequence is wrapped in a short language prefix (`Domain: DNA Promoter / Sequence: … / Annotation:`) "
    "and the model is tuned with LoRA, AdaLoRA or **ARS**, adaptive rank sampling. ARS gives each layer "
    "an SVD-form adapter whose total rank budget shrinks on a cubic schedule, and it stochastically "
    "brings pruned singular values back so that early pruning mistakes can be undone. This dashboard "
    "trains runs in the background, shows their rank dynamics live, and scores and explains new sequences."
)

infos = all_runs()
st.subheader("Quickstart")
how_long = quickstart_estimate(infos)
st.caption(
    "One click trains the embedded all-MiniLM-L6-v2 on the synthetic planted-motif task (demo/motifs) "
    "with ARS, as in `configs/quickstart.yaml`, in its own background process (you can close the page)"
    + (f": {how_long}, measured or benchmarked on this machine" if how_long else "")
    + f". Results go to `{runs_root()}`. "
    + available_data()
)
label = "Start the quickstart run" + (f" ({how_long})" if how_long else "")
if st.button(label, key="home_quickstart", type="primary"):
    try:
        path = launcher.launch(quickstart_config())
    except launcher.DuplicateRunError as exc:
        st.session_state["selected_run"] = exc.run.id
        st.warning(
            f"A quickstart run with the same settings is already {md(exc.run.state)}: **{md(exc.run.id)}**. "
            "Nothing new was started; watch that one on the Runs page."
        )
        st.page_link("pages/runs.py", label="Watch it on the Runs page", icon=":material/monitoring:", query_params={"run": exc.run.id})
    except (ConfigError, OSError, ValueError) as exc:
        show_exception("Could not start the quickstart run", exc)
    else:
        st.session_state["selected_run"] = path.name
        st.success(f"Queued **{md(path.name)}**; it trains in its own process.")
        st.page_link("pages/runs.py", label="Watch it on the Runs page", icon=":material/monitoring:", query_params={"run": path.name})
st.page_link("pages/train.py", label="Or configure a run yourself on the Train page", icon=":material/rocket_launch:")


def runs_so_far() -> None:
    """The runs table; refreshes itself while a run is queued or running."""
    current = all_runs()
    st.subheader("Runs so far")
    if not current:
        st.info("No runs yet. Start the quickstart run above, or configure one on the Train page.")
        return
    table = runs_table([i.summary for i in current])
    if not (table["problem"] != "").any():
        table = table.drop(columns=["problem"])
    st.dataframe(
        table,
        hide_index=True,
        key="home_runs",
        column_config={
            "run": st.column_config.LinkColumn("run", display_text=RUN_LINK_TEXT, help="Open the run on the Runs page", width=250),
            "status": st.column_config.TextColumn("status", width=100),
            "progress": st.column_config.TextColumn("progress", width=75),
            "method": st.column_config.TextColumn("method", width=70),
            "task": st.column_config.TextColumn("task", width=120),
            **{c: st.column_config.TextColumn(c, width=95) for c in ("best dev MCC", "test MCC", "trainable %")},
            "problem": st.column_config.TextColumn("problem", width="large"),
        },
    )
    live = any(i.state in LIVE_STATES for i in current)
    st.caption(
        f"{len(current)} run(s) in `{runs_root()}`, newest first; click a run to open it. Best dev MCC: the best "
        "dev-set evaluation so far; test MCC: the dev-selected checkpoint on the test set; trainable %: of all model parameters."
        + (f" Refreshes every {TABLE_POLL_S:g} s while a run is queued or running." if live else "")
    )


live_now = any(i.state in LIVE_STATES for i in infos)
st.fragment(runs_so_far, run_every=TABLE_POLL_S if live_now else IDLE_POLL_S)()
