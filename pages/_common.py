"""Streamlit glue shared by the pages: the runs folder, run pickers, cached models and uploads.

Not a page itself (``app.py`` lists the pages with ``st.navigation``). Heavy objects are created
lazily inside cached functions, never at import time. Everything a user or a file controls that is
shown as markdown goes through :func:`md` (escaped: a FASTA header cannot become a link or an
image), and every engine message shown on a page goes through :func:`page_words` (the file name the
user uploaded instead of an internal path, the fields on the page instead of command-line flags).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import streamlit as st

from lingo_core import launcher
from lingo_core.adapters import has_rank_budget
from lingo_core.plots.charts import STATE_ICONS
from lingo_core.runs import CHECKPOINT, CONFIG, DATA_REPORT, METRICS, RANKS, REPORT, STATUS, Run, list_runs


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
MAX_PASTE_CHARS = 200_000  # pasted sequences on Predict / Attribute (the text box refuses more)
MAX_SEQUENCE_NT = 10_000  # one sequence the dashboard scores (about 20 windows of the default model)
MAX_TOTAL_NT = 2_000_000  # all sequences of one Predict request
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
RUN_NAME = launcher.RUN_NAME
LIVE_STATES = ("queued", "running")


def runs_root() -> Path:
    """The runs folder the app reads and writes (``$LINGO_RUNS_DIR`` or ``runs/``)."""
    return launcher.runs_root()


# -- text shown as markdown ----------------------------------------------------------------------------
ZERO_WIDTH = "\u200b"
_AUTOLINK = re.compile(r"(?i)(?<![a-z0-9])(https?|www|ftp|mailto|xmpp)(?=[:.])")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&@])")  # markdown, GFM autolinks, Streamlit directives, LaTeX


def md(text: Any) -> str:
    """``text`` verbatim inside ``st.markdown``/``st.error``/...: every character markdown could read as
    markup is backslash-escaped (CommonMark allows it for any ASCII punctuation), so ``{__class__}``
    shows as typed and a FASTA header such as ``[x](http://evil)``, ``www.evil.com`` or
    ``![img](...)`` stays text: no link, no image, no Streamlit ``:colour[...]`` or ``:material/...:``
    directive, no LaTeX; a new line becomes a space.

    Escapes do not stop GFM's literal autolinks (``http://…``, ``www.…``, ``name@host``): remark finds
    them in the text after parsing. A zero-width space after ``http``/``https``/``www`` and after
    ``@`` breaks those patterns without changing what the reader sees."""
    text = _AUTOLINK.sub(lambda m: m.group(0) + ZERO_WIDTH, str(text)).replace("@", "@" + ZERO_WIDTH)
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\r", " ").replace("\n", " ")


_PAGE_PHRASES: list[tuple[str, str]] = [
    # engine advice -> what to change on the page (fields are filled in by page_words)
    (r"\s*\(e\.g\. --set [^)]*\)", ""),
    (r"set data\.sequence_column / data\.label_columns / data\.id_column", "set {seq} and {label} to your file's column names"),
    (r"pass the sequence/id column name \(--sequence-column / --id-column\)", "type your file's column names into {seq} and {id}"),
    (r", or set data\.labels_table to a CSV with id and label columns", ""),
    (r"Fix: set data\.iupac=n to map [^.]*\.", "Fix: replace them by N in the file."),
    (r"data\.sequence_column", "{seq}"),
    (r"data\.label_columns", "{label}"),
    (r"data\.id_column", "{id}"),
    (r"data\.max_train", "{max_train}"),
    (r"data\.max_eval", "{max_eval}"),
    (r"\(model\.pooling=last, or auto\)", "(choose last token or auto in {pooling})"),
    (r"use model\.pooling=native", "choose the model's own head in {pooling}"),
    (r"model\.pooling=\w+", "this choice of {pooling}"),
    (r"\s*\([^()]*--[a-z][a-z-]*[^()]*\)", ""),  # any other parenthesis that gives a command-line flag
    (r"\s*--set \S+", ""),
]


def page_words(message: Any, fields: Optional[Mapping[str, str]] = None, paths: Optional[Mapping[Any, str]] = None) -> str:
    """An engine message in the page's own words, as escaped markdown.

    ``paths`` maps internal paths (a stored upload under a content hash) to what the user knows
    (the name of the file they uploaded); ``fields`` maps ``seq``, ``label``, ``id``, ``max_train``,
    ``max_eval``, ``pooling`` to the labels of the fields on this page. Command-line flags and config keys are
    replaced by those fields (or dropped); everything else, user text included, is shown verbatim.
    """
    names = {"seq": "Sequence column", "label": "Label column", "id": "Id column", "max_train": "Max training sequences", "max_eval": "Max dev/test sequences", "pooling": "Classifier reads"}
    names.update(fields or {})
    marks: list[str] = []  # markdown to put back after escaping, at \x00<n>\x00

    def mark(markdown: str) -> str:
        marks.append(markdown)
        return f"\x00{len(marks) - 1}\x00"

    text = str(message)
    for path, name in (paths or {}).items():
        for variant in sorted({str(path), str(Path(path).resolve())} - {""}, key=len, reverse=True):
            text = text.replace(variant, mark(f"**{md(name)}**"))
    for pattern, replacement in _PAGE_PHRASES:
        text = re.sub(pattern, lambda m, r=replacement: re.sub(r"\{(\w+)\}", lambda f: mark(f"the **{md(names.get(f.group(1), f.group(1)))}** field"), r), text)
    return re.sub(r"\x00(\d+)\x00", lambda m: marks[int(m.group(1))], md(text))


def show_exception(prefix: str, exc: BaseException, **words: Any) -> None:
    """An inline error for a failure caused by user input or data, without a traceback dump."""
    st.error(f"{md(prefix)}: {page_words(exc, **words)}")


# -- runs, read once per script run and never fatal ------------------------------------------------------
@dataclasses.dataclass
class RunInfo:
    """What the pages need of one run, read once (files are re-read only when they change).

    ``damage`` is :attr:`lingo_core.runs.Run.damage` (a one-line reason, or None); a damaged run is
    listed as damaged and never crashes a page.
    """

    run: Run
    state: str
    status: dict[str, Any]
    config: dict[str, Any]
    summary: dict[str, Any]
    damage: Optional[str]

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def path(self) -> Path:
        return self.run.path

    def value(self, section: str, key: str) -> Any:
        values = self.config.get(section)
        return values.get(key) if isinstance(values, dict) else None

    @property
    def method(self) -> Optional[str]:
        return _text_or_none(self.value("adapter", "method"))

    @property
    def task(self) -> Optional[str]:
        return _text_or_none(self.value("data", "task"))

    @property
    def model_name(self) -> Optional[str]:
        return _text_or_none(self.value("model", "name"))

    @property
    def test_mcc(self) -> Optional[float]:
        return _finite_or_none(self.summary.get("test_mcc"))

    @property
    def has_model(self) -> bool:
        return not self.damage and _safe(lambda: self.run.has_model, False)


def _text_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _finite_or_none(value: Any) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _safe(action: Callable[[], Any], default: Any) -> Any:
    try:
        return action()
    except Exception:  # noqa: BLE001 - a damaged run directory must never crash a page
        return default


_FILES = (CONFIG, STATUS, REPORT, DATA_REPORT, METRICS, RANKS, "adapter/lingo_adapter.json", f"{CHECKPOINT}/best.pt", f"{CHECKPOINT}/state.pt")
_INFO_CACHE: "OrderedDict[str, tuple[tuple, dict, dict, Optional[str]]]" = OrderedDict()
_INFO_LOCK = threading.Lock()


def _files_stamp(path: Path) -> tuple:
    stamp = []
    for name in _FILES:
        try:
            st_ = os.stat(path / name)
            stamp.append((st_.st_mtime_ns, st_.st_size, st_.st_ino))
        except OSError:
            stamp.append(None)
    return tuple(stamp)


LIVE_RECHECK_S = 30  # a live run's logs grow every step: its summary and damage are re-read at most this often


def run_info(run: Run) -> RunInfo:
    """A :class:`RunInfo` for ``run``; its summary, config and damage are cached until a file changes.

    The status (state, progress) is read fresh every time. For a queued or running run, whose
    metrics.jsonl and ranks.jsonl grow at every step, the rest is re-read at most every
    ``LIVE_RECHECK_S`` seconds (or at a state change), so a page that polls never re-reads whole logs.
    """
    status = _safe(lambda: run.status, {"state": "unknown"})
    status = status if isinstance(status, dict) else {"state": "unknown"}
    state = status.get("state") if isinstance(status.get("state"), str) else "unknown"
    key = str(run.path)
    files = _files_stamp(run.path)
    if state in LIVE_STATES:
        files = tuple(f for name, f in zip(_FILES, files) if name not in (STATUS, METRICS, RANKS)) + (int(time.time() // LIVE_RECHECK_S),)
    stamp = (files, state)
    with _INFO_LOCK:
        cached = _INFO_CACHE.get(key)
    if cached is not None and cached[0] == stamp:
        _, config, summary, damage = cached
    else:
        config = _safe(lambda: run.config, {})
        damage = _safe(lambda: run.damage, "cannot be read")
        summary = _safe(run.summary, None) or {"id": run.id, "state": state}
        with _INFO_LOCK:
            _INFO_CACHE[key] = (stamp, config, summary, damage)
            _INFO_CACHE.move_to_end(key)
            while len(_INFO_CACHE) > 2000:
                _INFO_CACHE.popitem(last=False)
    progress = status.get("progress")
    summary = {**summary, "state": state, "damage": damage, "progress": progress if isinstance(progress, dict) else None}
    return RunInfo(run, state, status, config if isinstance(config, dict) else {}, summary, damage)


def all_runs() -> list[RunInfo]:
    """Every run under the runs folder, newest first (by creation time), damaged ones included."""
    return [run_info(r) for r in _safe(lambda: list_runs(runs_root()), [])]


def state_text(state: Optional[str]) -> str:
    state = state or "unknown"
    return f"{STATE_ICONS.get(state, '')} {state}"


def run_label(info: RunInfo, with_score: bool = False) -> str:
    """``20261125-... · ars · demo/motifs`` for pickers; with ``with_score`` its test MCC too (or that it is
    still training). Damaged runs say so."""
    task = info.task or "?"
    if "/" in task and Path(task).is_absolute():
        task = Path(task).name
    label = f"{info.id} · {info.method or '?'} · {task}"
    if info.damage:
        return label + " · damaged"
    if with_score:
        mcc = info.test_mcc
        label += f" · test MCC {mcc:.3f}" if mcc is not None else " · still training (best checkpoint so far)"
    return label


def typed_config(run: Run) -> Optional[Any]:
    """The run's validated config (:meth:`Run.typed_config`), or None when its config is broken:
    a bad run directory must never crash a page."""
    try:
        return run.typed_config()
    except Exception:  # noqa: BLE001 - unreadable YAML, unknown keys, a method no longer registered
        return None


def initial_rank(run: Run, ranks: Optional[Sequence[Mapping[str, Any]]] = None) -> Optional[int]:
    """The per-module rank a budget method starts from (``adapter.adalora.init_r``): the top of the
    colour scale of every rank chart. From the config, else from the recorded |λ| vectors (one per
    initial rank); None for other methods."""
    if not has_rank_budget(run.method):
        return None
    cfg = typed_config(run)
    if cfg is not None:
        return int(cfg.adapter.adalora.init_r)
    sizes = [len(v) for r in (ranks or [])[:1] for v in (r.get("lambdas") or {}).values() if isinstance(v, list)]
    return max(sizes) if sizes else None


def default_live_run(infos: Sequence[RunInfo]) -> Optional[str]:
    """The run the Runs page opens by default: the one training now, else the next queued, else the newest."""
    for wanted in ("running", "queued"):
        for info in infos:
            if info.state == wanted and not info.damage:
                return info.id
    return infos[0].id if infos else None


def best_finished_run(infos: Sequence[RunInfo]) -> Optional[str]:
    """The run Predict and Attribute open by default: of the finished runs of the most recent task
    (the task of the newest finished run), the one with the best test MCC."""
    done = [i for i in infos if i.state == "done" and i.has_model]
    if not done:
        return None
    task = done[0].task  # infos are newest first
    same = [i for i in done if i.task == task]
    return max(same, key=lambda i: (i.test_mcc if i.test_mcc is not None else -2.0)).id


def pick_run(
    label: str,
    infos: Sequence[RunInfo],
    key: str,
    accept: Optional[Callable[[RunInfo], bool]] = None,
    help: Optional[str] = None,
    default: Optional[str] = None,
    with_score: bool = False,
    share: str = "selected_run",
) -> Optional[RunInfo]:
    """A run selectbox. Opens ``?run=`` from the URL when a link just opened it, else the choice made
    earlier on this page, else the run last chosen on a page of the same kind (``share``: the Runs
    page and the launch buttons share ``selected_run``; Predict and Attribute share
    ``selected_model_run``), else ``default`` (see :func:`default_live_run`, :func:`best_finished_run`),
    else the newest.
    """
    choices = [i for i in infos if accept is None or accept(i)]
    if not choices:
        return None
    ids = [i.id for i in choices]
    by_id = {i.id: i for i in choices}
    from_url = st.query_params.get("run")
    url_seen = f"_{key}_url"
    if from_url in ids and st.session_state.get(url_seen) != from_url:  # a link just opened this run
        st.session_state[key] = from_url
    elif key not in st.session_state or st.session_state[key] not in ids:
        wanted = st.session_state.get(share)
        if wanted not in ids:
            wanted = default if default in ids else ids[0]
        st.session_state[key] = wanted
    chosen = st.selectbox(label, ids, key=key, format_func=lambda i: run_label(by_id[i], with_score), help=help)
    if chosen is not None:
        st.session_state[share] = chosen
        st.session_state[url_seen] = chosen
        if from_url != chosen:
            st.query_params["run"] = chosen
    return by_id.get(chosen)


def pick_model_run(key: str, help: str) -> RunInfo:
    """The Predict/Attribute run picker: runs with a trained model, the best finished run of the latest
    task by default, the choice shared between those pages. Stops the page (saying what to do) when
    no run has a model yet."""
    infos = all_runs()
    info = pick_run(
        "Trained run", infos, key=key, accept=lambda i: i.has_model, help=help, default=best_finished_run(infos),
        with_score=True, share="selected_model_run",
    )
    if info is None:
        damaged = [i for i in infos if i.damage]
        st.info("No run has a trained model yet. Finish a run first (the quickstart run on Home is the quickest).")
        if damaged:
            st.caption(f"{len(damaged)} run(s) are damaged and not offered here; the Runs page says what is wrong with each.")
        st.stop()
    return info


ATTRIBUTE_REQUEST = "attribute_request"  # session state: a sequence another page sends to Attribute


def send_to_attribute(run_id: str, seq_id: str, sequence: str, target: Optional[str] = None) -> None:
    """Open the Attribute page on ``run_id`` with this sequence filled in (and the class to explain)."""
    st.session_state[ATTRIBUTE_REQUEST] = {"run": run_id, "id": seq_id, "sequence": sequence, "target": target}
    st.switch_page("pages/attribute.py", query_params={"run": run_id})


def take_attribute_request() -> Optional[dict[str, Any]]:
    """On the Attribute page: the sequence another page sent (once), put into the page's fields; None if none."""
    request = st.session_state.pop(ATTRIBUTE_REQUEST, None)
    if not isinstance(request, dict) or not all(isinstance(request.get(k), str) for k in ("run", "id", "sequence")):
        return None
    st.session_state["attr_run"] = request["run"]
    st.session_state["attr_source"] = "Paste a sequence"
    st.session_state["attr_text"] = f">{request['id']}\n{request['sequence']}"
    st.session_state["_attr_target_wanted"] = request.get("target")
    return request


def show_damage(info: RunInfo) -> None:
    """A damaged run, shown as such: what is wrong, and that every other run is unaffected."""
    st.error(
        f"Run **{md(info.id)}** is damaged: {md(info.damage)}. Nothing of it can be shown or used here; "
        "every other run is unaffected. Restore the file from a copy, or delete the run folder."
    )


# -- reading only what is new -----------------------------------------------------------------------------
@dataclasses.dataclass
class JsonlTail:
    """The records of a growing JSONL file (metrics.jsonl, ranks.jsonl), reading only what was
    appended since the last :meth:`read`: a live page that polls every few seconds parses each
    line once. A file that was rewritten (resume truncates it; a restart removes it) is noticed
    by its inode, size and first bytes, and read again from the start. A torn last line waits for
    its end; a line that is not a JSON object is skipped."""

    path: Path
    offset: int = 0
    inode: Optional[int] = None
    head: bytes = b""
    records: list = dataclasses.field(default_factory=list)
    bytes_read: int = 0  # by the last read

    def read(self) -> bool:
        """Read what is new; True when the records changed."""
        self.bytes_read = 0
        try:
            stat = os.stat(self.path)
        except OSError:
            changed = bool(self.records)
            self.offset, self.inode, self.head, self.records = 0, None, b"", []
            return changed
        reset = False
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            reset = True
        elif self.head and stat.st_size >= len(self.head):
            try:
                with open(self.path, "rb") as handle:
                    reset = handle.read(len(self.head)) != self.head
            except OSError:
                reset = True
        if reset:
            changed = bool(self.records)
            self.offset, self.inode, self.head, self.records = 0, stat.st_ino, b"", []
        else:
            changed = False
        if stat.st_size <= self.offset:
            return changed
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(stat.st_size - self.offset)
        except OSError:
            return changed
        end = data.rfind(b"\n")
        if end < 0:
            return changed
        chunk = data[: end + 1]
        if self.offset == 0:
            self.head = chunk[:64]
        self.offset += len(chunk)
        self.bytes_read = len(chunk)
        for raw in chunk.splitlines():
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict):
                self.records.append(value)
                changed = True
        return changed


