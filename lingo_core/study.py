"""Studies: a grid of tasks x methods x seeds (x models, encodings, prefixes, settings) from one file.

    python -m lingo_core study studies/cpu_study.yaml                  # run (resumable), table, report
    python -m lingo_core study studies/cpu_study.yaml --scale full     # the same study on the full data
    python -m lingo_core study studies/cpu_study.yaml --dry-run        # list the cells, run nothing
    python -m lingo_core study studies/cpu_study.yaml --report-only    # rebuild table + report from cells
    accelerate launch -m lingo_core study studies/cpu_study.yaml       # several GPUs: cells in parallel

A study file (YAML) has these top-level keys:

``name``
    used for the default output folders.
``scale`` and ``profiles``
    ``profiles`` maps a scale name to an overlay that is deep-merged onto the study file itself
    (mappings merge, lists and scalars replace). ``scale`` picks one (``--scale`` overrides it), so
    one setting switches a study between, e.g., a subsampled CPU run and the full data.
``base``
    a LINGO config (``data``, ``encoding``, ``model``, ``adapter``, ``train``) shared by every cell.
``task_overrides``
    ``{glob: config}``: extra settings for tasks matching the glob (e.g. smaller batches for 500 bp).
``methods``
    ``{label: config}``: what each method label means. A config overlay (e.g.
    ``{adapter: {method: ars, mode: paper}}``), or a non-neural baseline
    ``{baseline: kmer_lr, k: [3, 4, 5, 6], C: [0.1, 1, 10]}`` (k-mer logistic regression, k and C
    selected on dev).
``sets``
    ``{name: [items]}``: named lists of tasks or methods. A grid's ``tasks``/``methods`` may name a
    set, or list set names among plain items; a profile can then change a set in one place.
``seeds``
    default seeds (``train.seed``) for every grid.
``grids``
    a list of ``{name, tasks, methods, seeds?, models?, encodings?, prefixes?, vary?, set?}``.
    ``models``/``encodings``/``prefixes`` are axes over ``model.name``/``encoding.sequence``/
    ``encoding.prefix``; ``vary`` is ``{dotted.key: [values]}`` for any other config key
    (e.g. ``adapter.reintroduce_rate: [0, 0.05, 0.1, 0.2]``); ``set`` is a fixed overlay.
``budget``
    ``time_limit_s``: wall-clock guard per cell. Results are made reproducible by step caps in the
    config (``train.max_steps``); a cell that runs past the guard is cancelled and recorded with
    status ``timeout`` and no metrics (never as a silently shorter run).
``order``
    ``grids`` (default: file order), ``seeds_first`` (all cells of the first seed, then the
    second...) or ``tasks_first`` (all cells of the first task, then the second...), so that a
    study stopped early has complete comparisons for fewer seeds or fewer tasks.
``output_dir`` / ``work_dir``
    the table, report and figures (default ``results/<name>``) / run directories and per-cell
    records (default ``results/runs/<name>``).

Each cell is identified by a hash of its fully resolved config, so identical cells requested by
several grids (e.g. the ARS default in the main grid and in the rho ablation) run once, and a
changed setting makes a new cell. A finished cell (its record in ``work_dir/cells``) is skipped; a
cell whose process was killed resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import datetime as _dt
import fnmatch
import gc
import hashlib
import itertools
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd
import yaml

from . import runs
from .config import ConfigError, apply_overrides, config_from_dict, save_config

PathLike = Union[str, Path]

STUDY_KEYS = {
    "name", "description", "scale", "profiles", "base", "task_overrides", "methods", "seeds", "grids",
    "budget", "output_dir", "work_dir", "report", "order", "sets",
}
GRID_KEYS = {"name", "tasks", "methods", "seeds", "models", "encodings", "prefixes", "vary", "set", "description"}
BASELINES = ("kmer_lr",)
POOLED = "all tasks (pooled pairs)"
METRICS = ("mcc", "f1", "accuracy", "auroc", "auprc")
TABLE_COLUMNS = [
    "group", "task", "method", "seed", "model", "encoding", "prefix", "setting", "status",
    *[f"test_{m}" for m in METRICS], *[f"dev_{m}" for m in METRICS],
    "trainable_params", "total_params", "trainable_percent", "exported_params", "final_rank_total",
    "wall_time_s", "train_time_s", "steps", "selected_step", "n_train", "n_dev", "n_test",
    "train_dup_removed", "test_train_dup", "detail", "cell_id", "run_dir",
]
# keys that do not change a cell's result and are left out of its identity
_VOLATILE = (("output_dir",), ("run_name",), ("train", "progress_bar"))
# config keys added after studies had been run, with the value that reproduces the old behaviour: at
# that value they are left out of a cell's identity, so cells finished before the key existed stay valid
_NEUTRAL_DEFAULTS = {("adapter", "lambda_lr_scale"): 1.0}

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


class StudyError(ConfigError):
    """A study file is invalid; the message names the key and the fix."""


class StudyInterrupted(RuntimeError):
    """The study was asked to stop (SIGTERM, Ctrl-C or a CANCEL file): the running cell is left resumable."""


# ------------------------------------------------------------------------------------------ files


def deep_merge(base: Any, overlay: Any) -> Any:
    """A copy of ``base`` with ``overlay`` merged in: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for key, value in overlay.items():
            out[key] = deep_merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(overlay)


def _dotted(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    apply_overrides(out, [f"{key}={json.dumps(value)}"])
    return out


@dataclass
class Study:
    """A loaded study file with its profile applied."""

    path: Optional[Path]
    spec: dict[str, Any]
    scale: Optional[str]

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or (self.path.stem if self.path else "study"))

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.get("output_dir") or Path("results") / self.name)

    @property
    def work_dir(self) -> Path:
        return Path(self.spec.get("work_dir") or Path("results") / "runs" / self.name)

    @property
    def time_limit_s(self) -> Optional[float]:
        value = (self.spec.get("budget") or {}).get("time_limit_s")
        return None if value in (None, 0) else float(value)


