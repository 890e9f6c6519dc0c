"""Chart data builders and plotly figures for the dashboard, as plain functions.

Everything here takes the records of the run-directory read API (``Run.metrics()``,
``Run.ranks()``, ``Run.report()``, ``Run.summary()``) and the planned budget schedule
(:class:`lingo_core.plan.BudgetSchedule`) and returns pandas frames or plotly figures; nothing
imports Streamlit, so every builder is unit-tested on its own (tests/test_dashboard.py).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

if TYPE_CHECKING:
    from ..plan import BudgetSchedule

DEV_METRICS = ("dev_mcc", "dev_auroc", "dev_auprc", "dev_f1", "dev_accuracy")
STATE_ICONS = {  # Streamlit material icons (markdown); tables show the plain state
    "queued": ":material/hourglass_empty:",
    "running": ":material/directions_run:",
    "done": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/block:",
    "interrupted": ":material/warning:",
    "unknown": ":material/help:",
}
KIND_COLOURS = {"prompt": "#cfe2ff", "special": "#e2e3e5"}
SEQUENCE_COLOURS = ("#c7f0d2", "#fde2b8")  # alternate so token boundaries stay visible


# -- frames ----------------------------------------------------------------------------------------
def loss_frame(metrics: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Training loss per optimizer step: columns ``step``, ``loss``."""
    rows = [{"step": m["step"], "loss": m["loss"]} for m in metrics if "loss" in m and "step" in m]
    return pd.DataFrame(rows, columns=["step", "loss"])


