"""``report.md``: per-grid tables and figures, the declared comparisons, parameter counts, rank
patterns and published reference numbers, written from the cell records only."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from .. import runs
from ..adapters import has_rank_budget
from ..plots.study import curve_points, plot_dev_curves, plot_pareto, plot_rank_dynamics, plot_rank_patterns, plot_task_bars
from .cells import Cell, expand, slug
from .records import cell_records
from .spec import Comparison, Study
from .stats import POOLED, add_prediction_statistics, choose_on_dev, compare_methods, compare_per_setting, compare_variants
from .table import format_spread, markdown_table, pivot_text

Lines = list[str]

# ROC-AUC of DNA foundation models (frozen, mean-pooled embeddings): "Benchmarking DNA foundation
# models for genomic and genetic tasks", Nature Communications 2025, Tables 1 and 3.
REFERENCE_AUROC: dict[str, dict[str, float]] = {
    "gue/prom_core_tata": {"DNABERT-2": 0.7781, "NT-v2": 0.7947, "HyenaDNA": 0.7827, "Caduceus-Ph": 0.8103, "GROVER": 0.796},
    "gue/prom_core_all": {"DNABERT-2": 0.8311, "NT-v2": 0.8527, "HyenaDNA": 0.832, "Caduceus-Ph": 0.8748, "GROVER": 0.8506},
    "gue/prom_core_notata": {"DNABERT-2": 0.8531, "NT-v2": 0.8729, "HyenaDNA": 0.8516, "Caduceus-Ph": 0.8961, "GROVER": 0.8704},
    "gue/prom_300_tata": {"DNABERT-2": 0.7646, "NT-v2": 0.7791, "HyenaDNA": 0.8077, "Caduceus-Ph": 0.76, "GROVER": 0.78},
    "gue/EMP/H3": {"DNABERT-2": 0.9137, "NT-v2": 0.8951, "HyenaDNA": 0.8996, "Caduceus-Ph": 0.9285, "GROVER": 0.9056},
    "gue/EMP/H3K4me3": {"DNABERT-2": 0.6813, "NT-v2": 0.6603, "HyenaDNA": 0.6486, "Caduceus-Ph": 0.6595, "GROVER": 0.668},
    "gue/EMP/H4": {"DNABERT-2": 0.9314, "NT-v2": 0.9104, "HyenaDNA": 0.8983, "Caduceus-Ph": 0.9304, "GROVER": 0.908},
}
REFERENCE_SOURCE = (
    "ROC-AUC of frozen DNA foundation-model embeddings, 'Benchmarking DNA foundation models for genomic and "
    "genetic tasks', Nature Communications 2025, Tables 1 and 3 (trained on the full published splits; the "
    "yeast rows there use the Nucleotide Transformer splits, not this project's leak-free recipe)"
)
PAIRED = ("paired by seed on the seeds both finished: `diff` the mean difference, `se` its standard error, "
          "`ci95` the 95 % paired-t interval (n − 1 degrees of freedom), `p` the paired t-test; `better`/`worse`: "
          "p < 0.05; `same`: identical on every seed; where runs saved their test predictions, `disagree` is the "
          "share of test sequences the two methods classify differently (mean over seeds) and `boot95` the 95 % "
          "interval of `diff` when the test set is resampled too")


def hardware() -> dict[str, Any]:
    """Processor, CPU count, torch version and threads, GPUs of this process."""
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        if names:
            info["processor"] = names[0]
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


@dataclass
class GroupView:
    """One grid's rows of the table, labelled by what the grid compares.

    ``x`` is ``method`` for a grid compared by method, else ``variant``: the method label with the
    values of the axes that vary among its trained cells (``varying``), e.g. ``ars (train.lr=0.004)``.
    """

    name: str
    rows: pd.DataFrame
    x: str
    varying: list[str]

    @classmethod
    def of(cls, table: pd.DataFrame, group: str) -> "GroupView":
        sub = table[table["group"] == group]
        neural = sub[sub["kind"] == "train"]
        varying = [c for c in ("model", "encoding", "prefix", "setting") if neural[c].nunique() > 1]
        if not varying:
            return cls(group, sub, "method", [])
        sub = sub.copy()
        labels = sub[varying].astype(str).agg(", ".join, axis=1)
        # a baseline is one cell for every value of the axes, unless an axis changes it too (data.augment)
        baseline = sub[sub["kind"] != "train"]
        baseline_varies = bool((baseline.groupby("task")["cell_id"].nunique() > 1).any()) if len(baseline) else False
        labelled = (sub["kind"] == "train") | baseline_varies
        sub["variant"] = np.where(labelled, sub["method"] + " (" + labels + ")", sub["method"])
        return cls(group, sub, "variant", varying)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.rows["method"]))

    @property
    def by_method(self) -> bool:
        return self.x == "method"

    @property
    def has_neural(self) -> bool:
        return bool((self.rows["kind"] == "train").any())


def write_report(study: Study, table: pd.DataFrame) -> Path:
    """``report.md`` with the tables, parameter counts, comparisons and figures under ``figures/``."""
    cells = expand(study)
    records = cell_records(study, cells)
    table = table.copy()
    table["kind"] = table["cell_id"].map({c.cell_id: c.kind for c in cells})
    figures = study.output_dir / "figures"
    groups = list(dict.fromkeys(g for c in cells for g in c.groups))
    views = [GroupView.of(table, g) for g in groups if (table["group"] == g).any()]
    lines = _header(study, cells, records)
    planned_seeds = {g: {seed for c in cells for group, _, seed in c.rows if group == g} for g in groups}
    curves = {r["cell_id"]: r.get("dev_curve") for r in records if isinstance(r.get("cell_id"), str)}
    for view in views:
        lines += _group_section(study, view, figures, len(planned_seeds[view.name]), curves)
    method_groups = [v.name for v in views if v.by_method]
    neural_groups = [v.name for v in views if v.by_method and v.has_neural]
    # the main comparison: a grid named "main", else the first grid compared by method with a neural method
    main_group = "main" if "main" in groups else (neural_groups[0] if neural_groups else (groups[0] if groups else None))
    lines += _pareto_section(table[table["group"].isin(method_groups)], figures)
    lines += _rank_section(study, [r for r in records if main_group in r["groups"]], records, figures)
    lines += _reference_section(table[table["group"] == main_group] if main_group else table)
    lines += _unfinished_section(records)
    path = study.output_dir / "report.md"
    runs.atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _header(study: Study, cells: list[Cell], records: list[dict[str, Any]]) -> Lines:
    scale = f" (scale `{study.scale}`)" if study.scale else ""
    lines = [f"# Study `{study.name}`{scale}", ""]
    if study.spec.get("description"):
        lines += [str(study.spec["description"]).strip(), ""]
    with_scale = f" with scale `{study.scale}`" if study.scale else ""
    lines += [f"Generated {runs.now()} from `{study.path or 'a study spec'}`{with_scale}.", ""]
    n_done = sum(1 for r in records if r.get("status") == "done")
    statuses = pd.Series([r.get("status") for r in records]).value_counts().to_dict() if records else {}
    pending = len(cells) - len(records)
    status_text = ", ".join(f"{v} {k}" for k, v in statuses.items())
    partial = " — **partial results**" if pending or n_done < len(cells) else ""
    total_wall = sum(float(r.get("wall_time_s") or 0) for r in records)
    hw = hardware()
    gpus = f", GPUs: {', '.join(hw['gpus'])}" if hw.get("gpus") else ""
    lines += [
        f"- cells: {len(cells)} unique ({status_text or 'none run'}; {pending} not run yet){partial}",
        f"- summed cell wall time: {total_wall / 60:.1f} min",
        f"- hardware of this report's process: {hw['processor']}, {hw['cpu_count']} CPUs, torch {hw['torch']} with {hw['torch_threads']} threads{gpus}",
        "- metrics: test split, checkpoint selected on dev MCC; mean ± sample standard deviation over seeds",
        "",
    ]
    return lines


def _group_section(study: Study, view: GroupView, figures: Path, n_seeds: int, curves: dict[str, Any]) -> Lines:
    """A grid (``n_seeds``: how many seeds it plans): metric tables, the dev choice, parameter counts,
    the bar figure, the dev curves its cells' records keep (``curves``: cell id -> ``dev_curve``), its
    comparisons and, for a paired check, its variants against the first one."""
    lines = [f"## {view.name}", ""]
    description = study.grid_spec(view.name).get("description")
    if description:
        lines += [str(description), ""]
    sub, x = view.rows, view.x
    variants = list(dict.fromkeys(sub[x]))
    tasks = list(dict.fromkeys(sub["task"]))
    keyed = sub.rename(columns={x: "_x"}).assign(method=lambda d: d["_x"])
    for metric in ("test_mcc", "test_auroc", "dev_mcc"):
        note = " — the selection metric" if metric == "dev_mcc" else ""
        lines += [f"**{metric.replace('_', ' ')}** (mean ± std over seeds){note}", "", markdown_table(pivot_text(keyed, metric, variants, tasks))]
    neural = sub[sub["kind"] == "train"]
    if neural["setting"].nunique() > 1:
        chosen = choose_on_dev(neural)
        if not chosen.empty:
            lines += ["Chosen on dev (highest mean dev MCC over seeds; test MCC of that setting for reference):", "", markdown_table(chosen)]
    lines += _parameter_table(sub, x)
    fig = plot_task_bars(sub, figures / f"{slug(view.name)}_mcc.png", "test_mcc",
                         f"{view.name}: test MCC (bar: mean, whisker: std, dots: seeds)", x=x)
    if fig is not None:
        lines += [f"![{view.name}](figures/{fig.name})", ""]
    trained = sub[sub["kind"] == "train"]
    cell_curves = [(task, str(label), curve_points(curves.get(cell_id)))
                   for task, label, cell_id in zip(trained["task"], trained[x], trained["cell_id"])]
    dev_fig = plot_dev_curves(cell_curves, figures / f"{slug(view.name)}_dev_curves.png",
                              f"{view.name}: dev MCC while training (a line per seed)")
    if dev_fig is not None:
        with_curve = sum(bool(points) for _, _, points in cell_curves)
        if with_curve < len(trained):  # records written before cells kept their curve
            lines += [f"Dev curves of {with_curve} of {len(trained)} trained cells (the others' records keep none):", ""]
        lines += [f"![{view.name} dev curves](figures/{dev_fig.name})", ""]
    for comparison in study.comparisons:
        if comparison.applies_to(view.name):
            lines += _comparison_lines(comparison, view)
    return lines + _variant_lines(view, n_seeds)


def _variant_lines(view: GroupView, n_seeds: int) -> Lines:
    """A paired check (a grid with several seeds that varies a setting): each variant minus its
    method's first variant, seed by seed."""
    if view.by_method or n_seeds < 2:
        return []
    rows = compare_variants(view.rows, view.x, ("test_mcc", "test_auroc"))
    if rows.empty:
        return []
    return [f"Each variant minus its method's first variant (the grid's first value), {PAIRED}:", "", markdown_table(rows), ""]


