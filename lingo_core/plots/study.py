"""The study report's figures (matplotlib PNGs): per-task bars, dev curves, the parameter/metric
Pareto plot, rank patterns and rank dynamics.

The rank figures take the same records as the dashboard (``report.json``'s ``final_ranks``,
``Run.ranks()``) and reuse its data builders (:mod:`lingo_core.plots.charts`), so a module is named
and ordered the same way in the app, the notebooks and a study report.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from .charts import rank_heatmap_data, rank_pattern_frame


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (PNG, 110 dpi) and close it."""
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _panels(n: int, width: float, height: float):
    """A grid of up to 3 panels per row for ``n`` panels; the unused ones are switched off."""
    plt = _pyplot()
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n], nrows


def plot_task_bars(table: pd.DataFrame, path: Path, metric: str = "test_mcc", title: str = "", x: str = "method") -> Optional[Path]:
    """One panel per task: a bar per ``x`` value (mean over seeds) with the seed spread (std) and seed dots."""
    done = table[(table["status"] == "done") & table[metric].notna()]
    if done.empty:
        return None
    tasks = list(dict.fromkeys(done["task"]))
    fig, axes, nrows = _panels(len(tasks), 4.6, 3.2)
    for ax, task in zip(axes, tasks):
        sub = done[done["task"] == task]
        labels = list(dict.fromkeys(sub[x]))
        means = [sub[sub[x] == lab][metric].mean() for lab in labels]
        stds = [sub[sub[x] == lab][metric].std() if (sub[x] == lab).sum() > 1 else 0.0 for lab in labels]
        pos = np.arange(len(labels))
        ax.bar(pos, means, yerr=stds, capsize=3, color="#8fb3d9", edgecolor="#2d5d8c")
        for i, lab in enumerate(labels):
            vals = sub[sub[x] == lab][metric].to_numpy()
            ax.scatter(np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals, s=10, color="black", zorder=3)
        ax.set_xticks(pos)
        ax.set_xticklabels([str(lab) for lab in labels], rotation=40, ha="right", fontsize=8)
        ax.set_title(task, fontsize=9)
        ax.set_ylabel(metric.replace("_", " "), fontsize=8)
        ax.axhline(0, color="grey", lw=0.5)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (3.2 * nrows)))  # keep the title clear of the panels
    return save_figure(fig, path)


def curve_points(curve: Any) -> list[tuple[float, float]]:
    """``(step, dev MCC)`` pairs of a record's ``dev_curve``, empty unless at least two make a line; anything
    that is not a pair of finite numbers (a damaged or hand-edited record) is left out."""
    points = []
    for point in curve if isinstance(curve, list) else []:
        if (isinstance(point, (list, tuple)) and len(point) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in point)):
            points.append((float(point[0]), float(point[1])))
    return points if len(points) > 1 else []


def plot_dev_curves(curves: Sequence[tuple[str, str, Sequence[tuple[float, float]]]], path: Path, title: str = "") -> Optional[Path]:
    """One panel per task: dev MCC over the training steps, a line per cell (``(task, label, points)``, the
    points from :func:`curve_points`; a cell without any draws nothing), coloured by label (one line per seed),
    so a reader sees whether dev was still rising when training ended."""
    rows = [(task, label, points) for task, label, points in curves if points]
    if not rows:
        return None
    plt = _pyplot()
    tasks = list(dict.fromkeys(task for task, _, _ in rows))
    labels = list(dict.fromkeys(label for _, label, _ in rows))
    colours = plt.get_cmap("tab10")
    fig, axes, nrows = _panels(len(tasks), 4.6, 3.2)
    for ax, task in zip(axes, tasks):
        shown: set[str] = set()
        for row_task, label, points in rows:
            if row_task != task:
                continue
            steps, mccs = zip(*points)
            ax.plot(steps, mccs, color=colours(labels.index(label) % 10), lw=1, alpha=0.8,
                    label=None if label in shown else label)
            shown.add(label)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("dev MCC", fontsize=8)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (3.2 * nrows)))
    return save_figure(fig, path)


def _pareto_panel(ax, sub: pd.DataFrame, methods: list[str], xlim: tuple[float, float], metric: str) -> None:
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    colours = _pyplot().get_cmap("tab10")
    for row in sub.itertuples():
        i = methods.index(row.method)
        jitter = 1 + 0.08 * (i - (len(methods) - 1) / 2)
        ax.errorbar([row.pct * jitter], [row.value], yerr=[0 if math.isnan(row.std) else row.std], fmt="o", color=colours(i % 10),
                    capsize=3, label=f"{row.method} ({row.pct:.3g}%)")
    best, xs, ys = -math.inf, [], []
    for row in sub.itertuples():
        if row.value > best:
            best = row.value
            xs.append(row.pct)
            ys.append(row.value)
    ax.plot(xs, ys, color="black", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlim(*xlim)
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(base=10))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("trainable % of the model (log)", fontsize=8)
    ax.set_ylabel(metric.replace("_", " "), fontsize=8)
    ax.legend(fontsize=6, loc="lower right")


