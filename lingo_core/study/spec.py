"""The study file: its keys, profiles, named sets and declared comparisons.

A study file (YAML) has these top-level keys:

``name``
    used for the default output folders.
``description``
    a paragraph printed at the top of the report.
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
    ``{adapter: {method: ars, ars: {mode: paper}}}``), or a non-neural baseline
    ``{baseline: kmer_lr, k: [3, 4, 5, 6], C: [0.1, 1, 10]}`` (k-mer logistic regression, k and C
    selected on dev). A trained method's ``task_overrides`` (``{glob: config}``) apply to that method
    on the matching tasks only (e.g. ``lora: {adapter: {method: lora}, train: {lr: 0.001},
    task_overrides: {"gue/tf/*": {train: {lr: 0.0005}}}}``); a grid's ``set`` and axes still win.
``sets``
    ``{name: [items]}``: named lists of tasks or methods. A grid's ``tasks``/``methods`` may name a
    set, or list set names among plain items; a profile can then change a set in one place.
``seeds``
    default seeds (``train.seed``) for every grid.
``grids``
    a list of ``{name, tasks, methods, seeds?, models?, encodings?, prefixes?, vary?, set?, description?}``.
    ``models``/``encodings``/``prefixes`` are axes over ``model.name``/``encoding.sequence``/
    ``encoding.prefix``; ``vary`` is ``{dotted.key: [values]}`` for any other config key
    (e.g. ``adapter.ars.reintroduce_rate: [0, 0.05, 0.1, 0.2]``); ``set`` is a fixed overlay.
``comparisons``
    the paired comparisons the report prints, a list of::

        - method: ars                        # the method label compared (required)
          against: [lora, adalora]           # reference method labels or set names (required)
          label: ARS                         # how the report names `method` (default: `ars`)
          name: ARS minus LoRA / AdaLoRA     # heading (default: "<label> minus lora / adalora")
          metrics: [test_mcc, test_auroc]    # columns of the table (this is the default)
          groups: [main, baselines]          # grids to compare in (default: every grid)
          pooled: true                       # add a row pooling every (task, seed) pair (default)
          per_setting: true                  # in grids that vary only a setting, compare setting by
                                             # setting (default)

    In a grid compared by method, ``method`` minus each ``against`` label present in the grid,
    per task and paired by seed (see :func:`lingo_core.study.stats.compare_methods`); in a grid
    that varies a setting for both, the same at each setting. A grid without ``method`` or without
    any ``against`` label is skipped. The rank-dynamics figure shows a run of the first compared
    ``method`` that has a rank budget.
``budget``
    ``time_limit_s``: wall-clock guard per cell. Results are made reproducible by step caps in the
    config (``train.max_steps``); a cell that runs past the guard is cancelled and recorded with
    status ``timeout`` and no metrics (never as a silently shorter run).
``order``
    ``grids`` (default: file order), ``seeds_first`` (all cells of the first seed, then the
    second...) or ``tasks_first`` (all cells of the first task, then the second...), so that a
    study stopped early has complete comparisons for fewer seeds or fewer tasks.
``output_dir`` / ``work_dir``
    the table, report, figures and per-cell records (default ``results/<name>``; commit it) / run
    directories (default ``results/runs/<name>``; large, not committed).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml

from ..config import ConfigError, apply_overrides, deep_merge

PathLike = Union[str, Path]

STUDY_KEYS = {
    "name", "description", "scale", "profiles", "base", "task_overrides", "methods", "seeds", "grids",
    "comparisons", "budget", "output_dir", "work_dir", "order", "sets",
}
GRID_KEYS = {"name", "tasks", "methods", "seeds", "models", "encodings", "prefixes", "vary", "set", "description"}
COMPARISON_KEYS = {"method", "against", "label", "name", "metrics", "groups", "pooled", "per_setting"}
METRICS = ("mcc", "f1", "accuracy", "auroc", "auprc")
COMPARABLE = tuple(f"{split}_{m}" for split in ("test", "dev") for m in METRICS)


class StudyError(ConfigError):
    """A study file is invalid; the message names the key and the fix."""


@dataclass(frozen=True)
class Comparison:
    """One entry of ``comparisons``: ``method`` minus each of ``against``, paired by seed."""

    method: str
    against: tuple[str, ...]
    label: str
    name: str
    metrics: tuple[str, ...] = ("test_mcc", "test_auroc")
    groups: Optional[tuple[str, ...]] = None  # None: every grid
    pooled: bool = True
    per_setting: bool = True

    def applies_to(self, group: str) -> bool:
        return self.groups is None or group in self.groups


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

    @property
    def comparisons(self) -> list[Comparison]:
        return parse_comparisons(self.spec)

    def grid_spec(self, name: str) -> dict[str, Any]:
        """The entry of ``grids`` called ``name`` ({} when there is none)."""
        return next((g for g in self.spec.get("grids") or [] if g.get("name") == name), {})


def load_study(
    path: Optional[PathLike] = None,
    overrides: Optional[Sequence[str]] = None,
    scale: Optional[str] = None,
    spec: Optional[dict[str, Any]] = None,
) -> Study:
    """Read a study file (or take ``spec``), apply ``--set`` overrides and the selected profile.

    Every cell's config and every comparison are validated here, before anything runs.
    """
    from .cells import expand  # cells build on this module

    if spec is None:
        spec = _read_yaml(path)
    spec = copy.deepcopy(spec)
    where = str(path or "study")
    if not isinstance(spec, dict):
        raise StudyError(f"{where}: the top level of a study file must be a mapping")
    apply_overrides(spec, list(overrides or []))
    unknown = set(spec) - STUDY_KEYS
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(STUDY_KEYS)}")
    chosen = scale or spec.get("scale")
    profiles = spec.get("profiles") or {}
    if chosen is not None:
        if chosen not in profiles:
            raise StudyError(f"{where}: scale '{chosen}' is not one of the profiles {sorted(profiles)}")
        overlay = profiles[chosen] or {}
        bad = set(overlay) - STUDY_KEYS
        if bad:
            raise StudyError(f"profiles.{chosen}: unknown key(s) {sorted(bad)}")
        spec = deep_merge(spec, overlay)
        spec["scale"] = chosen
    study = Study(Path(path) if path else None, spec, chosen)
    expand(study)
    parse_comparisons(spec)
    return study


def _read_yaml(path: Optional[PathLike]) -> Any:
    if path is None:
        raise StudyError("load_study needs a path or a spec")
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file {path} does not exist")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: invalid YAML: {exc}") from exc


def resolve_items(spec: dict[str, Any], value: Any, where: str, seen: tuple[str, ...] = ()) -> list[str]:
    """A grid's ``tasks``/``methods``: a list whose items may name entries of ``sets`` (expanded)."""
    sets = spec.get("sets") or {}
    items = [value] if isinstance(value, str) else list(value or [])
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and item in sets:
            if item in seen:
                raise StudyError(f"{where}: set '{item}' includes itself")
            out.extend(resolve_items(spec, sets[item], where, seen + (item,)))
        else:
            out.append(str(item))
    return list(dict.fromkeys(out))


