"""Cells: a study's grids expanded into units of work, each identified by a hash of its config.

Each cell is identified by a hash of its fully resolved config, so identical cells requested by
several grids (e.g. the ARS default in the main grid and in the rho ablation) run once, and a
changed setting makes a new cell. Only what can change a cell's result enters the hash: the
adapter sections its method reads (a LoRA cell does not change when ARS's defaults change or a new
method is registered), no output paths, no keys that only matter for another setting's value
(``encoding.nucleotide_init`` outside the nucleotide encoding; the k-mer settings of a native cell are
taken at their defaults), and keys added later are left out at their neutral default.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from ..adapters import method_names, sections_of
from ..config import ConfigError, apply_overrides, config_from_dict, config_values, deep_merge
from .baselines import BASELINES
from .spec import GRID_KEYS, Study, StudyError, resolve_items

# keys that do not change a cell's result and are left out of its identity
_VOLATILE = (("output_dir",), ("run_name",), ("train", "progress_bar"))
# config keys added after studies had been run, with the value that reproduces the old behaviour: at
# that value they are left out of a cell's identity, so cells finished before the key existed stay valid
_NEUTRAL_DEFAULTS = {("adapter", "adalora", "lambda_lr_scale"): 1.0, ("encoding", "nucleotide_init"): "mean",
                     ("data", "augment"): "none", ("data", "eval_strands"): "given", ("model", "dropout"): None,
                     ("data", "crop"): 0}
# data keys only a trained network reads (the k-mer regression fits the sequences whole)
_NETWORK_ONLY_DATA_KEYS = ("crop",)
# keys that change nothing unless another key has a value: (key, (other key, value))
_ONLY_WHEN = {("encoding", "nucleotide_init"): (("encoding", "sequence"), "nucleotide")}
# keys that change nothing for the native encoding, with the default every finished native cell carries: a
# native cell next to k-mer cells in one grid (which sets encoding.k) is the native cell run elsewhere.
# (Nucleotide cells keep them: some were finished with a grid's k.)
_NATIVE_RESETS = {("encoding", "k"): 6, ("encoding", "kmer_stride"): None}


@dataclass
class Cell:
    """One unit of work: a task, a method and a seed (plus model/encoding/prefix/setting axes)."""

    cell_id: str
    task: str
    method: str  # the study's method label (e.g. ``ars_paper``), not necessarily ``adapter.method``
    seed: int
    model: str
    encoding: str
    prefix: str
    config: dict[str, Any]  # fully resolved LINGO config (dict)
    baseline: Optional[dict[str, Any]] = None  # non-neural baseline spec, e.g. {"baseline": "kmer_lr", ...}
    # table rows this cell fills: (group, setting label such as "adapter.ars.reintroduce_rate=0.05", seed)
    rows: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``train`` for a trained model, else the baseline's name (``kmer_lr``)."""
        return self.baseline["baseline"] if self.baseline else "train"

    @property
    def adapter_method(self) -> Optional[str]:
        """The registered adapter method a trained cell uses (None for a baseline)."""
        return None if self.baseline else (self.config.get("adapter") or {}).get("method")

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(group for group, _, _ in self.rows))

    def base_record(self) -> dict[str, Any]:
        """The fields every record of this cell starts with (see :mod:`lingo_core.study.records`)."""
        return {
            "cell_id": self.cell_id,
            "task": self.task,
            "method": self.method,
            "seed": self.seed,
            "model": self.model,
            "encoding": self.encoding,
            "prefix": self.prefix,
            "kind": self.kind,
            "config": self.config,
            "baseline": self.baseline,
        }