def tail(path: Path) -> JsonlTail:
    """This session's :class:`JsonlTail` of ``path``, brought up to date."""
    tails = st.session_state.setdefault("_jsonl_tails", {})
    reader = tails.get(str(path))
    if reader is None:
        reader = tails[str(path)] = JsonlTail(Path(path))
    reader.read()
    return reader


# -- checkpoints: what a cancel loses, why a run cannot resume -------------------------------------------
def step_plan(run: Run) -> Optional[Any]:
    """The run's step plan (steps, dev evaluation and checkpoint intervals), from its config and the
    training-set size its data report recorded; None when either cannot be read."""
    from lingo_core.plan import plan_steps

    cfg = typed_config(run)
    report = _safe(run.data_report, None) or {}
    counts = report.get("counts") if isinstance(report.get("counts"), dict) else {}
    n_train = (counts.get("train") or {}).get("total") if isinstance(counts.get("train"), dict) else None
    if cfg is None or not isinstance(n_train, int) or n_train < 1:
        return None
    return _safe(lambda: plan_steps(cfg, n_train), None)


def checkpoint_steps(run: Run, step: int, metrics: Sequence[Mapping[str, Any]] = ()) -> tuple[Optional[int], Optional[int]]:
    """(the step the saved checkpoint holds, the step of the next checkpoint) for a run at ``step``.

    Checkpoints are written at every ``checkpoint_every`` steps (the dev evaluation interval by
    default) and at the last step. Without a plan, the last dev evaluation stands in.
    """
    plan = step_plan(run)
    has = _safe(lambda: run.has_checkpoint, False)
    if plan is not None:
        every = max(1, int(plan.checkpoint_every))
        last = (step // every) * every if has else None
        following = min(((step // every) + 1) * every, plan.total_step)
        return (last or None) if has else None, following
    evals = [int(m["step"]) for m in metrics if "dev_mcc" in m and isinstance(m.get("step"), int)]
    return (max(evals) if evals and has else None), None


# -- sequences to score (Predict, Panel) -------------------------------------------------------------------
MAX_RECORDS = 20_000  # records scored in one request
EXAMPLE_SEQUENCES = ">example1\nGCGTACCTATAAAAGCGTTACGACGGTCCAATCGATCGTACG\n>example2\nACGTTGCAGTCAGTTAGCATCGATCGATCGGATCGATTAGCA"
INPUT_FIELDS = {"seq": "Sequence column (CSV)", "id": "Id column (CSV)"}


def digest(*parts: Any) -> str:
    """A short fingerprint of an input (text, bytes, settings): results are kept only for the input they belong to."""
    h = hashlib.sha1()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


def parse_pasted(text: str) -> list:
    """FASTA (lines starting with '>') or one sequence per line, as prediction records."""
    from lingo_core.sequence_input import parse_fasta_records, records_from_sequences

    if text.lstrip().startswith(">"):
        return parse_fasta_records(text, "the pasted text")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return records_from_sequences(lines)


def sequence_input(prefix: str) -> tuple[Optional[list], Optional[str]]:
    """Pasted or uploaded sequences (FASTA, or CSV/TSV with a sequence column) within the dashboard's limits.

    Returns the records and a fingerprint of the input (None, None when there is nothing valid to
    score); every problem is shown on the page in its own words. Widget keys start with ``prefix``.
    """
    from lingo_core.data import DataError

    source = st.radio("Input", ["Paste sequences", "Upload FASTA or CSV"], key=f"{prefix}_source", horizontal=True)
    records, input_key = None, None
    try:
        if source == "Paste sequences":
            text = st.text_area(
                f"Sequences: one per line, or FASTA (up to {MAX_PASTE_CHARS:,} characters; each sequence up to {MAX_SEQUENCE_NT:,} nt)",
                EXAMPLE_SEQUENCES, height=160, key=f"{prefix}_text", max_chars=MAX_PASTE_CHARS,
            )
            input_key = digest("paste", text)
            if text and text.strip():
                records = parse_pasted(text)
        else:
            records, input_key = _uploaded_records(prefix)
    except (DataError, ValueError) as exc:
        st.error(f"The input cannot be read: {page_words(exc, INPUT_FIELDS)}")
        records, input_key = None, None
    records = _within_limits(records)
    return (records, input_key) if records else (None, None)


def kept_result(state_key: str, result_key: Any) -> Optional[tuple]:
    """The ``(result_key, result)`` stored under ``state_key`` if it was made for ``result_key`` (this input,
    run and options); a result of anything else is dropped, so a table never describes other sequences."""
    stored = st.session_state.get(state_key)
    if stored is not None and stored[0] != result_key:
        del st.session_state[state_key]
        return None
    return stored


def _uploaded_records(prefix: str) -> tuple[Optional[list], Optional[str]]:
    from lingo_core.data import DataError
    from lingo_core.sequence_input import read_csv_input, read_fasta_input

    uploaded = st.file_uploader(
        f"FASTA (.fa/.fasta/.fna) or CSV/TSV with a sequence column (up to {UPLOAD_LIMIT_MB} MB)",
        type=["fa", "fasta", "fna", "csv", "tsv"], key=f"{prefix}_upload", max_upload_size=UPLOAD_LIMIT_MB,
    )
    c1, c2 = st.columns(2)
    sequence_column = c1.text_input(INPUT_FIELDS["seq"], "sequence", key=f"{prefix}_seq_col").strip() or "sequence"
    id_column = c2.text_input(INPUT_FIELDS["id"], "", key=f"{prefix}_id_col", help="Blank: a column named 'id' if there is one, else the line number").strip() or None
    if uploaded is None:
        return None, None
    too_big = upload_too_big(uploaded.size)
    if too_big:
        st.error(md(too_big))
        return None, None
    data = uploaded.getvalue()
    path = save_upload(data, uploaded.name)
    try:
        if path.suffix.lower() in (".csv", ".tsv"):
            records = read_csv_input(path, sequence_column, id_column)
        else:
            records = read_fasta_input(path)
    except (DataError, ValueError) as exc:
        st.error(f"The file cannot be read: {page_words(exc, INPUT_FIELDS, {path: uploaded.name})}")
        return None, None
    for record in records:  # where a record came from: the uploaded name, not the stored copy
        record.where = record.where.replace(str(path), uploaded.name)
    return records, digest("upload", data, sequence_column, id_column)


def _within_limits(records: Optional[list]) -> Optional[list]:
    """The records the dashboard scores: too many records or nucleotides refused, over-long sequences left out (said so)."""
    if records is not None and len(records) > MAX_RECORDS:
        st.error(f"{len(records):,} records; the dashboard scores up to {MAX_RECORDS:,} at a time. Split the file into smaller ones.")
        return None
    if not records:
        return records
    too_long = [r for r in records if len(r.sequence) > MAX_SEQUENCE_NT]
    if too_long:
        names = ", ".join(f"{md(r.id)} ({len(r.sequence):,} nt)" for r in too_long[:5]) + (", …" if len(too_long) > 5 else "")
        st.warning(
            f"{len(too_long)} sequence(s) are longer than {MAX_SEQUENCE_NT:,} nt, the longest the dashboard scores "
            f"(longer ones would keep the app busy for minutes): {names}. They are left out; paste or upload the region "
            f"of interest (up to {MAX_SEQUENCE_NT:,} nt) instead."
        )
        records = [r for r in records if len(r.sequence) <= MAX_SEQUENCE_NT]
    total = sum(len(r.sequence) for r in records)
    if total > MAX_TOTAL_NT:
        st.error(f"{total:,} nt in all; the dashboard scores up to {MAX_TOTAL_NT:,} nt at a time. Split the input into smaller parts.")
        return None
    return records


# -- uploads ---------------------------------------------------------------------------------------------
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
        return (
            f"The file is {size / 1024 / 1024:.1f} MB; the dashboard accepts files up to {UPLOAD_LIMIT_MB} MB. "
            "Split it into smaller files, or subsample it before uploading."
        )
    return None


_NEGATIVE_LABEL = re.compile(r"^(0|no|n|neg|negative|false|f|other|others|none|non\b.*|non-.*|not\b.*|not-.*|background|random|control|decoy|absent|unbound|low)$", re.I)


def _is_integer(text: str) -> bool:
    try:
        return float(text) == int(float(text))
    except (ValueError, OverflowError):
        return False


def label_mapping(values: Sequence[str]) -> Optional[dict[str, int]]:
    """Classes for text labels (``promoter``/``other``): None when every label is already an integer.

    A label that reads as "negative" (other, negative, no, non-…, background…) becomes class 0 when
    exactly one does; otherwise classes follow alphabetical order.
    """
    distinct = sorted({str(v).strip() for v in values if str(v).strip()})
    if not distinct or all(_is_integer(v) for v in distinct):
        return None
    negative = [v for v in distinct if _NEGATIVE_LABEL.match(v)]
    order = negative + [v for v in distinct if v not in negative] if len(negative) == 1 else distinct
    return {value: index for index, value in enumerate(order)}


def map_text_labels(data: bytes, name: str, label_columns: Sequence[str]) -> Optional[tuple[bytes, dict[str, int]]]:
    """Text class labels of an uploaded CSV/TSV (one label column) or FASTA (``>id|label``) file
    rewritten as class numbers: ``(new bytes, {label: class})``, or None when there is nothing to map
    (integer labels, several label columns, or a file the loader will report on itself)."""
    suffix = Path(name).suffix.lower()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if suffix in (".csv", ".tsv"):
        if len(label_columns) != 1:
            return None
        import pandas as pd

        try:
            frame = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        except Exception:  # noqa: BLE001 - the loader says what is wrong with the file
            return None
        column = label_columns[0]
        if column not in frame.columns:
            return None
        mapping = label_mapping(list(frame[column]))
        if mapping is None:
            return None
        frame[column] = [str(mapping[v.strip()]) if v.strip() in mapping else v for v in frame[column]]
        return frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ",").encode(), mapping
    if suffix in (".fa", ".fasta", ".fna"):
        lines = text.splitlines(keepends=True)
        labels = []
        for line in lines:
            if line.startswith(">"):
                token = (line[1:].split() or [""])[0]
                if "|" not in token:
                    return None
                labels.append(token.rsplit("|", 1)[1])
        mapping = label_mapping(labels)
        if mapping is None:
            return None
        out = []
        for line in lines:
            if line.startswith(">"):
                token = line[1:].split()[0]
                record_id, label = token.rsplit("|", 1)
                line = ">" + f"{record_id}|{mapping.get(label.strip(), label)}" + line[1 + len(token):]
            out.append(line)
        return "".join(out).encode(), mapping
    return None


def mapping_text(mapping: Mapping[str, int]) -> str:
    """``**other** → class 0, **promoter** → class 1`` (escaped)."""
    return ", ".join(f"**{md(label)}** → class {index}" for label, index in mapping.items())


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


@st.cache_resource(max_entries=2, show_spinner="Loading the backbone and every task's adapter…")
def panel_for(run_dirs: tuple[str, ...], stamps: tuple[str, ...]):
    """A cached ``lingo_core.panel.Panel`` of these runs; ``stamps`` (their weights stamps) change when a run's weights do."""
    from lingo_core.panel import load_panel

    return load_panel(list(run_dirs))


@st.cache_resource(max_entries=8, show_spinner="Grouping the finished runs by base model…")
def panel_grouping(run_dirs: tuple[str, ...], stamps: tuple[str, ...]):
    """``lingo_core.panel.group_compatible`` of these runs (cached until a run's weights change)."""
    from lingo_core.panel import group_compatible

    return group_compatible(list(run_dirs))


# -- time estimates ------------------------------------------------------------------------------------------
_COST_CACHE: "OrderedDict[tuple, Optional[float]]" = OrderedDict()


def earlier_costs(infos: Sequence[RunInfo], limit: int = 40) -> list[tuple[str, Optional[float]]]:
    """(model name, measured seconds per sequence-token) of the newest finished or running runs here."""
    from pages._estimate import measured_cost

    out = []
    for info in infos[:limit]:
        if info.damage or info.state not in ("done", "running") or not info.model_name:
            continue
        key = (str(info.path), _files_stamp(info.path))
        if key not in _COST_CACHE:
            _COST_CACHE[key] = _safe(lambda: measured_cost(info.config, info.status, info.run.report(), info.run.data_report()), None)
            while len(_COST_CACHE) > 500:
                _COST_CACHE.popitem(last=False)
        out.append((info.model_name, _COST_CACHE[key]))
    return out


@st.cache_data(ttl=300, show_spinner="Measuring this machine's speed for the time estimate…")
def machine_gflops() -> float:
    """This machine's matrix-product speed now (cached five minutes): the benchmark behind estimates."""
    from pages._estimate import machine_gflops as measure

    return measure()


def queue_ahead_text(root: Optional[Path] = None) -> str:
    """`` It starts after the 2 runs ahead of it.`` when others are queued or running, else ""."""
    ahead = _safe(lambda: launcher.active_runs(root or runs_root()), [])
    return f" It starts after the {len(ahead)} run(s) ahead of it in the queue." if ahead else ""