def load_study(
    path: Optional[PathLike] = None,
    overrides: Optional[Sequence[str]] = None,
    scale: Optional[str] = None,
    spec: Optional[dict[str, Any]] = None,
) -> Study:
    """Read a study file (or take ``spec``), apply ``--set`` overrides and the selected profile."""
    if spec is None:
        if path is None:
            raise StudyError("load_study needs a path or a spec")
        path = Path(path)
        if not path.is_file():
            raise StudyError(f"study file {path} does not exist")
        try:
            spec = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise StudyError(f"{path}: invalid YAML: {exc}") from exc
    spec = copy.deepcopy(spec)
    if not isinstance(spec, dict):
        raise StudyError(f"{path}: the top level of a study file must be a mapping")
    apply_overrides(spec, list(overrides or []))
    unknown = set(spec) - STUDY_KEYS
    if unknown:
        raise StudyError(f"{path or 'study'}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(STUDY_KEYS)}")
    chosen = scale or spec.get("scale")
    profiles = spec.get("profiles") or {}
    if chosen is not None:
        if chosen not in profiles:
            raise StudyError(f"{path or 'study'}: scale '{chosen}' is not one of the profiles {sorted(profiles)}")
        overlay = profiles[chosen] or {}
        bad = set(overlay) - STUDY_KEYS
        if bad:
            raise StudyError(f"profiles.{chosen}: unknown key(s) {sorted(bad)}")
        spec = deep_merge(spec, overlay)
        spec["scale"] = chosen
    study = Study(Path(path) if path else None, spec, chosen)
    expand(study)  # validates every cell's config now, before anything runs
    return study


# ------------------------------------------------------------------------------------------ cells


@dataclass
class Cell:
    """One unit of work: a task, a method and a seed (plus model/encoding/prefix/setting axes)."""

    cell_id: str
    task: str
    method: str
    seed: int
    model: str
    encoding: str
    prefix: str
    config: dict[str, Any]  # fully resolved LINGO config (dict)
    baseline: Optional[dict[str, Any]] = None  # non-neural baseline spec, e.g. {"baseline": "kmer_lr", ...}
    # table rows this cell fills: (group, setting label such as "adapter.reintroduce_rate=0.05", seed)
    rows: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.baseline["baseline"] if self.baseline else "train"

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(group for group, _, _ in self.rows))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("gue/", "").replace("/", "_")).strip("_")