def dev_frame(metrics: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Dev metrics in long form: columns ``step``, ``metric`` (mcc, auroc...), ``value``."""
    rows = []
    for m in metrics:
        for key in (*DEV_METRICS, "dev_loss"):
            value = m.get(key)
            if value is not None and "step" in m and _finite(value):
                rows.append({"step": m["step"], "metric": key.removeprefix("dev_"), "value": float(value)})
    return pd.DataFrame(rows, columns=["step", "metric", "value"])


def budget_frame(ranks: Sequence[Mapping[str, Any]], schedule: Optional[BudgetSchedule] = None) -> pd.DataFrame:
    """Per allocation: ``step``, ``budget`` (recorded b(t)), ``active`` (sum of active ranks),
    ``scheduled`` (the planned b(t) at that step, from :mod:`lingo_core.plan`, when known),
    ``pruned``, ``reintroduced``."""
    rows = []
    for r in ranks:
        rows.append(
            {
                "step": r["step"],
                "budget": r.get("budget"),
                "active": int(sum((r.get("active") or {}).values())),
                "scheduled": schedule.at(r["step"]) if schedule else None,
                "pruned": sum(len(v) for v in (r.get("pruned") or {}).values()),
                "reintroduced": sum(len(v) for v in (r.get("reintroduced") or {}).values()),
            }
        )
    return pd.DataFrame(rows, columns=["step", "budget", "active", "scheduled", "pruned", "reintroduced"])


def schedule_frame(schedule: BudgetSchedule) -> pd.DataFrame:
    """The planned b(t) (:meth:`lingo_core.plan.BudgetSchedule.curve`) at every step ``0..total_step``:
    columns ``step``, ``scheduled``."""
    steps, values = schedule.curve()
    return pd.DataFrame({"step": steps, "scheduled": values})


def modules_of(ranks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Module names in recorded order (first appearance over all records)."""
    seen: dict[str, None] = {}
    for r in ranks:
        for name in r.get("active") or {}:
            seen.setdefault(name, None)
    return list(seen)


def rank_heatmap_data(ranks: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[int], np.ndarray]:
    """Modules, steps and a module x step matrix of active ranks (NaN where a module is unrecorded)."""
    modules = modules_of(ranks)
    steps = [int(r["step"]) for r in ranks]
    z = np.full((len(modules), len(steps)), np.nan)
    index = {m: i for i, m in enumerate(modules)}
    for j, r in enumerate(ranks):
        for name, value in (r.get("active") or {}).items():
            z[index[name], j] = value
    return modules, steps, z


def lambda_frames(ranks: Sequence[Mapping[str, Any]], module: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """|lambda| trajectories of one module and its events.

    Returns ``(values, events)``: ``values`` has ``step``, ``index`` (singular value number),
    ``value`` (|lambda|); ``events`` has ``step``, ``index``, ``value``, ``kind`` in
    ``pruned``/``reintroduced``/``sampled``. A pruned value is drawn at its last value before
    pruning (peft zeroes it), so the marker sits where the line left off.
    """
    rows, events = [], []
    previous: dict[int, float] = {}
    for r in ranks:
        step = int(r["step"])
        values = (r.get("lambdas") or {}).get(module)
        if values is None:
            continue
        for i, v in enumerate(values):
            rows.append({"step": step, "index": i, "value": float(v)})
        for kind in ("pruned", "reintroduced", "sampled"):
            for i in (r.get(kind) or {}).get(module, []) or []:
                if not 0 <= int(i) < len(values):
                    continue
                value = previous.get(int(i), values[int(i)]) if kind == "pruned" else values[int(i)]
                events.append({"step": step, "index": int(i), "value": float(value), "kind": kind})
        previous = {i: float(v) for i, v in enumerate(values)}
    return (
        pd.DataFrame(rows, columns=["step", "index", "value"]),
        pd.DataFrame(events, columns=["step", "index", "value", "kind"]),
    )


_TYPE_PREFIXES = ("attention.self.", "self_attn.", "attn.", "mlp.")


def split_module(name: str) -> tuple[Optional[int], str]:
    """``"3.attention.self.query"`` -> ``(3, "query")``; ``"transformer.h.1.mlp.c_fc"`` -> ``(1, "c_fc")``.

    The layer is the first all-digit component of the dotted name; the type is what follows,
    without the usual attention/MLP container prefixes. Names without a layer keep ``None``.
    """
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            rest = ".".join(parts[i + 1 :])
            for prefix in _TYPE_PREFIXES:
                if rest.startswith(prefix):
                    rest = rest[len(prefix) :]
                    break
            return int(part), rest or name
    return None, name


def final_ranks(ranks: Sequence[Mapping[str, Any]], report: Optional[Mapping[str, Any]] = None) -> tuple[dict[str, int], str]:
    """The final rank per module and where it comes from.

    ``report.json``'s ``final_ranks`` (the dev-selected pattern) when the run finished, else the
    latest allocation record (the run is still training); ``({}, "")`` when neither exists.
    """
    if report and report.get("final_ranks"):
        return {k: int(v) for k, v in report["final_ranks"].items()}, "dev-selected checkpoint (report.json)"
    if ranks:
        last = ranks[-1]
        return {k: int(v) for k, v in (last.get("active") or {}).items()}, f"latest allocation (step {last['step']})"
    return {}, ""


def rank_pattern_frame(pattern: Mapping[str, int]) -> pd.DataFrame:
    """A layer x module-type table of ranks (rows: layers in order; columns: types in first-seen order)."""
    return module_grid_frame({name: int(rank) for name, rank in pattern.items()})


def module_grid_frame(values: Mapping[str, float]) -> pd.DataFrame:
    """A layer x module-type table of per-module values (ranks, update norms)."""
    cells: dict[tuple[Any, str], float] = {}
    layers: dict[Any, None] = {}
    types: dict[str, None] = {}
    for name, value in values.items():
        layer, kind = split_module(name)
        key = layer if layer is not None else "-"
        layers.setdefault(key, None)
        types.setdefault(kind, None)
        cells[(key, kind)] = value
    frame = pd.DataFrame(index=list(layers), columns=list(types), dtype=float)
    for (layer, kind), value in cells.items():
        frame.loc[layer, kind] = value
    frame.index.name = "layer"
    return frame


def update_norm_frame(ranks: Sequence[Mapping[str, Any]], module: str) -> pd.DataFrame:
    """‖ΔW‖ of one module at every allocation that recorded it: columns ``step``, ``norm``."""
    rows = [
        {"step": int(r["step"]), "norm": float(r["update_norms"][module])}
        for r in ranks
        if module in (r.get("update_norms") or {})
    ]
    return pd.DataFrame(rows, columns=["step", "norm"])


def _text(value: Any, digits: Optional[int] = None, suffix: str = "") -> str:
    """A table cell as text: ``–`` for missing or non-finite values (never a literal "None")."""
    if value is None or value == "":
        return "–"
    if digits is not None:
        return f"{float(value):.{digits}f}{suffix}" if _finite(value) else "–"
    return f"{value}{suffix}"


def run_link(run_id: str, page: str = "runs") -> str:
    """A relative link to a run on a page (``runs?run=<id>``), for ``st.column_config.LinkColumn``."""
    from urllib.parse import quote

    return f"{page}?run={quote(str(run_id), safe='')}"


RUN_LINK_TEXT = r"run=(.*)$"  # LinkColumn display_text: show the run id of the link


def runs_table(summaries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The Home page table: one row per run, every cell text (``–`` when there is nothing to show).

    ``run`` is a link to the run on the Runs page (:func:`run_link`); a damaged run (``damage`` in its
    summary) reads ``damaged`` with the reason in ``problem``.
    """
    rows = []
    for s in summaries:
        progress = s.get("progress") if isinstance(s.get("progress"), Mapping) else {}
        fraction = progress.get("fraction")
        damage = s.get("damage")
        rows.append(
            {
                "run": run_link(s["id"]),
                "status": "damaged" if damage else (s.get("state") or "unknown"),
                "progress": _text(100 * float(fraction), 0, " %") if _finite(fraction) else "–",
                "method": _text(s.get("method")),
                "task": _text(s.get("task")),
                "best dev MCC": _text(s.get("best_dev_mcc"), 3),
                "test MCC": _text(s.get("test_mcc"), 3),
                "trainable %": _text(s.get("trainable_percent"), 3),
                "problem": str(damage) if damage else "",
            }
        )
    return pd.DataFrame(rows, columns=RUNS_COLUMNS)


RUNS_COLUMNS = ["run", "status", "progress", "method", "task", "best dev MCC", "test MCC", "trainable %", "problem"]
# the best dev MCC comes before the cost columns so a narrow page never cuts it off
COMPARE_COLUMNS = ["run", "method", "task", "MCC", "AUROC", "AUPRC", "best dev MCC", "trainable %", "wall time (s)", "state", "model"]


def compare_table(summaries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The Compare page table: test metrics of the dev-selected checkpoints, cost, method and task."""
    rows = []
    for s in summaries:
        rows.append(
            {
                "run": s["id"],
                "method": s.get("method"),
                "task": s.get("task"),
                "MCC": _round(s.get("test_mcc")),
                "AUROC": _round(s.get("test_auroc")),
                "AUPRC": _round(s.get("test_auprc")),
                "best dev MCC": _round(s.get("best_dev_mcc")),
                "trainable %": _round(s.get("trainable_percent"), 3),
                "wall time (s)": _round(s.get("wall_time_s"), 1),
                "state": "damaged" if s.get("damage") else s.get("state"),
                "model": s.get("model"),
            }
        )
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def short_run_labels(run_ids: Sequence[str]) -> dict[str, str]:
    """Readable unique labels: ``20261125-153000-ars-demo_motifs-3f2a`` -> ``ars demo_motifs 3f2a``."""
    labels = {}
    for run_id in run_ids:
        parts = run_id.split("-")
        label = " ".join(parts[2:]) if len(parts) > 3 and parts[0].isdigit() else run_id
        labels[run_id] = label
    if len(set(labels.values())) < len(labels):
        return {r: r for r in run_ids}
    return labels


# -- token preview ---------------------------------------------------------------------------------
def token_preview_html(tokens: Sequence[str], kinds: Sequence[str], spans: Sequence[Optional[tuple[int, int]]], sequence: str) -> str:
    """HTML of tokens coloured by kind (prompt / sequence / special), each sequence token with its
    nucleotide span and letters. Every user-controlled string is HTML-escaped."""
    boxes = []
    n_seq = 0
    for token, kind, span in zip(tokens, kinds, spans):
        if kind == "sequence" and span is not None:
            colour = SEQUENCE_COLOURS[n_seq % 2]
            n_seq += 1
            start, end = span
            letters = sequence[start:end]
            caption = f"{start + 1}–{end}" if end - start > 1 else f"{start + 1}"
            title = f"token {token!r} covers nucleotides {start + 1}-{end}: {letters}"
            inner = (
                f"<code>{html.escape(token)}</code><br>"
                f"<small style='color:#555'>{html.escape(caption)} · {html.escape(letters)}</small>"
            )
        else:
            colour = KIND_COLOURS.get(kind, "#eeeeee")
            title = f"{kind} token {token!r}"
            inner = f"<code>{html.escape(token)}</code><br><small style='color:#555'>{html.escape(kind)}</small>"
        boxes.append(
            f"<span class='lingo-token lingo-{html.escape(kind)}' title=\"{html.escape(title, quote=True)}\" "
            f"style='display:inline-block;margin:2px;padding:2px 5px;border-radius:4px;"
            f"background:{colour};line-height:1.2;text-align:center'>{inner}</span>"
        )
    return "<div class='lingo-token-preview' style='line-height:2'>" + "".join(boxes) + "</div>"


def token_summary(kinds: Sequence[str], spans: Sequence[Optional[tuple[int, int]]], sequence: str) -> dict[str, Any]:
    """Counts for the preview caption: tokens by kind and nucleotides per sequence token."""
    n_prompt = sum(k == "prompt" for k in kinds)
    n_special = sum(k == "special" for k in kinds)
    n_seq = sum(k == "sequence" for k in kinds)
    covered = max((s[1] for s in spans if s is not None), default=0)
    return {
        "tokens": len(kinds),
        "prompt": n_prompt,
        "special": n_special,
        "sequence": n_seq,
        "nucleotides": len(sequence),
        "covered": covered,
        "nt_per_token": round(covered / n_seq, 2) if n_seq else None,
    }


# -- figures ---------------------------------------------------------------------------------------
def _layout(fig: go.Figure, title: str, height: int = 320, **kwargs: Any) -> go.Figure:
    layout: dict[str, Any] = {"margin": dict(l=50, r=20, t=50, b=40)}
    layout.update(kwargs)
    fig.update_layout(title=title, height=height, **layout)
    return fig


def loss_figure(frame: pd.DataFrame) -> go.Figure:
    """Training loss against step."""
    fig = go.Figure(go.Scatter(x=frame["step"], y=frame["loss"], mode="lines", name="train loss"))
    return _layout(fig, "Training loss", height=380, xaxis_title="step", yaxis_title="loss", margin=dict(l=50, r=20, t=50, b=110))


def dev_figure(frame: pd.DataFrame) -> go.Figure:
    """Dev metrics against step (loss on its own axis)."""
    fig = go.Figure()
    for metric, part in frame.groupby("metric", sort=False):
        fig.add_trace(
            go.Scatter(
                x=part["step"], y=part["value"], mode="lines+markers", name=f"dev {metric}",
                yaxis="y2" if metric == "loss" else "y",
            )
        )
    return _layout(
        fig, "Dev metrics", height=380, xaxis_title="step", yaxis_title="metric",
        yaxis2=dict(title="dev loss", overlaying="y", side="right", showgrid=False),
        legend=dict(orientation="h", yanchor="top", y=-0.3), margin=dict(l=50, r=20, t=50, b=110),
    )


SECONDARY = "#8c8c8c"  # the colour of secondary axes (event counts)


def budget_figure(frame: pd.DataFrame, schedule: Optional[pd.DataFrame] = None) -> go.Figure:
    """Total rank budget b(t) against its cubic schedule, with pruning/reintroduction counts as bars.

    The counts sit on a secondary, integer axis on the right, scaled so the bars fill the lower third:
    the b(t) lines are drawn over them (plotly draws an overlaying axis's traces on top), never hidden.
    """
    fig = go.Figure()
    events = len(frame) > 0
    rank_axis = "y2" if events else "y"  # lines on the overlaying axis: drawn above the bars
    if schedule is not None and len(schedule):
        fig.add_trace(go.Scatter(x=schedule["step"], y=schedule["scheduled"], mode="lines", name="cubic schedule b(t)", line=dict(dash="dash", color="#555", width=2), yaxis=rank_axis))
    layout: dict[str, Any] = {}
    if events:
        top = max(1, int(max(frame["pruned"].max(), frame["reintroduced"].max())))
        fig.add_trace(go.Bar(x=frame["step"], y=frame["pruned"], name="pruned (count)", marker_color="#d62728", opacity=0.35, yaxis="y"))
        fig.add_trace(go.Bar(x=frame["step"], y=frame["reintroduced"], name="reintroduced (count)", marker_color="#9467bd", opacity=0.45, yaxis="y"))
        fig.add_trace(go.Scatter(x=frame["step"], y=frame["active"], mode="lines+markers", name="active ranks (sum)", line=dict(color="#1f77b4", width=2.5), yaxis=rank_axis))
        fig.add_trace(go.Scatter(x=frame["step"], y=frame["budget"], mode="markers", name="recorded budget", marker=dict(symbol="x", color="#2ca02c", size=8), yaxis=rank_axis))
        layout["yaxis"] = dict(
            title=dict(text="events per allocation", font=dict(color=SECONDARY, size=11)), side="right", showgrid=False,
            range=[0, 3 * top], tickmode="linear", tick0=0, dtick=max(1, math.ceil(top / 3)), tickformat="d",
            tickfont=dict(color=SECONDARY, size=10), zeroline=False,
        )
        layout["yaxis2"] = dict(title="total rank", overlaying="y", side="left", rangemode="tozero", tickformat="d")
    else:
        layout["yaxis"] = dict(title="total rank", rangemode="tozero", tickformat="d")
    return _layout(
        fig, "Total rank budget b(t)", xaxis_title="step", barmode="group", bargap=0.3,
        legend=dict(orientation="h", yanchor="top", y=-0.3), margin=dict(l=60, r=60, t=50, b=90), **layout,
    )


def rank_colour(zmax: Optional[float]) -> dict[str, Any]:
    """One colour scale for every rank heat map: 0..``zmax`` (the run's init_r), integer colour-bar ticks."""
    top = float(zmax) if zmax else None
    bar: dict[str, Any] = {"title": "rank"}
    if top is not None and top <= 16:
        bar.update(tickmode="linear", tick0=0, dtick=1 if top <= 8 else 2)
    return {"colorscale": "Viridis", "zmin": 0, "zmax": top, "colorbar": bar}


def rank_heatmap_figure(modules: Sequence[str], steps: Sequence[int], z: np.ndarray, zmax: Optional[float] = None) -> go.Figure:
    """Module x step heat map of active ranks, on the colour scale 0..``zmax`` (init_r; else the largest rank)."""
    if zmax is None and np.isfinite(z).any():
        zmax = float(np.nanmax(z))
    fig = go.Figure(
        go.Heatmap(
            z=z, x=[str(s) for s in steps], y=list(modules), **rank_colour(zmax),
            hovertemplate="module %{y}<br>step %{x}<br>rank %{z}<extra></extra>",
        )
    )
    height = max(320, 16 * len(modules) + 120)
    return _layout(
        fig, "Active rank per module", height=height, xaxis_title="step", xaxis_type="category",
        yaxis=dict(autorange="reversed", tickmode="array", tickvals=list(modules), tickfont=dict(size=10)),
    )


EVENT_STYLE = {
    "pruned": dict(symbol="x", color="#d62728", size=9),
    "reintroduced": dict(symbol="triangle-up", color="#2ca02c", size=10),
    "sampled": dict(symbol="circle-open", color="#9467bd", size=11),
}


def lambda_figure(values: pd.DataFrame, events: pd.DataFrame, module: str) -> go.Figure:
    """|lambda| trajectories of one module, one line per singular value, events as markers.

    With few allocations each value is drawn with markers too (a single allocation is a column of
    points, not an empty chart), and the step axis has whole-number ticks.
    """
    fig = go.Figure()
    steps = sorted(set(values["step"])) if len(values) else []
    mode = "lines+markers" if len(steps) <= 12 else "lines"
    for index, part in values.groupby("index"):
        fig.add_trace(go.Scatter(x=part["step"], y=part["value"], mode=mode, name=f"λ{index}", marker=dict(size=7)))
    for kind, style in EVENT_STYLE.items():
        part = events[events["kind"] == kind] if len(events) else events
        if len(part):
            fig.add_trace(
                go.Scatter(
                    x=part["step"], y=part["value"], mode="markers", name=kind, marker=style,
                    text=[f"λ{i}" for i in part["index"]], hovertemplate=f"{kind} %{{text}} at step %{{x}}<extra></extra>",
                )
            )
    return _layout(fig, f"|λ| trajectories — {module}", height=360, xaxis=step_axis(steps), yaxis_title="|λ|")


def step_axis(steps: Sequence[int]) -> dict[str, Any]:
    """An x axis of optimizer steps with whole-number ticks: the recorded steps themselves when
    there are few (one allocation at step 30 reads "30", not 29.5 / 30.5), else integer ticks."""
    steps = [int(s) for s in steps]
    if not steps:
        return {"title": "step"}
    if len(steps) <= 8:
        pad = max(1, (max(steps) - min(steps)) // 10 or 1)
        return {"title": "step", "tickmode": "array", "tickvals": steps, "ticktext": [str(s) for s in steps],
                "range": [min(steps) - pad, max(steps) + pad]}
    return {"title": "step", "tickformat": "d"}


def update_norm_figure(frame: pd.DataFrame, module: str) -> go.Figure:
    """‖ΔW‖ of one module over the allocations: whether its adapter changes the layer at all."""
    fig = go.Figure(go.Scatter(x=frame["step"], y=frame["norm"], mode="lines+markers", name="‖ΔW‖"))
    return _layout(fig, f"Update size ‖ΔW‖ — {module}", height=260, xaxis_title="step", yaxis_title="‖ΔW‖ (Frobenius)")


def update_norms_figure(norms: Mapping[str, float], title: str = "Update size ‖ΔW‖ per layer (exported adapter)") -> go.Figure:
    """Layer x module-type heat map of the exported adapter's per-module update norms."""
    frame = module_grid_frame(norms)
    z = frame.to_numpy(dtype=float)
    text = [["" if math.isnan(v) else f"{v:.3g}" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z, x=list(frame.columns), y=[str(i) for i in frame.index], text=text, texttemplate="%{text}",
            colorscale="Cividis", zmin=0, colorbar=dict(title="‖ΔW‖"),
            hovertemplate="layer %{y}<br>%{x}<br>‖ΔW‖ %{z:.4g}<extra></extra>",
        )
    )
    return _layout(fig, title, height=max(260, 28 * len(frame) + 140), xaxis_title="module", yaxis_title="layer", yaxis=dict(autorange="reversed", type="category"))


def rank_pattern_figure(frame: pd.DataFrame, title: str = "Final rank per layer", zmax: Optional[float] = None) -> go.Figure:
    """Layer x module-type heat map of final ranks, values written in the cells, on the colour scale
    0..``zmax`` (init_r) shared with every other rank heat map."""
    z = frame.to_numpy(dtype=float)
    if zmax is None and np.isfinite(z).any():
        zmax = float(np.nanmax(z))
    text = [["" if math.isnan(v) else str(int(v)) for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z, x=list(frame.columns), y=[str(i) for i in frame.index], text=text, texttemplate="%{text}",
            **rank_colour(zmax), hovertemplate="layer %{y}<br>%{x}<br>rank %{z}<extra></extra>",
        )
    )
    return _layout(fig, title, height=max(260, 28 * len(frame) + 140), xaxis_title="module", yaxis_title="layer", yaxis=dict(autorange="reversed", type="category"))


def compare_figure(table: pd.DataFrame, labels: Optional[Mapping[str, str]] = None) -> go.Figure:
    """Grouped bars of test MCC / AUROC / AUPRC per run."""
    labels = labels or {}
    x = [labels.get(r, r) for r in table["run"]]
    fig = go.Figure()
    for metric in ("MCC", "AUROC", "AUPRC"):
        fig.add_trace(go.Bar(x=x, y=table[metric], name=metric))
    return _layout(fig, "Test metrics (dev-selected checkpoint)", barmode="group", yaxis_title="score", legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"))


LOG_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)


def cost_figure(table: pd.DataFrame, labels: Optional[Mapping[str, str]] = None) -> go.Figure:
    """Test MCC against trainable-parameter share, one labelled point per run.

    A log x axis when the shares span more than a factor of 3, with every tick written in full
    ("0.5 %", "1 %", "2 %", never a bare "2 5 1 2 5"); the axes leave room for the point labels.
    """
    labels = labels or {}
    done = table.dropna(subset=["trainable %", "MCC"])
    fig = go.Figure(
        go.Scatter(
            x=done["trainable %"], y=done["MCC"], mode="markers+text", text=[labels.get(r, r) for r in done["run"]],
            textposition="top center", marker=dict(size=12), cliponaxis=False,
            hovertemplate="%{text}<br>trainable %{x:.3g} %<br>test MCC %{y:.3f}<extra></extra>",
        )
    )
    x = [float(v) for v in done["trainable %"] if _finite(v) and float(v) > 0]
    xaxis: dict[str, Any] = {"title": "trainable parameters (% of the model)"}
    if len(x) > 1 and max(x) / min(x) > 3:
        lo, hi = math.log10(min(x)) - 0.3, math.log10(max(x)) + 0.3
        ticks = [t for t in LOG_TICKS if lo <= math.log10(t) <= hi] or [round(min(x), 3), round(max(x), 3)]
        xaxis.update(type="log", tickmode="array", tickvals=ticks, ticktext=[f"{t:g} %" for t in ticks], range=[lo, hi])
    else:
        xaxis.update(ticksuffix=" %")
        if x:
            pad = max(0.1 * (max(x) - min(x)), 0.1 * max(x), 0.01)
            xaxis["range"] = [max(0.0, min(x) - pad), max(x) + pad]
    y = [float(v) for v in done["MCC"] if _finite(v)]
    yaxis: dict[str, Any] = {"title": "test MCC"}
    if y:
        span = max(max(y) - min(y), 0.1)
        yaxis["range"] = [min(y) - 0.15 * span, max(y) + 0.35 * span]  # headroom for the labels above the points
    return _layout(fig, "MCC against trainable parameters", xaxis=xaxis, yaxis=yaxis, margin=dict(l=60, r=40, t=60, b=50))


# -- live progress and polling ---------------------------------------------------------------------------
def parse_time(stamp: Any) -> Optional[float]:
    """A run file's ISO 8601 time stamp as POSIX seconds, or None."""
    import datetime as _dt

    if not isinstance(stamp, str):
        return None
    try:
        return _dt.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def live_progress(status: Mapping[str, Any], step: Optional[int], total: Optional[int], now: float) -> dict[str, Any]:
    """Step, elapsed time and ETA of a run as of ``now``, moving with the step counter.

    status.json's ``progress`` is written every few steps; the latest step comes from metrics.jsonl
    (every step). Elapsed time counts on from the last progress stamp while the run is running, and
    the ETA is the remaining steps at the measured seconds per step. Returns ``step``, ``total``,
    ``elapsed_s`` and ``eta_s`` (None when not known yet).
    """
    progress = status.get("progress") if isinstance(status.get("progress"), Mapping) else {}
    base_step = progress.get("step") if _finite(progress.get("step")) else 0
    step = max(int(base_step or 0), int(step or 0))
    total = total or (int(progress["total_step"]) if _finite(progress.get("total_step")) else None)
    elapsed = float(progress["elapsed_s"]) if _finite(progress.get("elapsed_s")) else None
    running = status.get("state") == "running"
    stamp = parse_time(status.get("updated"))
    if running and elapsed is not None and stamp is not None:
        elapsed += max(0.0, now - stamp)
    elif running and elapsed is None:
        started = parse_time(status.get("started"))
        elapsed = max(0.0, now - started) if started is not None else None
    eta = None
    if running and total and step and elapsed:
        per_step = (float(progress["elapsed_s"]) / base_step) if base_step and _finite(progress.get("elapsed_s")) and float(progress["elapsed_s"]) > 0 else elapsed / step
        eta = max(0.0, per_step * (total - step))
    return {"step": step, "total": total, "elapsed_s": elapsed, "eta_s": eta}


def duration_text(seconds: Optional[float]) -> str:
    """``45 s``, ``12 min``, ``1 h 05 min``; ``–`` when unknown."""
    if seconds is None or not _finite(seconds):
        return "–"
    seconds = max(0, int(round(float(seconds))))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def poll_interval(state: Optional[str], idle_s: float) -> Optional[float]:
    """How often a page should look at a run again: every 2 s while it trains and changes, backing off
    to 5 s and then 15 s while nothing changes (loading, a long evaluation, a queue wait), and never
    once it has ended (None)."""
    if state not in ("queued", "running"):
        return None
    if state == "queued":
        return 5.0 if idle_s < 120 else 15.0
    if idle_s < 30:
        return 2.0
    return 5.0 if idle_s < 180 else 15.0


def logo_headroom(fig: Any, fraction: float = 0.15) -> Any:
    """Room above and below the letters of every axis of a (logomaker) matplotlib figure: logomaker
    sets the y limits to the tallest stack exactly, so the top letters touched the frame and were cut."""
    for ax in fig.axes:
        low, high = ax.get_ylim()
        span = (high - low) or 1.0
        ax.set_ylim(low - (fraction * span if low < 0 else 0.0), high + fraction * span)
    try:
        fig.tight_layout()
    except (ValueError, RuntimeError):
        pass
    return fig


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _round(value: Any, digits: int = 4) -> Optional[float]:
    return round(float(value), digits) if _finite(value) else None