def slug(text: str) -> str:
    """A file-name-safe form of a task or group name (``gue/tf/0`` -> ``tf_0``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("gue/", "").replace("/", "_")).strip("_")


def _parent(tree: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = tree
    for part in path[:-1]:
        node = node.get(part, {})
    return node


def cell_identity(config: dict[str, Any], baseline: Optional[dict[str, Any]] = None) -> str:
    """A 10-hex-digit hash of what determines a cell's result (see the module docstring)."""
    ident = copy.deepcopy(config)
    for path in _VOLATILE:
        _parent(ident, path).pop(path[-1], None)
    if _parent(ident, ("encoding", "sequence")).get("sequence") == "native":
        for path, default in _NATIVE_RESETS.items():
            if path[-1] in _parent(ident, path):
                _parent(ident, path)[path[-1]] = default
    for path, (other, value) in _ONLY_WHEN.items():
        if _parent(ident, other).get(other[-1]) != value:
            _parent(ident, path).pop(path[-1], None)
    for path, neutral in _NEUTRAL_DEFAULTS.items():
        node = _parent(ident, path)
        if path[-1] in node and node[path[-1]] == neutral:
            node.pop(path[-1])
    adapter = ident.get("adapter")
    if isinstance(adapter, dict) and adapter.get("method") in method_names():
        keep = {"method", *sections_of(adapter["method"])}
        ident["adapter"] = {k: v for k, v in adapter.items() if k in keep}
    if baseline:  # a baseline depends only on its data and its own settings (it is deterministic)
        ident = {"data": {k: v for k, v in ident["data"].items() if k not in _NETWORK_ONLY_DATA_KEYS}}
    blob = json.dumps({"config": ident, "baseline": baseline}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def _task_overlay(overrides: Optional[dict[str, Any]], task: str) -> dict[str, Any]:
    """The overlays of ``overrides`` (``{glob: config}``) whose glob matches ``task``, merged in file order."""
    out: dict[str, Any] = {}
    for pattern, overlay in (overrides or {}).items():
        if fnmatch.fnmatch(task, str(pattern)):
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


def _dotted(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    apply_overrides(out, [f"{key}={json.dumps(value)}"])
    return out


def _format_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


@dataclass
class _Grid:
    """One entry of ``grids``, validated, with its axes expanded."""

    name: str
    where: str
    tasks: list[str]
    methods: list[str]
    seeds: list
    vary_keys: list[str]
    axes: list[tuple]  # (model, encoding, prefix, vary values)
    overlay: dict[str, Any]


def _parse_grid(spec: dict[str, Any], index: int, grid: dict[str, Any]) -> _Grid:
    name = grid.get("name") or f"grid{index}"
    where = f"grids[{index}] ({name})"
    bad = set(grid) - GRID_KEYS
    if bad:
        raise StudyError(f"{where}: unknown key(s) {sorted(bad)}; valid keys: {sorted(GRID_KEYS)}")
    tasks = resolve_items(spec, grid.get("tasks"), where)
    if not tasks:
        raise StudyError(f"{where}: 'tasks' is required (a list of task names or paths)")
    methods = resolve_items(spec, grid.get("methods"), where)
    if not methods:
        raise StudyError(f"{where}: 'methods' is required (labels defined under 'methods')")
    defined = spec.get("methods") or {}
    for m in methods:
        if m not in defined:
            raise StudyError(f"{where}: method '{m}' is not defined under 'methods' (defined: {sorted(defined)})")
    vary = grid.get("vary") or {}
    if not isinstance(vary, dict):
        raise StudyError(f"{where}: 'vary' must map dotted config keys to lists of values")
    vary_values = [_as_list(vary[k], f"{where}.vary.{k}") for k in vary]
    axes = itertools.product(
        _as_list(grid.get("models"), f"{where}.models"),
        _as_list(grid.get("encodings"), f"{where}.encodings"),
        _as_list(grid.get("prefixes"), f"{where}.prefixes"),
        itertools.product(*vary_values) if vary else [()],
    )
    seeds = _as_list(grid.get("seeds") or spec.get("seeds") or [42], f"{where}.seeds")
    return _Grid(name, where, tasks, methods, seeds, list(vary), list(axes), grid.get("set") or {})


def _method_overlay(spec: dict[str, Any], label: str, task: str) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
    """A method label's config overlay on ``task`` and, for a baseline, its settings.

    A trained method's ``task_overrides`` (``{glob: config}``) are merged onto its overlay for the
    tasks they match, in file order, e.g. LoRA's learning rate on the TF tasks, where dev chose
    another one than on the promoters.
    """
    mspec = copy.deepcopy((spec.get("methods") or {})[label] or {})
    per_task = mspec.pop("task_overrides", None)
    if per_task is not None and not isinstance(per_task, dict):
        raise StudyError(f"methods.{label}.task_overrides must map task globs to config overlays, "
                         f"e.g. {{'gue/tf/*': {{train: {{lr: 0.0005}}}}}}")
    if "baseline" not in mspec:
        for pattern, overlay in (per_task or {}).items():
            if overlay is not None and not isinstance(overlay, dict):
                raise StudyError(f"methods.{label}.task_overrides.{pattern} must be a config overlay (a mapping)")
        return deep_merge(mspec, _task_overlay(per_task, task)), None
    if per_task is not None:
        raise StudyError(f"methods.{label}: task_overrides is for trained methods; a baseline "
                         f"({mspec['baseline']}) chooses its settings on dev")
    if mspec["baseline"] not in BASELINES:
        raise StudyError(f"methods.{label}.baseline must be one of {list(BASELINES)}, got {mspec['baseline']!r}")
    baseline = {k: v for k, v in mspec.items() if k != "data"}
    return ({"data": mspec["data"]} if "data" in mspec else {}), baseline


def _resolve(spec: dict[str, Any], grid: _Grid, task: str, overlay: dict[str, Any], axis: tuple, seed: int) -> dict[str, Any]:
    """The config values of one cell: base < task overrides < method (with its task overrides) < grid ``set``
    < axes < task/seed."""
    model, encoding, prefix, combo = axis
    values = deep_merge(spec.get("base") or {}, _task_overlay(spec.get("task_overrides"), task))
    values = deep_merge(values, overlay)
    values = deep_merge(values, grid.overlay)
    if model is not None:
        values = deep_merge(values, {"model": {"name": model}})
    if encoding is not None:
        values = deep_merge(values, {"encoding": {"sequence": encoding}})
    if prefix is not None:
        values = deep_merge(values, {"encoding": {"prefix": prefix}})
    for key, value in zip(grid.vary_keys, combo):
        values = deep_merge(values, _dotted(key, value))
    return deep_merge(values, {"data": {"task": task}, "train": {"seed": int(seed)}})


def expand(study: Study) -> list[Cell]:
    """The study's cells, in file order (grids, then tasks, methods, axes, seeds), duplicates merged."""
    spec = study.spec
    if not spec.get("grids"):
        raise StudyError("a study needs 'grids': a list of {name, tasks, methods, ...}")
    cells: dict[str, Cell] = {}
    for index, entry in enumerate(spec["grids"]):
        grid = _parse_grid(spec, index, entry)
        for task in grid.tasks:
            for method in grid.methods:
                overlay, baseline = _method_overlay(spec, method, task)
                for axis in grid.axes:
                    for seed in grid.seeds:
                        try:
                            cfg = config_from_dict(_resolve(spec, grid, task, overlay, axis, seed))
                        except ConfigError as exc:
                            raise StudyError(f"{grid.where}, task {task}, method {method}, seed {seed}: {exc}") from None
                        resolved = config_values(cfg)
                        ident = cell_identity(resolved, baseline)
                        # k-mer logistic regression is deterministic: one fit serves every seed's row
                        cell_id = f"{slug(task)}-{method}-{ident}" if baseline else f"{slug(task)}-{method}-s{seed}-{ident}"
                        setting = ", ".join(f"{k}={_format_value(v)}" for k, v in zip(grid.vary_keys, axis[3]))
                        row = (grid.name, setting, int(seed))
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
    return _ordered(list(cells.values()), spec.get("order", "grids"))


def _ordered(cells: list[Cell], order: str) -> list[Cell]:
    if order == "seeds_first":
        # every grid's first seed, then every grid's second seed...: a study stopped early has
        # all cells for some seeds rather than some cells for all seeds
        rank = {s: i for i, s in enumerate(dict.fromkeys(c.seed for c in cells))}
        return sorted(cells, key=lambda c: rank[c.seed])  # stable: file order within a seed
    if order == "tasks_first":
        # every grid's cells of the first task, then of the second...: a study stopped early has
        # every comparison and ablation for some tasks rather than some of them for every task
        rank = {t: i for i, t in enumerate(dict.fromkeys(c.task for c in cells))}
        return sorted(cells, key=lambda c: rank[c.task])
    if order != "grids":
        raise StudyError(f"order must be 'grids', 'seeds_first' or 'tasks_first', got {order!r}")
    return cells