def _parameter_table(sub: pd.DataFrame, x: str) -> Lines:
    params = sub[sub["status"] == "done"].groupby(x, sort=False).agg(
        trainable=("trainable_params", "median"), percent=("trainable_percent", "median"),
        exported=("exported_params", "median"), steps=("steps", "median"),
        wall_s=("wall_time_s", "mean"), train_s=("train_time_s", "mean"), seeds=("seed", "nunique"),
    ).reset_index()
    if params.empty:
        return []
    params["percent"] = params["percent"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    for column in ("trainable", "exported", "steps"):
        params[column] = params[column].map(lambda v: "" if pd.isna(v) else f"{int(round(v)):,}")
    for column in ("wall_s", "train_s"):
        params[column] = params[column].map(lambda v: "" if pd.isna(v) else f"{v:.0f}")
    return ["Parameters (median over cells; `trainable`: during training, `exported`: in the saved adapter after rank pruning) "
            "and mean time per cell (`wall_s`: the cell's last invocation; `train_s`: the run's training time, summed over resumes):",
            "", markdown_table(params)]


def _comparison_lines(comparison: Comparison, view: GroupView) -> Lines:
    """One declared comparison in one grid: by method, or setting by setting (see the study spec)."""
    methods = view.methods
    others = [m for m in comparison.against if m in methods]
    if comparison.method not in methods or not others:
        return []
    if view.by_method:
        lines: Lines = []
        for metric in comparison.metrics:
            comp = compare_methods(view.rows, comparison.method, others, metric=metric, group=view.name, pooled=comparison.pooled)
            comp = add_prediction_statistics(comp, view.rows, comparison.method, metric)
            if not comp.empty:
                lines += _method_comparison(comparison, metric, comp)
        return lines
    if comparison.per_setting and view.varying == ["setting"]:
        # the same setting for the method and its reference method(s): compare them setting by setting
        rows = compare_per_setting(view.rows, comparison.method, others, comparison.metrics)
        if not rows.empty:
            return [f"{comparison.label} minus the reference method at the same setting, {PAIRED}:",
                    "", markdown_table(rows)]
    return []


def _metric_name(metric: str) -> str:
    return metric.replace("test_", "test ").replace("dev_", "dev ").replace("mcc", "MCC").replace("auroc", "AUROC").replace("auprc", "AUPRC")


def _method_comparison(comparison: Comparison, metric: str, comp: pd.DataFrame) -> Lines:
    name = _metric_name(metric)
    lines = [f"{comparison.name}, {name}, {PAIRED}:", "", markdown_table(comp)]
    per_task = comp[comp["task"] != POOLED]
    wins = per_task.groupby("vs")["higher_mean"].agg(["sum", "count"])
    for vs, row in wins.iterrows():
        mine = per_task[per_task["vs"] == vs]
        lines.append(f"- {comparison.label} has the higher mean {name} than {vs} on {int(row['sum'])} of {int(row['count'])} tasks "
                     f"(clearly better on {int((mine['verdict'] == 'better').sum())}, clearly worse on {int((mine['verdict'] == 'worse').sum())}).")
    return lines + [""]


def _pareto_section(table: pd.DataFrame, figures: Path) -> Lines:
    pareto = plot_pareto(table, figures / "pareto_trainable_vs_mcc.png")
    if pareto is None:
        return []
    return ["## Trainable parameters vs test MCC", "", f"![pareto](figures/{pareto.name})", ""]


def _adapter_method(record: dict[str, Any]) -> Optional[str]:
    return ((record.get("config") or {}).get("adapter") or {}).get("method") if record.get("kind") == "train" else None


def _dynamics_example(study: Study, records: list[dict[str, Any]]) -> Optional[tuple[dict[str, Any], str]]:
    """A finished run of a method with a rank budget, and how to name it: the first run of the first
    compared method that has one (the method the study is about), else the first such run."""
    budget = [r for r in records if r.get("status") == "done" and r.get("run_dir") and Path(r["run_dir"]).is_dir()
              and has_rank_budget(_adapter_method(r))]
    for comparison in study.comparisons:
        found = next((r for r in budget if r["method"] == comparison.method), None)
        if found is not None:
            return found, comparison.label.strip("`")
    return (budget[0], budget[0]["method"]) if budget else None


def _rank_section(study: Study, main_records: list[dict[str, Any]], records: list[dict[str, Any]], figures: Path) -> Lines:
    rank_fig = plot_rank_patterns(main_records, figures / "rank_patterns.png")
    if rank_fig is None:
        return []
    lines = [
        "## Rank patterns", "",
        "Mean final rank per adapted module (methods with a rank budget start at `init_r` per module; the budget shrinks to `target_r` × modules).", "",
        f"![ranks](figures/{rank_fig.name})", "",
    ]
    example = _dynamics_example(study, records)
    if example is not None:
        record, name = example
        dyn = plot_rank_dynamics(runs.load_run(record["run_dir"]).ranks(), figures / f"rank_dynamics_{slug(record['method'])}.png",
                                 f"{name} rank allocation: {record['task']} seed {record['seed']}")
        if dyn is not None:
            lines += [f"![rank dynamics](figures/{dyn.name})", ""]
    return lines


def _reference_section(main: pd.DataFrame) -> Lines:
    done = main[main["status"] == "done"]
    rows = []
    for task, refs in REFERENCE_AUROC.items():
        if task not in set(done["task"]):
            continue
        row = {"task": task}
        for method in dict.fromkeys(done["method"]):
            vals = done[(done["task"] == task) & (done["method"] == method)]["test_auroc"].dropna()
            row[method] = format_spread(vals.mean(), vals.std(), len(vals)) if len(vals) else "–"
        row.update({k: f"{v:.3f}" for k, v in refs.items()})
        rows.append(row)
    if not rows:
        return []
    return ["## Test AUROC next to published DNA foundation models", "", f"Reference columns: {REFERENCE_SOURCE}.", "",
            markdown_table(pd.DataFrame(rows))]


def _unfinished_section(records: list[dict[str, Any]]) -> Lines:
    failed = [r for r in records if r.get("status") != "done"]
    if not failed:
        return []
    frame = pd.DataFrame([{"cell": r["cell_id"], "status": r["status"], "error": str(r.get("error", ""))[:200]} for r in failed])
    return ["## Cells that did not finish", "", markdown_table(frame)]
