"""Home: what LINGO is, the runs so far, and a one-click quickstart run."""

from __future__ import annotations

import streamlit as st

from lingo_core import launcher
from lingo_core.config import ConfigError, load_config
from lingo_core.plots.charts import runs_table
from pages._common import all_runs, runs_root, show_exception

QUICKSTART = launcher.PROJECT_ROOT / "configs" / "quickstart.yaml"


@st.cache_data(ttl=60, show_spinner=False)
def available_data() -> str:
    """One sentence on the data found: the demo task and the benchmarks under the data root."""
    from lingo_core.data import list_benchmarks

    found = [b["name"] for b in list_benchmarks() if b["available"] and b["name"] != "demo/motifs"]
    if not found:
        return "No real benchmark was found under the data root (set LINGO_DATA_DIR); the demo task is always there."
    return f"Besides the demo task, {len(found)} benchmark(s) were found under the data root and can be trained on the Train page."

st.title("LINGO")
st.markdown(
    "LINGO adapts pre-trained **natural-language** models to **DNA sequence classification**: every "
    "sequence is wrapped in a short language prefix (`Domain: DNA Promoter / Sequence: … / Annotation:`) "
    "and the model is tuned with LoRA, AdaLoRA or **ARS**, adaptive rank sampling. ARS gives each layer "
    "an SVD-form adapter whose total rank budget shrinks on a cubic schedule, and it stochastically "
    "brings pruned singular values back so that early pruning mistakes can be undone. This dashboard "
    "trains runs in the background, shows their rank dynamics live, and scores and explains new sequences."
)

st.subheader("Quickstart")
c1, c2 = st.columns([3, 1], vertical_alignment="center")
c1.caption(
    "One click trains the embedded all-MiniLM-L6-v2 on the synthetic planted-motif task (demo/motifs) "
    f"with ARS, as in `configs/quickstart.yaml`, in the background; results go to `{runs_root()}`. "
    + available_data()
)
if c2.button("Start the quickstart run", key="home_quickstart", type="primary"):
    try:
        path = launcher.launch(load_config(QUICKSTART, ["train.progress_bar=false"]))
    except (ConfigError, OSError, ValueError) as exc:
        show_exception("Could not start the quickstart run", exc)
    else:
        st.session_state["selected_run"] = path.name
        st.success(f"Queued **{path.name}**; it trains in its own process.")
        st.page_link("pages/runs.py", label="Watch it on the Runs page", icon=":material/monitoring:", query_params={"run": path.name})
st.page_link("pages/train.py", label="Or configure a run yourself on the Train page", icon=":material/rocket_launch:")

st.subheader("Runs so far")
runs = all_runs()
if not runs:
    st.info("No runs yet. Start the quickstart run, or configure one on the Train page.")
else:
    st.dataframe(runs_table([r.summary() for r in runs]), hide_index=True, key="home_runs")
    st.caption(f"{len(runs)} run(s) in `{runs_root()}`. Best dev MCC: the best dev-set evaluation so far; trainable %: of all model parameters.")