def plot_pareto(table: pd.DataFrame, path: Path, metric: str = "test_mcc") -> Optional[Path]:
    """Trainable parameters (% of the model, log) vs the metric, one panel per task: a point per method
    (mean over seeds, whisker: std), the Pareto front dashed. Baselines (``kind`` other than ``train``)
    have no share of the language model and are left out."""
    done = table[(table["status"] == "done") & table[metric].notna() & table["trainable_percent"].notna()]
    done = done[done["kind"] == "train"] if "kind" in done else done
    done = done.drop_duplicates(["cell_id", "seed"])
    if done.empty:
        return None
    stats = done.groupby(["task", "method"], sort=False).agg(
        pct=("trainable_percent", "mean"), value=(metric, "mean"), std=(metric, "std")
    ).reset_index()
    tasks = list(dict.fromkeys(stats["task"]))
    methods = list(dict.fromkeys(stats["method"]))
    # one x range for every panel, at least two decades wide, so methods with near-equal budgets
    # (e.g. 1.285 % and 1.286 %) sit side by side (jittered a little) instead of far apart
    lo, hi = float(stats["pct"].min()), float(stats["pct"].max())
    xlim = (min(lo / 2, hi / 100), max(hi * 2, lo * 100))
    fig, axes, nrows = _panels(len(tasks), 4.6, 3.4)
    for ax, task in zip(axes, tasks):
        _pareto_panel(ax, stats[stats["task"] == task].sort_values("pct"), methods, xlim, metric)
        ax.set_title(task, fontsize=9)
    fig.suptitle("trainable parameters vs test MCC (mean ± std over seeds; dashed: Pareto front; x jittered slightly)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (3.4 * nrows)))
    return save_figure(fig, path)


def mean_rank_pattern(patterns: Sequence[Mapping[str, int]]) -> pd.DataFrame:
    """Layer x module-type mean final rank over runs (:func:`~lingo_core.plots.charts.rank_pattern_frame`)."""
    frames = [rank_pattern_frame(p) for p in patterns]
    return pd.concat(frames).groupby(level=0, sort=False).mean()


def plot_rank_patterns(records: Sequence[Mapping[str, Any]], path: Path) -> Optional[Path]:
    """Mean final rank per module (layer x module type), one panel per method label with final ranks
    (the methods with a rank budget)."""
    by_method: dict[str, list[dict[str, int]]] = {}
    for rec in records:
        if rec.get("status") == "done" and rec.get("final_ranks"):
            by_method.setdefault(rec["method"], []).append(rec["final_ranks"])
    if not by_method:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(by_method), figsize=(4.4 * len(by_method), 3.6), squeeze=False)
    fig.subplots_adjust(wspace=0.55)
    image = None
    for ax, (method, patterns) in zip(axes.flat, by_method.items()):
        frame = mean_rank_pattern(patterns)
        grid = frame.to_numpy(dtype=float)
        image = ax.imshow(grid, cmap="viridis", vmin=0, aspect="auto")
        ax.set_xticks(range(len(frame.columns)))
        ax.set_xticklabels(list(frame.columns), rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(frame.index)))
        ax.set_yticklabels([f"layer {layer}" for layer in frame.index], fontsize=7)
        ax.set_title(f"{method} (n={len(patterns)} runs)", fontsize=9)
        top = np.nanmax(grid) if np.isfinite(grid).any() else 0.0
        for (i, j), v in np.ndenumerate(grid):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6, color="white" if v < top * 0.6 else "black")
    if image is not None:
        fig.colorbar(image, ax=list(axes.flat), shrink=0.8, label="mean final rank")
    return save_figure(fig, path)


def plot_rank_dynamics(ranks: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> Optional[Path]:
    """Budget and active rank per module over the allocation steps of one run (``Run.ranks()``)."""
    if not ranks:
        return None
    plt = _pyplot()
    modules, steps, matrix = rank_heatmap_data(ranks)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax1.plot(steps, [r["budget"] for r in ranks], label="budget", color="black")
    ax1.plot(steps, [sum((r.get("active") or {}).values()) for r in ranks], label="active (sum)", ls="--")
    if "rho" in ranks[0]:
        ax1b = ax1.twinx()
        ax1b.plot(steps, [r.get("rho", 0) for r in ranks], color="tab:red", lw=0.8, label="rho")
        ax1b.set_ylabel("rho", color="tab:red")
    ax1.set_xlabel("step")
    ax1.set_ylabel("total rank")
    ax1.legend(fontsize=7)
    image = ax2.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest",
                       extent=(steps[0], steps[-1], len(modules) - 0.5, -0.5))
    ax2.set_yticks(range(len(modules)))
    ax2.set_yticklabels(modules, fontsize=5)
    ax2.set_xlabel("step")
    fig.colorbar(image, ax=ax2, label="active rank")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
