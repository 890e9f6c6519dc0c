"""Streamlit glue shared by the pages: the runs folder, run pickers, cached models and uploads.

Not a page itself (``app.py`` lists the pages with ``st.navigation``). Heavy objects are created
lazily inside cached functions, never at import time.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import streamlit as st

from lingo_core import launcher
from lingo_core.adapters import has_rank_budget
from lingo_core.plots.charts import STATE_ICONS
from lingo_core.runs import Run, list_runs


def _leave_legacy_pages_mode() -> None:
    """Run pages through ``app.py``'s ``st.navigation`` even on a deep link to a fresh server.

    Streamlit treats a ``pages/`` folder next to the main script as a legacy multipage app until
    ``st.navigation`` has been called once; a first request for ``/runs`` would then execute
    ``pages/runs.py`` on its own (no page config, every file listed). When that happens, switch
    the legacy mode off and rerun: the rerun executes ``app.py``, which routes to the same page.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a future Streamlit without the legacy mode
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_pages_mode()

UPLOAD_LIMIT_MB = 20  # also server.maxUploadSize in .streamlit/config.toml
MAX_PASTE_CHARS = 200_000  # pasted sequences on Predict / Attribute
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
RUN_NAME = launcher.RUN_NAME


def runs_root() -> Path:
    """The runs folder the app reads and writes (``$LINGO_RUNS_DIR`` or ``runs/``)."""
    return launcher.runs_root()


def all_runs() -> list[Run]:
    """Every run under the runs folder, newest first."""
    return list_runs(runs_root())


def state_text(state: Optional[str]) -> str:
    state = state or "unknown"
    return f"{STATE_ICONS.get(state, '')} {state}"


def run_label(run: Run) -> str:
    """``20261125-... · ars · demo/motifs`` for pickers (no state: a keyed selectbox keeps its first labels)."""
    task = run.task or "?"
    if "/" in task and Path(task).is_absolute():
        task = Path(task).name
    return f"{run.id} · {run.method or '?'} · {task}"


def typed_config(run: Run) -> Optional[Any]:
    """The run's validated config (:meth:`Run.typed_config`), or None when its config is broken:
    a bad run directory must never crash a page."""
    try:
        return run.typed_config()
    except Exception:  # noqa: BLE001 - unreadable YAML, unknown keys, a method no longer registered
        return None


def initial_rank(run: Run) -> Optional[int]:
    """The per-module rank a budget method starts from (``adapter.adalora.init_r``): the top of the
    colour scale of rank charts. None for other methods and broken configs."""
    if not has_rank_budget(run.method):
        return None
    cfg = typed_config(run)
    return int(cfg.adapter.adalora.init_r) if cfg is not None else None


def pick_run(
    label: str,
    runs: Sequence[Run],
    key: str,
    accept: Optional[Callable[[Run], bool]] = None,
    help: Optional[str] = None,
) -> Optional[Run]:
    """A run selectbox; defaults to ``?run=`` in the URL, then the last run chosen anywhere, then the newest.

    The choice is remembered in ``st.session_state["selected_run"]`` and the URL so other pages
    and reloads open the same run.
    """
    choices = [r for r in runs if accept is None or accept(r)]
    if not choices:
        return None
    ids = [r.id for r in choices]
    by_id = {r.id: r for r in choices}
    from_url = st.query_params.get("run")
    url_seen = f"_{key}_url"
    if from_url in ids and st.session_state.get(url_seen) != from_url:  # a link just opened this run
        st.session_state[key] = from_url
    elif key not in st.session_state or st.session_state[key] not in ids:
        wanted = st.session_state.get("selected_run")
        st.session_state[key] = wanted if wanted in ids else ids[0]
    chosen = st.selectbox(label, ids, key=key, format_func=lambda i: run_label(by_id[i]), help=help)
    if chosen is not None:
        st.session_state["selected_run"] = chosen
        st.session_state[url_seen] = chosen
        if from_url != chosen:
            st.query_params["run"] = chosen
    return by_id.get(chosen)


def sanitize_filename(name: str) -> str:
    """A safe file name from a user-supplied one: base name only, odd characters replaced."""
    base = Path(str(name).replace("\\", "/")).name
    safe = SAFE_NAME.sub("_", base).lstrip(".") or "upload"
    return safe[-100:]


def save_upload(data: bytes, name: str, root: Optional[Path] = None) -> Path:
    """Store uploaded bytes under ``uploads/`` (next to the runs folder), named by content hash."""
    folder = launcher.uploads_root(root or runs_root())
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = folder / f"{digest}-{sanitize_filename(name)}"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def upload_too_big(size: int) -> Optional[str]:
    """An error message when an upload exceeds the app's limit, else None."""
    if size > UPLOAD_LIMIT_MB * 1024 * 1024:
        return f"The file is {size / 1024 / 1024:.1f} MB; the dashboard accepts files up to {UPLOAD_LIMIT_MB} MB. Use the CLI for larger files."
    return None


# -- cached heavy objects ----------------------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Loading the tokenizer…")
def tokenizer_for(model_name: str, sequence_mode: str):
    """The tokenizer a run of this model and sequence mode encodes with (for the token preview).

    Only the tokenizer and an empty (meta-device) skeleton are built: no weights are loaded.
    """
    from lingo_core.config import EncodingConfig, ModelConfig
    from lingo_core.models import load_model

    return load_model(ModelConfig(name=model_name, device="cpu"), 2, False, EncodingConfig(sequence=sequence_mode), empty=True).tokenizer


@st.cache_data(max_entries=64, show_spinner="Planning the run…")
def run_plan(config_json: str, n_train: int, label_names: tuple[str, ...], multi_label: bool):
    """:func:`lingo_core.plan.plan_run` for a config (JSON of ``LingoConfig.to_dict()``) and a task:
    steps, the budget schedule, the adapted modules and trainable parameters (no weights loaded)."""
    from lingo_core.config import config_from_dict
    from lingo_core.plan import plan_run

    return plan_run(config_from_dict(json.loads(config_json)), n_train, list(label_names), multi_label)


@st.cache_resource(max_entries=6, show_spinner="Loading the data…")
def load_task_cached(data_json: str):
    """``lingo_core.data.load_task`` for a data config (JSON of the DataConfig dict)."""
    from lingo_core.config import config_from_dict
    from lingo_core.data import load_task

    return load_task(config_from_dict({"data": json.loads(data_json)}).data)


@st.cache_resource(max_entries=4, show_spinner="Loading the trained model…")
def predictor_for(run_dir: str, stamp: str):
    """A cached ``lingo_core.predict.Predictor``; ``stamp`` (``Run.weights_stamp()``) changes when the run's weights change."""
    from lingo_core.predict import load_predictor

    return load_predictor(run_dir, device=None)


def show_exception(prefix: str, exc: BaseException) -> None:
    """An inline error for a failure caused by user input or data, without a traceback dump."""
    st.error(f"{prefix}: {exc}")