def _identity(config: dict[str, Any], baseline: Optional[dict[str, Any]]) -> str:
    ident = copy.deepcopy(config)

    def parent(path: tuple[str, ...]) -> dict[str, Any]:
        node = ident
        for part in path[:-1]:
            node = node.get(part, {})
        return node

    for path in _VOLATILE:
        parent(path).pop(path[-1], None)
    for path, neutral in _NEUTRAL_DEFAULTS.items():
        node = parent(path)
        if path[-1] in node and node[path[-1]] == neutral:
            node.pop(path[-1])
    if baseline:  # a baseline depends only on its data and its own settings (it is deterministic)
        ident = {"data": ident["data"]}
    blob = json.dumps({"config": ident, "baseline": baseline}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def _task_overlay(spec: dict[str, Any], task: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pattern, overlay in (spec.get("task_overrides") or {}).items():
        if fnmatch.fnmatch(task, pattern):
            out = deep_merge(out, overlay or {})
    return out


def _as_list(value: Any, key: str) -> list:
    if value is None:
        return [None]
    if not isinstance(value, (list, tuple)):
        return [value]
    if not value:
        raise StudyError(f"{key} must not be an empty list")
    return list(value)


def _resolve_items(spec: dict[str, Any], value: Any, where: str, seen: tuple[str, ...] = ()) -> list[str]:
    """A grid's ``tasks``/``methods``: a list whose items may name entries of ``sets`` (expanded)."""
    sets = spec.get("sets") or {}
    items = [value] if isinstance(value, str) else list(value or [])
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and item in sets:
            if item in seen:
                raise StudyError(f"{where}: set '{item}' includes itself")
            out.extend(_resolve_items(spec, sets[item], where, seen + (item,)))
        else:
            out.append(str(item))
    return list(dict.fromkeys(out))


def _format_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def expand(study: Study) -> list[Cell]:
    """The study's cells, in file order (grids, then tasks, methods, axes, seeds), duplicates merged."""
    spec = study.spec
    methods = spec.get("methods") or {}
    grids = spec.get("grids")
    if not grids:
        raise StudyError("a study needs 'grids': a list of {name, tasks, methods, ...}")
    base = spec.get("base") or {}
    default_seeds = spec.get("seeds") or [42]
    cells: dict[str, Cell] = {}
    for g_index, grid in enumerate(grids):
        gname = grid.get("name") or f"grid{g_index}"
        where = f"grids[{g_index}] ({gname})"
        bad = set(grid) - GRID_KEYS
        if bad:
            raise StudyError(f"{where}: unknown key(s) {sorted(bad)}; valid keys: {sorted(GRID_KEYS)}")
        tasks = _resolve_items(spec, grid.get("tasks"), where)
        if not tasks:
            raise StudyError(f"{where}: 'tasks' is required (a list of task names or paths)")
        method_names = _resolve_items(spec, grid.get("methods"), where)
        if not method_names:
            raise StudyError(f"{where}: 'methods' is required (labels defined under 'methods')")
        for m in method_names:
            if m not in methods:
                raise StudyError(f"{where}: method '{m}' is not defined under 'methods' (defined: {sorted(methods)})")
        vary = grid.get("vary") or {}
        if not isinstance(vary, dict):
            raise StudyError(f"{where}: 'vary' must map dotted config keys to lists of values")
        vary_keys = list(vary)
        vary_values = [_as_list(vary[k], f"{where}.vary.{k}") for k in vary_keys]
        seeds = _as_list(grid.get("seeds") or default_seeds, f"{where}.seeds")
        axes = itertools.product(
            _as_list(grid.get("models"), f"{where}.models"),
            _as_list(grid.get("encodings"), f"{where}.encodings"),
            _as_list(grid.get("prefixes"), f"{where}.prefixes"),
            itertools.product(*vary_values) if vary_keys else [()],
        )
        axes = list(axes)
        for task in tasks:
            for method in method_names:
                mspec = copy.deepcopy(methods[method] or {})
                baseline = None
                if "baseline" in mspec:
                    if mspec["baseline"] not in BASELINES:
                        raise StudyError(f"methods.{method}.baseline must be one of {list(BASELINES)}, got {mspec['baseline']!r}")
                    baseline = {k: v for k, v in mspec.items() if k not in ("data",)}
                    mspec = {"data": mspec.get("data", {})} if "data" in mspec else {}
                for model, encoding, prefix, combo in axes:
                    for seed in seeds:
                        values = deep_merge(base, _task_overlay(spec, task))
                        values = deep_merge(values, mspec)
                        values = deep_merge(values, grid.get("set") or {})
                        if model is not None:
                            values = deep_merge(values, {"model": {"name": model}})
                        if encoding is not None:
                            values = deep_merge(values, {"encoding": {"sequence": encoding}})
                        if prefix is not None:
                            values = deep_merge(values, {"encoding": {"prefix": prefix}})
                        for key, value in zip(vary_keys, combo):
                            values = deep_merge(values, _dotted(key, value))
                        values = deep_merge(values, {"data": {"task": task}, "train": {"seed": int(seed)}})
                        try:
                            cfg = config_from_dict(values)
                        except ConfigError as exc:
                            raise StudyError(f"{where}, task {task}, method {method}, seed {seed}: {exc}") from None
                        resolved = yaml.safe_load(save_config(cfg))
                        ident = _identity(resolved, baseline)
                        # k-mer logistic regression is deterministic: one fit serves every seed's row
                        cell_id = f"{_slug(task)}-{method}-{ident}" if baseline else f"{_slug(task)}-{method}-s{seed}-{ident}"
                        setting = ", ".join(f"{k}={_format_value(v)}" for k, v in zip(vary_keys, combo))
                        row = (gname, setting, int(seed))
                        if cell_id in cells:
                            if row not in cells[cell_id].rows:
                                cells[cell_id].rows.append(row)
                            continue
                        cells[cell_id] = Cell(
                            cell_id=cell_id,
                            task=task,
                            method=method,
                            seed=int(seed),
                            model=cfg.model.name,
                            encoding=cfg.encoding.sequence if not baseline else "kmer-counts",
                            prefix=cfg.encoding.prefix if not baseline else "-",
                            config=resolved,
                            baseline=baseline,
                            rows=[row],
                        )
    ordered = list(cells.values())
    order = spec.get("order", "grids")
    if order == "seeds_first":
        # every grid's first seed, then every grid's second seed...: a study stopped early has
        # all cells for some seeds rather than some cells for all seeds
        rank = {s: i for i, s in enumerate(dict.fromkeys(c.seed for c in ordered))}
        ordered = sorted(ordered, key=lambda c: rank[c.seed])  # stable: file order within a seed
    elif order == "tasks_first":
        # every grid's cells of the first task, then of the second...: a study stopped early has
        # every comparison and ablation for some tasks rather than some of them for every task
        rank = {t: i for i, t in enumerate(dict.fromkeys(c.task for c in ordered))}
        ordered = sorted(ordered, key=lambda c: rank[c.task])
    elif order != "grids":
        raise StudyError(f"order must be 'grids', 'seeds_first' or 'tasks_first', got {order!r}")
    return ordered


# ------------------------------------------------------------------------------------- k-mer baseline


def kmer_matrix(sequences: Sequence[str], k: int):
    """Overlapping k-mer frequencies over ACGT (k-mers with N are skipped), rows L2-normalised (sparse)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import normalize

    vocabulary = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    vectorizer = CountVectorizer(analyzer="char", ngram_range=(k, k), lowercase=False, vocabulary=vocabulary, dtype=np.float64)
    return normalize(vectorizer.transform(sequences), norm="l2")


def kmer_logistic_regression(task, ks: Sequence[int] = (3, 4, 5, 6), cs: Sequence[float] = (0.1, 1.0, 10.0), seed: int = 0) -> dict[str, Any]:
    """k-mer logistic regression on a :class:`TaskData`: (k, C) chosen on dev MCC, reported on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from .evaluate import classification_metrics, metric_value

    best: Optional[dict[str, Any]] = None
    tried = []
    for k in ks:
        x_train = kmer_matrix(task.train.sequences, int(k))
        x_dev = kmer_matrix(task.dev.sequences, int(k))
        for c in cs:
            clf = LogisticRegression(C=float(c), max_iter=3000, random_state=seed)
            if task.multi_label:
                clf = OneVsRestClassifier(clf)
            clf.fit(x_train, task.train.labels)
            dev = classification_metrics(task.dev.labels, clf.predict_proba(x_dev), task.multi_label)
            tried.append({"k": int(k), "C": float(c), "dev_mcc": dev["mcc"]})
            if best is None or metric_value(dev, "mcc") > metric_value(best["dev"], "mcc"):
                best = {"k": int(k), "C": float(c), "clf": clf, "dev": dev}
    assert best is not None
    x_test = kmer_matrix(task.test.sequences, best["k"])
    test = classification_metrics(task.test.labels, best["clf"].predict_proba(x_test), task.multi_label)
    estimators = best["clf"].estimators_ if task.multi_label else [best["clf"]]
    n_params = int(sum(e.coef_.size + e.intercept_.size for e in estimators))
    return {"k": best["k"], "C": best["C"], "dev": best["dev"], "test": test, "parameters": n_params, "tried": tried}


# ------------------------------------------------------------------------------------------ running


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _record_path(study: Study, cell: Cell) -> Path:
    return study.work_dir / "cells" / f"{cell.cell_id}.json"


def read_record(study: Study, cell: Cell) -> Optional[dict[str, Any]]:
    path = _record_path(study, cell)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_record(study: Study, cell: Cell, record: dict[str, Any]) -> None:
    runs.atomic_write_json(_record_path(study, cell), record)


def _clean_metrics(metrics: Optional[dict[str, Any]]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in METRICS} if metrics else {}


def _base_record(cell: Cell) -> dict[str, Any]:
    return {
        "cell_id": cell.cell_id,
        "task": cell.task,
        "method": cell.method,
        "seed": cell.seed,
        "model": cell.model,
        "encoding": cell.encoding,
        "prefix": cell.prefix,
        "kind": cell.kind,
        "config": cell.config,
        "baseline": cell.baseline,
    }


def run_kmer_cell(cell: Cell) -> dict[str, Any]:
    from .data import load_task

    started = time.time()
    cfg = config_from_dict(cell.config)
    task = load_task(cfg.data)
    spec = cell.baseline or {}
    result = kmer_logistic_regression(task, spec.get("k", (3, 4, 5, 6)), spec.get("C", (0.1, 1.0, 10.0)), seed=0)
    wall = time.time() - started
    duplicates = task.report.get("duplicates", {})
    return {
        **_base_record(cell),
        "status": "done",
        "test": _clean_metrics(result["test"]),
        "dev": _clean_metrics(result["dev"]),
        "parameters": {"trainable": result["parameters"], "total": result["parameters"], "percent": None},
        "exported_params": result["parameters"],
        "wall_time_s": round(wall, 2),
        "train_time_s": round(wall, 2),
        "n": {s: len(getattr(task, s)) for s in ("train", "dev", "test")},
        "duplicates": duplicates,
        "subsampling": task.report.get("subsampling", {}).get("description"),
        "detail": f"k={result['k']}, C={result['C']:g} (chosen on dev)",
        "tried": result["tried"],
        "finished": _now(),
    }


def _exported_params(adapter_dir: Path) -> Optional[int]:
    """Parameters in the exported adapter files (the truncated rank pattern for AdaLoRA/ARS)."""
    from safetensors import safe_open

    total = 0
    files = list(adapter_dir.glob("*.safetensors"))
    if not files:
        return None
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                # peft may copy the frozen, unchanged word-embedding matrix into the adapter file;
                # it is not a trained parameter (new nucleotide rows are saved as trainable tokens)
                if path.name == "adapter_model.safetensors" and _FROZEN_EMBEDDING.search(key):
                    continue
                total += int(np.prod(handle.get_slice(key).get_shape()))
    return total


_FROZEN_EMBEDDING = re.compile(r"(word_embeddings|embed_tokens|\.wte)\.weight$")


def run_train_cell(cell: Cell, study: Study, time_limit_s: Optional[float] = None, retry: bool = False) -> dict[str, Any]:
    """Train one cell into ``work_dir/runs/<cell_id>`` (resuming a killed run) and summarise it."""
    from .train import Trainer, prepare

    runs_root = study.work_dir / "runs"
    cfg = config_from_dict({**cell.config, "output_dir": str(runs_root), "run_name": cell.cell_id})
    run_dir = runs_root / cell.cell_id
    started = time.time()
    trainer = None
    if run_dir.exists():
        run = runs.load_run(run_dir) if (run_dir / runs.CONFIG).exists() else None
        same = run is not None and run.config == yaml.safe_load(save_config(cfg))
        if same and run.state == "done":
            return _summarise_run(cell, run_dir, None)
        if same and run.resumable:  # killed, failed or cancelled from outside (timeouts have a record)
            writer = runs.RunWriter(run_dir)
            (run_dir / runs.CANCEL).unlink(missing_ok=True)
            trainer = Trainer(cfg, writer, resume=True)
        else:
            shutil.rmtree(run_dir)
    if trainer is None:
        prepared = prepare(cfg)
        writer = runs.RunWriter.create(runs_root, save_config(cfg), cfg.adapter.method, cfg.data.task, cell.cell_id)
        trainer = Trainer(cfg, writer, prepared=prepared)
    timer = None
    timed_out = threading.Event()

    def _time_up() -> None:
        timed_out.set()
        runs.request_cancel(run_dir)

    if time_limit_s:
        timer = threading.Timer(max(0.0, time_limit_s - (time.time() - started)), _time_up)
        timer.daemon = True
        timer.start()
    error = None
    try:
        trainer.run()
    except Exception as exc:  # noqa: BLE001 - a failed cell is recorded, the study goes on
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if timer is not None:
            timer.cancel()
    if runs.load_run(run_dir).state == "cancelled" and not timed_out.is_set():
        # stopped from outside (SIGTERM, a CANCEL file): no record, so the next study run resumes it
        raise StudyInterrupted(f"{cell.cell_id} was cancelled from outside; run the study again to resume it")
    return _summarise_run(cell, run_dir, time.time() - started, error)


def _summarise_run(cell: Cell, run_dir: Path, wall: Optional[float], error: Optional[str] = None) -> dict[str, Any]:
    run = runs.load_run(run_dir)
    state = run.state
    report = run.report() or {}
    data_report = run.data_report() or {}
    record = {**_base_record(cell), "run_dir": str(run_dir), "finished": _now()}
    if state == "done" and report:
        status = "done"
    elif state == "cancelled":
        status = "timeout"
    else:
        status = "failed"
    record["status"] = status
    if status != "done":
        record["error"] = error or run.status.get("error") or f"run ended in state {state}"
        record["wall_time_s"] = round(wall, 2) if wall is not None else None
        return record
    final_ranks = report.get("final_ranks")
    counts = data_report.get("counts", {})
    record.update(
        {
            "test": _clean_metrics(report.get("test")),
            "dev": _clean_metrics(report.get("dev")),
            "parameters": report.get("parameters"),
            "exported_params": _exported_params(run.adapter_dir),
            "final_ranks": final_ranks,
            "final_rank_total": int(sum(final_ranks.values())) if final_ranks else None,
            "wall_time_s": round(wall, 2) if wall is not None else report.get("wall_time_s"),
            "train_time_s": report.get("wall_time_s"),
            "steps": report.get("steps_done"),
            "selected_step": report.get("selected_step"),
            "n": {s: counts.get(s, {}).get("total") for s in ("train", "dev", "test")},
            "duplicates": data_report.get("duplicates", {}),
            "subsampling": data_report.get("subsampling", {}).get("description"),
            "detail": report.get("selection", ""),
            "device": report.get("device"),
        }
    )
    return record


def _distributed_shard() -> Optional[tuple[int, int, int]]:
    """(rank, world, local_rank) when started by ``accelerate launch``/``torchrun`` with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    local = int(os.environ.get("LOCAL_RANK", rank))
    return rank, world, local


_DIST_VARS = (
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
    "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT",
    "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_ERROR_FILE",
)


def _cell_subprocess(study_args: list[str], cell: Cell, local_rank: int) -> None:
    """Run one cell in a single-process child pinned to this process's GPU (no DDP across cells)."""
    import torch

    env = {k: v for k, v in os.environ.items() if k not in _DIST_VARS and not k.startswith("ACCELERATE_")}
    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        env["CUDA_VISIBLE_DEVICES"] = devices[local_rank % len(devices)]
    subprocess.run([sys.executable, "-m", "lingo_core", "study", *study_args, "--cell", cell.cell_id], env=env, check=False)


def run_study(
    study: Study,
    shard: Optional[tuple[int, int]] = None,
    only: Optional[Sequence[str]] = None,
    retry: bool = False,
    log=print,
    study_args: Optional[list[str]] = None,
    write_outputs: bool = True,
) -> Optional[Path]:
    """Run every unfinished cell (this shard's share), then write the table and the report.

    Cells run in turn in this process. Under ``accelerate launch`` with several processes, cell i
    goes to process ``i % world`` and runs in a single-process child pinned to that process's GPU.
    """
    cells = expand(study)
    distributed = _distributed_shard()
    local_rank = 0
    if shard is None and distributed is not None:
        shard = distributed[:2]
        local_rank = distributed[2]
    if only:
        wanted = set(only)
        missing = wanted - {c.cell_id for c in cells}
        if missing:
            raise StudyError(f"unknown cell id(s) {sorted(missing)}; see --dry-run for the list")
        cells = [c for c in cells if c.cell_id in wanted]
    mine = [c for i, c in enumerate(cells) if shard is None or i % shard[1] == shard[0]]
    study.work_dir.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_text(study.work_dir / "study.yaml", yaml.safe_dump(study.spec, sort_keys=False))
    t0 = time.time()
    for n, cell in enumerate(mine, 1):
        previous = read_record(study, cell)
        label = f"[{n}/{len(mine)}] {cell.task} {cell.method} seed={cell.seed} ({cell.cell_id})"
        if previous and (previous.get("status") == "done" or (previous.get("status") == "timeout" and not retry)):
            log(f"{label}: {previous['status']} already, skipped")
            continue
        log(f"{label}: running ({_now()}, study elapsed {time.time() - t0:.0f} s)")
        if distributed is not None and study_args is not None and cell.kind == "train":
            _cell_subprocess(study_args, cell, local_rank)
            record = read_record(study, cell) or {**_base_record(cell), "status": "failed", "error": "child process wrote no record"}
        else:
            try:
                if cell.kind == "kmer_lr":
                    record = run_kmer_cell(cell)
                else:
                    record = run_train_cell(cell, study, study.time_limit_s, retry=retry)
            except (StudyInterrupted, KeyboardInterrupt):
                log(f"{label}: interrupted; run the same command again to resume")
                raise
            except Exception as exc:  # noqa: BLE001
                record = {**_base_record(cell), "status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(), "finished": _now()}
            _write_record(study, cell, record)
            gc.collect()
        test = record.get("test") or {}
        summary = f"test mcc={test['mcc']:.4f} auroc={test.get('auroc') or float('nan'):.4f}" if test.get("mcc") is not None else record.get("error", "")
        log(f"{label}: {record['status']} {summary} ({record.get('wall_time_s')} s)")
    if not write_outputs:
        return None
    table = build_table(study)
    path = write_table(study, table)
    write_report(study, table)
    log(f"table: {path}\nreport: {study.output_dir / 'report.md'}")
    return path


# ------------------------------------------------------------------------------------------ table


def build_table(study: Study, cells: Optional[list[Cell]] = None) -> pd.DataFrame:
    """One row per grid x cell with a record (done, failed or timeout), in the study's order."""
    rows = []
    for cell in cells if cells is not None else expand(study):
        record = read_record(study, cell)
        if record is None:
            continue
        test, dev = record.get("test") or {}, record.get("dev") or {}
        params = record.get("parameters") or {}
        n = record.get("n") or {}
        dups = record.get("duplicates") or {}
        for group, setting, seed in cell.rows:
            rows.append(
                {
                    "group": group,
                    "task": cell.task,
                    "method": cell.method,
                    "seed": seed,
                    "model": cell.model,
                    "encoding": cell.encoding,
                    "prefix": cell.prefix,
                    "setting": setting,
                    "status": record.get("status"),
                    **{f"test_{m}": test.get(m) for m in METRICS},
                    **{f"dev_{m}": dev.get(m) for m in METRICS},
                    "trainable_params": params.get("trainable"),
                    "total_params": params.get("total"),
                    "trainable_percent": params.get("percent"),
                    "exported_params": record.get("exported_params"),
                    "final_rank_total": record.get("final_rank_total"),
                    "wall_time_s": record.get("wall_time_s"),
                    "train_time_s": record.get("train_time_s"),
                    "steps": record.get("steps"),
                    "selected_step": record.get("selected_step"),
                    "n_train": n.get("train"),
                    "n_dev": n.get("dev"),
                    "n_test": n.get("test"),
                    "train_dup_removed": dups.get("train_rows_removed"),
                    "test_train_dup": dups.get("test_train"),
                    "detail": record.get("detail") or record.get("error", ""),
                    "cell_id": cell.cell_id,
                    "run_dir": record.get("run_dir", ""),
                }
            )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def write_table(study: Study, table: pd.DataFrame) -> Path:
    path = study.output_dir / "results.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_text(path, table.to_csv(index=False, float_format="%.6g"))
    return path


# ------------------------------------------------------------------------------------------ report


def summarise(table: pd.DataFrame, metric: str = "test_mcc", by: Sequence[str] = ("task", "method")) -> pd.DataFrame:
    """Mean, sample standard deviation, min, max and count over seeds of ``metric`` per ``by``."""
    done = table[table["status"] == "done"]
    if done.empty:
        return pd.DataFrame(columns=[*by, "mean", "std", "min", "max", "n"])
    grouped = done.groupby(list(by), sort=False)[metric]
    out = grouped.agg(mean="mean", std="std", min="min", max="max", n="count").reset_index()
    return out


def _fmt(mean: float, std: float, n: int, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    spread = "" if n < 2 or std is None or math.isnan(std) else f" ± {std:.{digits}f}"
    return f"{mean:.{digits}f}{spread}"


def pivot_text(table: pd.DataFrame, metric: str, methods: Sequence[str], tasks: Sequence[str]) -> pd.DataFrame:
    """task x method cells 'mean ± std' for a metric (std over seeds)."""
    stats = summarise(table, metric)
    lookup = {(r.task, r.method): r for r in stats.itertuples()}
    rows = []
    for task in tasks:
        row = {"task": task}
        for method in methods:
            r = lookup.get((task, method))
            row[method] = _fmt(r.mean, r.std, r.n) if r is not None else "–"
        rows.append(row)
    return pd.DataFrame(rows, columns=["task", *methods])


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_no finished cells_\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _paired_row(task: str, other: str, diffs: np.ndarray) -> dict[str, Any]:
    """Mean paired difference, its standard error and the verdict (see :func:`compare_methods`)."""
    diff = float(diffs.mean())
    se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
    if np.all(diffs == 0):
        verdict = "same"
    elif len(diffs) > 1 and se > 0 and abs(diff) > 2 * se:
        verdict = "better" if diff > 0 else "worse"
    else:
        verdict = "tie"
    return {"task": task, "vs": other, "seeds": len(diffs), "diff": round(diff, 4),
            "se": None if math.isnan(se) else round(se, 4), "verdict": verdict, "higher_mean": diff > 0, "_diffs": diffs}


def compare_methods(
    table: pd.DataFrame, method: str, others: Sequence[str], metric: str = "test_mcc", group: Optional[str] = None, pooled: bool = True
) -> pd.DataFrame:
    """Per task, paired by seed: mean difference of ``method`` minus each other method on the seeds both
    finished, its standard error (spread of the paired differences / sqrt(n)), and a verdict. With
    ``pooled`` and several tasks, a last row per other method (task ``POOLED``) pools every (task, seed)
    pair.

    ``verdict``: "better"/"worse" when the mean difference exceeds two standard errors, "same" when every
    paired difference is exactly 0, "tie" otherwise (always "tie" with fewer than 2 paired seeds).
    """
    data = table if group is None else table[table["group"] == group]
    data = data[(data["status"] == "done") & data[metric].notna()]
    rows = []
    for task in dict.fromkeys(data["task"]):
        here = data[data["task"] == task]
        a = here[here["method"] == method].drop_duplicates("seed").set_index("seed")[metric]
        if a.empty:
            continue
        for other in others:
            b = here[here["method"] == other].drop_duplicates("seed").set_index("seed")[metric]
            seeds = sorted(set(a.index) & set(b.index))
            if seeds:
                rows.append(_paired_row(task, other, np.array([a[s] - b[s] for s in seeds], dtype=float)))
    columns = ["task", "vs", "seeds", "diff", "se", "verdict", "higher_mean", "_diffs"]
    frame = pd.DataFrame(rows, columns=columns)
    if pooled and frame["task"].nunique() > 1:
        # every (task, seed) pair of every task: more power than any single task, same paired logic
        extra = [_paired_row(POOLED, other, np.concatenate(list(frame[frame["vs"] == other]["_diffs"])))
                 for other in dict.fromkeys(frame["vs"])]
        frame = pd.concat([frame, pd.DataFrame(extra, columns=columns)], ignore_index=True)
    return frame.drop(columns="_diffs")


def choose_on_dev(table: pd.DataFrame, metric: str = "dev_mcc") -> pd.DataFrame:
    """Per task and method of a group that varies a setting: the setting with the highest mean dev metric.

    This is how a grid such as ``vary: {train.lr: [...]}`` selects a hyper-parameter honestly (on dev,
    never on test); the test metric of the chosen setting is shown next to it for reference.
    """
    done = table[(table["status"] == "done") & table[metric].notna() & (table["setting"].fillna("") != "")]
    rows = []
    for (task, method), here in done.groupby(["task", "method"], sort=False):
        stats = here.groupby("setting", sort=False).agg(dev=(metric, "mean"), test=("test_mcc", "mean"), n=("seed", "nunique"))
        best = stats["dev"].idxmax()
        rows.append({"task": task, "method": method, "chosen": best, f"mean {metric}": round(float(stats.loc[best, "dev"]), 4),
                     "mean test_mcc": round(float(stats.loc[best, "test"]), 4), "seeds": int(stats.loc[best, "n"]),
                     "settings tried": len(stats)})
    return pd.DataFrame(rows, columns=["task", "method", "chosen", f"mean {metric}", "mean test_mcc", "seeds", "settings tried"])


def hardware() -> dict[str, Any]:
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


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_task_bars(table: pd.DataFrame, path: Path, metric: str = "test_mcc", title: str = "", x: str = "method") -> Optional[Path]:
    """One panel per task: a bar per ``x`` value (mean over seeds) with the seed spread (std) and seed dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = table[(table["status"] == "done") & table[metric].notna()]
    if done.empty:
        return None
    tasks = list(dict.fromkeys(done["task"]))
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.2 * nrows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
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
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (3.2 * nrows)))  # keep the title clear of the panels
    return _save_figure(fig, path)


def plot_pareto(table: pd.DataFrame, path: Path, metric: str = "test_mcc") -> Optional[Path]:
    """Trainable parameters (% of the model, log) vs the metric, one panel per task: a point per method
    (mean over seeds, whisker: std), the Pareto front dashed. The k-mer baseline has no share of the
    language model and is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    colours = plt.get_cmap("tab10")
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    # one x range for every panel, at least two decades wide, so methods with near-equal budgets
    # (LoRA 1.285 %, AdaLoRA/ARS 1.286 %) sit side by side (jittered a little) instead of far apart
    lo, hi = float(stats["pct"].min()), float(stats["pct"].max())
    lo, hi = min(lo / 2, hi / 100), max(hi * 2, lo * 100)
    from matplotlib.ticker import LogLocator, LogFormatterSciNotation, NullFormatter

    for ax, task in zip(axes.flat, tasks):
        sub = stats[stats["task"] == task].sort_values("pct")
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
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_major_formatter(LogFormatterSciNotation(base=10))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("trainable % of the model (log)", fontsize=8)
        ax.set_ylabel(metric.replace("_", " "), fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.suptitle("trainable parameters vs test MCC (mean ± std over seeds; dashed: Pareto front; x jittered slightly)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (3.4 * nrows)))
    return _save_figure(fig, path)


def _module_grid(final_ranks: dict[str, int]) -> tuple[list[str], list[str], dict[tuple[str, str], int]]:
    layers, kinds, values = [], [], {}
    for name, rank in final_ranks.items():
        parts = name.split(".", 1)
        layer, kind = (parts[0], parts[1]) if len(parts) == 2 and parts[0].isdigit() else ("-", name)
        kind = kind.replace("attention.self.", "").replace("attention.output.", "attn.out.")
        layers.append(layer)
        kinds.append(kind)
        values[(layer, kind)] = rank
    return list(dict.fromkeys(layers)), list(dict.fromkeys(kinds)), values


def plot_rank_patterns(records: list[dict[str, Any]], path: Path) -> Optional[Path]:
    """Mean final rank per module (layer x module type), one panel per budgeted method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_method: dict[str, list[dict[str, int]]] = {}
    for rec in records:
        if rec.get("status") == "done" and rec.get("final_ranks"):
            by_method.setdefault(rec["method"], []).append(rec["final_ranks"])
    if not by_method:
        return None
    fig, axes = plt.subplots(1, len(by_method), figsize=(4.4 * len(by_method), 3.6), squeeze=False)
    fig.subplots_adjust(wspace=0.55)
    image = None
    for ax, (method, patterns) in zip(axes.flat, by_method.items()):
        layers, kinds, _ = _module_grid(patterns[0])
        grid = np.zeros((len(layers), len(kinds)))
        for pattern in patterns:
            _, _, values = _module_grid(pattern)
            for (layer, kind), rank in values.items():
                grid[layers.index(layer), kinds.index(kind)] += rank / len(patterns)
        image = ax.imshow(grid, cmap="viridis", vmin=0, aspect="auto")
        ax.set_xticks(range(len(kinds)))
        ax.set_xticklabels(kinds, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels([f"layer {lay}" for lay in layers], fontsize=7)
        ax.set_title(f"{method} (n={len(patterns)} runs)", fontsize=9)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6, color="white" if v < grid.max() * 0.6 else "black")
    if image is not None:
        fig.colorbar(image, ax=list(axes.flat), shrink=0.8, label="mean final rank")
    return _save_figure(fig, path)


def plot_rank_dynamics(ranks: list[dict[str, Any]], path: Path, title: str = "") -> Optional[Path]:
    """Budget and active rank per module over the allocation steps of one run (ranks.jsonl)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not ranks:
        return None
    steps = [r["step"] for r in ranks]
    modules = list(ranks[-1]["active"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax1.plot(steps, [r["budget"] for r in ranks], label="budget", color="black")
    ax1.plot(steps, [sum(r["active"].values()) for r in ranks], label="active (sum)", ls="--")
    if "rho" in ranks[0]:
        ax1b = ax1.twinx()
        ax1b.plot(steps, [r.get("rho", 0) for r in ranks], color="tab:red", lw=0.8, label="rho")
        ax1b.set_ylabel("rho", color="tab:red")
    ax1.set_xlabel("step")
    ax1.set_ylabel("total rank")
    ax1.legend(fontsize=7)
    matrix = np.array([[r["active"].get(m, 0) for r in ranks] for m in modules])
    image = ax2.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest", extent=(steps[0], steps[-1], len(modules) - 0.5, -0.5))
    ax2.set_yticks(range(len(modules)))
    ax2.set_yticklabels(modules, fontsize=5)
    ax2.set_xlabel("step")
    fig.colorbar(image, ax=ax2, label="active rank")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path)


def _records(study: Study, cells: list[Cell]) -> list[dict[str, Any]]:
    out = []
    for cell in cells:
        rec = read_record(study, cell)
        if rec is not None:
            out.append({**rec, "groups": cell.groups})
    return out


def write_report(study: Study, table: pd.DataFrame) -> Path:
    """``report.md`` with the tables, parameter counts, comparisons and figures under ``figures/``."""
    cells = expand(study)
    records = _records(study, cells)
    kinds = {c.cell_id: c.kind for c in cells}
    table = table.copy()
    table["kind"] = table["cell_id"].map(kinds)
    out = study.output_dir
    figures = out / "figures"
    lines: list[str] = []
    add = lines.append
    n_done = sum(1 for r in records if r.get("status") == "done")
    statuses = pd.Series([r.get("status") for r in records]).value_counts().to_dict() if records else {}
    pending = len(cells) - len(records)
    total_wall = sum(float(r.get("wall_time_s") or 0) for r in records)
    add(f"# Study `{study.name}`" + (f" (scale `{study.scale}`)" if study.scale else ""))
    add("")
    if study.spec.get("description"):
        add(str(study.spec["description"]).strip())
        add("")
    add(f"Generated {_now()} from `{study.path or 'a study spec'}`" + (f" with scale `{study.scale}`" if study.scale else "") + ".")
    add("")
    status_text = ", ".join(f"{v} {k}" for k, v in statuses.items())
    add(f"- cells: {len(cells)} unique ({status_text or 'none run'}; {pending} not run yet)" + (" — **partial results**" if pending or n_done < len(cells) else ""))
    add(f"- summed cell wall time: {total_wall / 60:.1f} min")
    hw = hardware()
    add(f"- hardware of this report's process: {hw['processor']}, {hw['cpu_count']} CPUs, torch {hw['torch']} with {hw['torch_threads']} threads" + (f", GPUs: {', '.join(hw['gpus'])}" if hw.get("gpus") else ""))
    add("- metrics: test split, checkpoint selected on dev MCC; mean ± sample standard deviation over seeds")
    add("")
    groups = list(dict.fromkeys(g for c in cells for g in c.groups))
    method_groups: list[str] = []  # groups compared by method only (no ablation axis)
    for group in groups:
        sub = table[table["group"] == group]
        if sub.empty:
            continue
        methods = list(dict.fromkeys(sub["method"]))
        tasks = list(dict.fromkeys(sub["task"]))
        settings = [s for s in dict.fromkeys(sub["setting"]) if s]
        x = "method"
        neural = sub[sub["kind"] == "train"]
        varying = [c for c in ("model", "encoding", "prefix", "setting") if neural[c].nunique() > 1]
        if varying:
            # an ablation: label each row by what varies (baselines keep their method label)
            sub = sub.copy()
            labels = sub[varying].astype(str).agg(", ".join, axis=1)
            sub["variant"] = np.where(sub["kind"] == "train", sub["method"] + " (" + labels + ")", sub["method"])
            x = "variant"
        if x == "method":
            method_groups.append(group)
        add(f"## {group}")
        add("")
        grid_spec = next((g for g in study.spec.get("grids", []) if g.get("name") == group), {})
        if grid_spec.get("description"):
            add(str(grid_spec["description"]))
            add("")
        variants = list(dict.fromkeys(sub[x]))
        keyed = sub.rename(columns={x: "_x"}).assign(method=lambda d: d["_x"])
        for metric in ("test_mcc", "test_auroc", "dev_mcc"):
            add(f"**{metric.replace('_', ' ')}** (mean ± std over seeds)" + (" — the selection metric" if metric == "dev_mcc" else ""))
            add("")
            add(markdown_table(pivot_text(keyed, metric, variants, tasks)))
        if neural["setting"].nunique() > 1:
            chosen = choose_on_dev(sub[sub["kind"] == "train"])
            if not chosen.empty:
                add("Chosen on dev (highest mean dev MCC over seeds; test MCC of that setting for reference):")
                add("")
                add(markdown_table(chosen))
        params = sub[sub["status"] == "done"].groupby(x, sort=False).agg(
            trainable=("trainable_params", "median"), percent=("trainable_percent", "median"),
            exported=("exported_params", "median"), steps=("steps", "median"),
            wall_s=("wall_time_s", "mean"), seeds=("seed", "nunique"),
        ).reset_index()
        if not params.empty:
            params["percent"] = params["percent"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
            for column in ("trainable", "exported", "steps"):
                params[column] = params[column].map(lambda v: "" if pd.isna(v) else f"{int(round(v)):,}")
            params["wall_s"] = params["wall_s"].map(lambda v: f"{v:.0f}")
            add("Parameters (median over cells; `trainable`: during training, `exported`: in the saved adapter after rank pruning) and mean wall time per cell:")
            add("")
            add(markdown_table(params))
        fig = plot_task_bars(sub, figures / f"{_slug(group)}_mcc.png", "test_mcc", f"{group}: test MCC (bar: mean, whisker: std, dots: seeds)", x=x)
        if fig is not None:
            add(f"![{group}](figures/{fig.name})")
            add("")
        if "ars" in methods and x == "variant" and varying == ["setting"] and {"adalora", "lora"} & set(methods):
            # the same setting for ARS and its reference method(s): compare them setting by setting
            rows = []
            for setting in dict.fromkeys(sub["setting"]):
                here = sub[sub["setting"] == setting]
                for metric in ("test_mcc", "test_auroc"):
                    comp = compare_methods(here, "ars", [m for m in ("lora", "adalora") if m in methods], metric=metric, pooled=False)
                    rows.extend({"setting": setting, "metric": metric, **r} for r in comp.drop(columns="higher_mean").to_dict("records"))
            if rows:
                add("ARS minus the reference method at the same setting, paired by seed (`better`/`worse`: beyond 2 se):")
                add("")
                add(markdown_table(pd.DataFrame(rows)))
        ars_labels = [m for m in methods if m == "ars" or m.startswith("ars_")]  # ARS and its variants
        others = [m for m in ("lora", "adalora") if m in methods]
        if ars_labels and others and x == "method":
            for ars_label in ars_labels:
                for metric in ("test_mcc", "test_auroc"):
                    comp = compare_methods(sub, ars_label, others, metric=metric, group=group)
                    if comp.empty:
                        continue
                    name = metric.replace("test_", "test ").replace("mcc", "MCC").replace("auroc", "AUROC")
                    who = "ARS" if ars_label == "ars" else f"`{ars_label}`"
                    add(f"{who} minus LoRA / AdaLoRA, {name}, paired by seed on the seeds both finished (`se`: standard error of the paired differences; `better`/`worse`: beyond 2 se; `same`: identical on every seed):")
                    add("")
                    add(markdown_table(comp))
                    per_task = comp[comp["task"] != POOLED]
                    wins = per_task.groupby("vs")["higher_mean"].agg(["sum", "count"])
                    for vs, row in wins.iterrows():
                        mine = per_task[per_task["vs"] == vs]
                        add(f"- {who} has the higher mean {name} than {vs} on {int(row['sum'])} of {int(row['count'])} tasks "
                            f"(clearly better on {int((mine['verdict'] == 'better').sum())}, clearly worse on {int((mine['verdict'] == 'worse').sum())}).")
                    add("")
    # the main comparison: a grid named "main", else the first grid compared by method with a neural method
    neural_groups = [g for g in method_groups if (table[(table["group"] == g)]["kind"] == "train").any()]
    main_group = "main" if "main" in groups else (neural_groups[0] if neural_groups else (groups[0] if groups else None))
    main = table[table["group"] == main_group] if main_group else table
    pareto = plot_pareto(table[table["group"].isin(method_groups)], figures / "pareto_trainable_vs_mcc.png")
    if pareto is not None:
        add("## Trainable parameters vs test MCC")
        add("")
        add(f"![pareto](figures/{pareto.name})")
        add("")
    rank_fig = plot_rank_patterns([r for r in records if main_group in r["groups"]], figures / "rank_patterns.png")
    if rank_fig is not None:
        add("## Rank patterns")
        add("")
        add("Mean final rank per adapted module (AdaLoRA and ARS start at `init_r` per module; the budget shrinks to `target_r` × modules).")
        add("")
        add(f"![ranks](figures/{rank_fig.name})")
        add("")
        example = next((r for r in records if r.get("method") == "ars" and r.get("status") == "done" and r.get("run_dir")), None)
        if example is not None:
            dyn = plot_rank_dynamics(runs.load_run(example["run_dir"]).ranks(), figures / "rank_dynamics_ars.png", f"ARS rank allocation: {example['task']} seed {example['seed']}")
            if dyn is not None:
                add(f"![rank dynamics](figures/{dyn.name})")
                add("")
    ref_rows = []
    done = main[main["status"] == "done"]
    for task, refs in REFERENCE_AUROC.items():
        if task not in set(done["task"]):
            continue
        row = {"task": task}
        for method in dict.fromkeys(done["method"]):
            vals = done[(done["task"] == task) & (done["method"] == method)]["test_auroc"].dropna()
            row[method] = _fmt(vals.mean(), vals.std(), len(vals)) if len(vals) else "–"
        row.update({k: f"{v:.3f}" for k, v in refs.items()})
        ref_rows.append(row)
    if ref_rows:
        add("## Test AUROC next to published DNA foundation models")
        add("")
        add(f"Reference columns: {REFERENCE_SOURCE}.")
        add("")
        add(markdown_table(pd.DataFrame(ref_rows)))
    failed = [r for r in records if r.get("status") != "done"]
    if failed:
        add("## Cells that did not finish")
        add("")
        add(markdown_table(pd.DataFrame([{"cell": r["cell_id"], "status": r["status"], "error": str(r.get("error", ""))[:200]} for r in failed])))
    path = out / "report.md"
    runs.atomic_write_text(path, "\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------ CLI


def run_cli(args: Any) -> int:
    """``python -m lingo_core study STUDY.yaml [--scale S] [--set k=v] [--dry-run|--report-only|--cell ID]``."""
    study_args = [args.study, *(["--scale", args.scale] if args.scale else []), *sum((["--set", s] for s in args.set), []), *(["--retry"] if args.retry else [])]
    study = load_study(args.study, args.set, args.scale)
    cells = expand(study)
    if args.dry_run:
        for cell in cells:
            rec = read_record(study, cell)
            seeds = ",".join(str(s) for s in dict.fromkeys(seed for _, _, seed in cell.rows))
            print(f"{cell.cell_id}\t{','.join(cell.groups)}\t{cell.task}\t{cell.method}\tseed={seeds}\t{rec.get('status') if rec else 'pending'}")
        print(f"{len(cells)} cells; work dir {study.work_dir}; output {study.output_dir}", file=sys.stderr)
        return 0
    if args.report_only:
        table = build_table(study, cells)
        path = write_table(study, table)
        write_report(study, table)
        print(path)
        return 0
    shard = None
    if args.shard:
        try:
            index, count = (int(v) for v in args.shard.split("/"))
        except ValueError:
            raise StudyError(f"--shard must look like INDEX/COUNT, e.g. 0/4, got {args.shard!r}") from None
        if not 0 <= index < count:
            raise StudyError(f"--shard {args.shard}: INDEX must be in [0, COUNT)")
        shard = (index, count)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.cell:
        run_study(study, only=[args.cell], retry=args.retry, log=log, write_outputs=False)
        return 0
    path = run_study(study, shard=shard, retry=args.retry, log=log, study_args=study_args)
    print(path)
    table = build_table(study, cells)
    return 0 if (table["status"] == "done").all() and len(table) else 1
