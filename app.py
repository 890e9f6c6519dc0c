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

@st.cache_resource(show_spinner=False)
def favicon():
    """A small double helix drawn here and served by this app: a ``:material/...:`` page icon would be
    fetched from a font CDN, which fails offline."""
    import math

    from PIL import Image, ImageDraw

    size = 64
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=14, fill=(139, 26, 26, 255))
    strand = [(12 + 40 * (0.5 + 0.5 * math.sin(y / 9.0)), y) for y in range(6, 59)]
    other = [(12 + 40 * (0.5 - 0.5 * math.sin(y / 9.0)), y) for y in range(6, 59)]
    for y in range(10, 58, 8):
        a, b = strand[y - 6], other[y - 6]
        draw.line((a, b), fill=(255, 214, 153, 255), width=3)
    draw.line(strand, fill=(255, 255, 255, 255), width=5)
    draw.line(other, fill=(255, 255, 255, 255), width=5)
    return image


st.set_page_config(page_title="LINGO", page_icon=favicon(), layout="wide")

PAGES = [
    st.Page(str(ROOT / "pages" / "home.py"), title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page(str(ROOT / "pages" / "train.py"), title="Train", icon=":material/rocket_launch:", url_path="train"),
    st.Page(str(ROOT / "pages" / "runs.py"), title="Runs / rank dynamics", icon=":material/monitoring:", url_path="runs"),
    st.Page(str(ROOT / "pages" / "predict.py"), title="Predict", icon=":material/online_prediction:", url_path="predict"),
    st.Page(str(ROOT / "pages" / "panel.py"), title="Panel", icon=":material/grid_view:", url_path="panel"),
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
