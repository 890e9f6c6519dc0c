"""LINGO dashboard: ``streamlit run app.py`` (binds to localhost; see .streamlit/config.toml).

Only wiring: each page lives in ``pages/`` and talks to ``lingo_core`` (the engine and the
run-directory read API). Nothing heavy happens here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `streamlit run` from another folder, or AppTest
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="LINGO", page_icon=":material/genetics:", layout="wide")

PAGES = [
    st.Page(str(ROOT / "pages" / "home.py"), title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page(str(ROOT / "pages" / "train.py"), title="Train", icon=":material/rocket_launch:", url_path="train"),
    st.Page(str(ROOT / "pages" / "runs.py"), title="Runs / rank dynamics", icon=":material/monitoring:", url_path="runs"),
    st.Page(str(ROOT / "pages" / "predict.py"), title="Predict", icon=":material/online_prediction:", url_path="predict"),
    st.Page(str(ROOT / "pages" / "attribute.py"), title="Attribute", icon=":material/biotech:", url_path="attribute"),
    st.Page(str(ROOT / "pages" / "compare.py"), title="Compare", icon=":material/compare_arrows:", url_path="compare"),
]

if (st.get_option("server.address") or "") not in ("localhost", "127.0.0.1", "::1"):
    st.sidebar.warning(
        "This dashboard may be reachable from the network (server.address is not localhost): anyone "
        "who reaches it can start training jobs. Run it from the project folder (its "
        ".streamlit/config.toml binds to localhost) or put it behind authentication.",
        icon=":material/warning:",
    )

st.navigation(PAGES).run()