def parse_comparisons(spec: dict[str, Any]) -> list[Comparison]:
    """The validated ``comparisons`` of a study spec; a StudyError names the offending key."""
    entries = spec.get("comparisons") or []
    if not isinstance(entries, list):
        raise StudyError("comparisons must be a list of {method, against, ...} mappings")
    return [_parse_comparison(spec, entry, f"comparisons[{i}]") for i, entry in enumerate(entries)]


def _parse_comparison(spec: dict[str, Any], entry: Any, where: str) -> Comparison:
    if not isinstance(entry, dict):
        raise StudyError(f"{where} must be a mapping such as {{method: ars, against: [lora]}}, got {entry!r}")
    unknown = set(entry) - COMPARISON_KEYS
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(COMPARISON_KEYS)}")
    defined = spec.get("methods") or {}
    method = entry.get("method")
    if not isinstance(method, str) or method not in defined:
        raise StudyError(f"{where}.method must be a method label defined under 'methods' {sorted(defined)}, got {method!r}")
    against = resolve_items(spec, entry.get("against"), f"{where}.against")
    if not against:
        raise StudyError(f"{where}.against is required: a list of method labels to compare {method!r} with")
    for other in against:
        if other not in defined or other == method:
            raise StudyError(f"{where}.against: {other!r} is not another method label defined under 'methods' {sorted(defined)}")
    metrics = entry.get("metrics", ["test_mcc", "test_auroc"])
    metrics = [metrics] if isinstance(metrics, str) else list(metrics or [])
    bad = [m for m in metrics if m not in COMPARABLE]
    if bad or not metrics:
        raise StudyError(f"{where}.metrics must be a non-empty list of {list(COMPARABLE)}, got {entry.get('metrics')!r}")
    groups = entry.get("groups")
    if groups is not None:
        groups = [groups] if isinstance(groups, str) else list(groups)
        names = [g.get("name") or f"grid{i}" for i, g in enumerate(spec.get("grids") or [])]
        missing = [g for g in groups if g not in names]
        if missing or not groups:
            raise StudyError(f"{where}.groups: {missing or groups!r} must name grids of this study {names}")
    for key in ("pooled", "per_setting"):
        if not isinstance(entry.get(key, True), bool):
            raise StudyError(f"{where}.{key} must be true or false, got {entry[key]!r}")
    label = str(entry.get("label") or f"`{method}`")
    return Comparison(
        method=method,
        against=tuple(against),
        label=label,
        name=str(entry.get("name") or f"{label} minus {' / '.join(against)}"),
        metrics=tuple(metrics),
        groups=None if groups is None else tuple(groups),
        pooled=entry.get("pooled", True),
        per_setting=entry.get("per_setting", True),
    )
