"""Which finished runs can share one backbone in a panel, and why the others cannot.

A panel loads its backbone once and attaches every run's adapter to it, so its runs must agree on
everything that makes the backbone compute what each run was trained on (:class:`BackboneKey`):

- the **base model** as loaded (a registry model's folder, a local folder or a hub id);
- the **vocabulary**: the model's own tokens, or those plus the five dedicated nucleotide tokens
  (``encoding.sequence: nucleotide`` resizes the embedding matrix);
- the **pooling** the classifier reads (``model.pooling`` resolved: mean, max, cls, last, native);
- the **precision** (fp32, or bf16/fp16 autocast) and the **device** it runs on;
- whether the model's own code may run (``model.trust_remote_code``).

What may differ between the runs, because each task keeps its own encoder and head: the task and its
labels, the language prefix (its ``{domain}``, ``{species}`` and ``{task}`` fields), ``native`` or
``kmer`` sequence tokens, ``encoding.max_length``, the IUPAC policy, the method (LoRA, AdaLoRA, ARS,
head only) and its settings. Every run of a panel is scored with exactly the token ids ``predict``
gives it alone.

A run cannot join any panel when it is not finished (a panel attaches exported adapters), when it is
damaged, when it fine-tuned backbone weights (``full``, or any export holding backbone tensors), or
when its adapter is a peft type other than LoRA/AdaLoRA. One more check needs the backbone's weights
and happens at load time (:func:`lingo_core.panel.load_panel`): a head-only run on nucleotide tokens
may only have changed the rows of the new tokens, not those of the pretrained vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from .. import runs
from ..adapters.head.model import is_head_parameter
from ..config import ConfigError, LingoConfig, ModelConfig
from ..models import ModelError, load_model, resolve_device

PathLike = Union[str, Path]
PEFT_TYPES = ("LORA", "ADALORA")  # adapters a panel can attach (AdaLoRA/ARS in LoRA form)
NUCLEOTIDE_VOCABULARY = "the model's tokens + 5 nucleotide tokens"
MODEL_VOCABULARY = "the model's own tokens"


class PanelError(ValueError):
    """Runs cannot form a panel; the message names each refused run and says why."""


@dataclass(frozen=True)
class BackboneKey:
    """What every run of a panel shares; two runs with equal keys can share one loaded backbone."""

    model: str  # the base model as loaded: registry folder, resolved local folder, or hub id
    vocabulary: str
    pooling: str
    precision: str  # "no" (fp32), "bf16", "fp16"
    device: str
    remote_code: bool
    model_name: str = dataclasses.field(default="", compare=False)  # as the config names it (for messages)

    FIELDS = (
        ("model", "base model"),
        ("vocabulary", "vocabulary"),
        ("pooling", "pooling"),
        ("precision", "precision"),
        ("device", "device"),
        ("remote_code", "trust_remote_code"),
    )

    def text(self, field: str) -> str:
        value = getattr(self, field)
        if field == "model":
            return self.model_name if self.model_name and self.model_name != value else value
        if field == "precision":
            return {"no": "fp32"}.get(value, value)
        if field == "pooling":
            return f"{value} pooling"
        if field == "remote_code":
            return "the model's own code allowed" if value else "no model code"
        return str(value)

    def describe(self) -> str:
        """``minilm-l6 · the model's own tokens · mean pooling · fp32 · cpu``."""
        parts = [self.text(name) for name, _ in self.FIELDS if name != "remote_code"]
        return " · ".join(parts + ([self.text("remote_code")] if self.remote_code else []))

    def differences(self, panel: "BackboneKey") -> list[str]:
        """``other base model: X (the panel's: Y)`` for every compared field that differs from ``panel``'s."""
        out = []
        for name, label in self.FIELDS:
            if getattr(self, name) != getattr(panel, name):
                out.append(f"other {label}: {self.text(name)} (the panel's: {panel.text(name)})")
        return out


@dataclass
class Refusal:
    """A run that cannot join, and why (one line)."""

    run: runs.Run
    reason: str

    def __str__(self) -> str:
        return f"{self.run.id}: {self.reason}"


@dataclass
class PanelGroup:
    """Finished runs that can form one panel (equal :class:`BackboneKey`), newest first."""

    key: BackboneKey
    runs: list[runs.Run]


@dataclass
class Grouping:
    """Runs grouped by backbone: the groups (largest first) and the runs no panel can take."""

    groups: list[PanelGroup]
    refused: list[Refusal]

    def why_not(self, run: runs.Run, group: PanelGroup) -> Optional[str]:
        """Why ``run`` cannot join ``group`` (None when it is in it)."""
        if any(r.path == run.path for r in group.runs):
            return None
        for refusal in self.refused:
            if refusal.run.path == run.path:
                return refusal.reason
        for other in self.groups:
            if any(r.path == run.path for r in other.runs):
                return "; ".join(other.key.differences(group.key))
        return "not a run of this listing"


# -- one run ---------------------------------------------------------------------------------------------
def member_problem(run: runs.Run) -> Optional[str]:
    """Why ``run`` cannot join any panel (one line), or None. Reads files only; no model is loaded."""
    damage = run.damage
    if damage:
        return f"its run directory is damaged ({damage})"
    if run.state != "done" or not run.has_adapter:
        return (
            f"not finished (state {run.state}); a panel attaches finished runs' exported adapters, "
            "so wait for it to finish (predict can use its best checkpoint meanwhile)"
        )
    info = run.export_info() or {}
    if info.get("format") == runs.EXPORT_PEFT:
        return _peft_export_problem(run)
    return _trainable_export_problem(run, str(info.get("method")))


def _peft_export_problem(run: runs.Run) -> Optional[str]:
    try:
        config = json.loads((run.adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its adapter/adapter_config.json cannot be read"
    peft_type = config.get("peft_type") if isinstance(config, dict) else None
    if peft_type not in PEFT_TYPES:
        return f"its adapter is a peft {peft_type} adapter; a panel attaches LoRA, AdaLoRA and ARS adapters and head-only runs"
    if config.get("use_dora") or config.get("layer_replication"):
        return "its LoRA adapter uses DoRA or layer replication, which a panel does not attach"
    return None


def _trainable_export_problem(run: runs.Run, method: str) -> Optional[str]:
    """A non-peft export may hold the classification head and the word embeddings (new nucleotide rows), nothing else."""
    if method == "full":
        return (
            "full fine-tuning changed every weight of the backbone, so it has no adapter to attach to a shared "
            "backbone; score it on its own with predict"
        )
    from safetensors import safe_open

    try:
        with safe_open(str(runs.export_weights_path(run.adapter_dir)), framework="pt") as handle:
            names = list(handle.keys())
    except Exception as exc:  # noqa: BLE001 - safetensors fails in several ways on a bad file
        return f"its exported weights cannot be read ({type(exc).__name__})"
    backbone = [n for n in names if not is_head_parameter(n) and not runs.is_embedding_weight(n)]
    if backbone:
        more = f" and {len(backbone) - 1} more" if len(backbone) > 1 else ""
        return (
            f"its export changes backbone weights ({backbone[0]}{more}), which a shared backbone cannot hold "
            "per task; score it on its own with predict"
        )
    if not any(is_head_parameter(n) for n in names):
        return "its export holds no classification head"
    return None


@functools.lru_cache(maxsize=32)
def _model_facts(name: str, pooling: str, trust_remote_code: bool) -> tuple[str, str]:
    """(source as loaded, resolved pooling) of a model, from its config and tokenizer only (no weights)."""
    loaded = load_model(ModelConfig(name=name, pooling=pooling, trust_remote_code=trust_remote_code, device="cpu"), 2, empty=True)
    source = loaded.source
    if Path(source).exists():
        source = str(Path(source).resolve())
    return source, loaded.pooling


def backbone_key(cfg: LingoConfig) -> BackboneKey:
    """The :class:`BackboneKey` of a run's config as inference runs it (:func:`~lingo_core.inference.inference_config`).

    Raises :class:`~lingo_core.models.ModelError` when the model cannot be found.
    """
    model_cfg = cfg.model
    source, pooling = _model_facts(model_cfg.name, model_cfg.pooling, bool(model_cfg.trust_remote_code))
    resolved_device, precision = resolve_device(model_cfg)
    vocabulary = NUCLEOTIDE_VOCABULARY if cfg.encoding.sequence == "nucleotide" else MODEL_VOCABULARY
    return BackboneKey(
        source, vocabulary, pooling, precision, str(resolved_device), bool(model_cfg.trust_remote_code), model_cfg.name
    )


def run_key(run: runs.Run, device: Optional[str] = None, trust_remote_code: Optional[bool] = None) -> Union[BackboneKey, Refusal]:
    """The run's :class:`BackboneKey`, or a :class:`Refusal` saying why it cannot join any panel.

    ``device`` overrides the run's ``model.device``; ``trust_remote_code`` as in
    :func:`~lingo_core.inference.load_trained` (a run's config never allows a model's own code by itself).
    """
    from ..inference import RunLoadError, inference_config

    problem = member_problem(run)
    if problem:
        return Refusal(run, problem)
    try:
        cfg = inference_config(run, device, trust_remote_code)
    except ConfigError as exc:
        return Refusal(run, f"its config.yaml cannot be used ({_first_line(exc)})")
    except RunLoadError as exc:
        return Refusal(run, _first_line(exc).removeprefix(f"{run.path}: "))
    try:
        return backbone_key(cfg)
    except (ModelError, OSError, ValueError) as exc:
        return Refusal(run, f"its base model cannot be loaded ({_first_line(exc)})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split())[:300] if text else type(exc).__name__


# -- many runs -------------------------------------------------------------------------------------------
def as_runs(items: Iterable[Union[runs.Run, PathLike]]) -> list[runs.Run]:
    """Runs from runs or run-directory paths; a path that is not a run directory raises :class:`PanelError`."""
    out = []
    for item in items:
        if isinstance(item, runs.Run):
            out.append(item)
            continue
        try:
            out.append(runs.load_run(Path(item).expanduser()))
        except FileNotFoundError:
            raise PanelError(
                f"{item} is not a LINGO run directory (no {runs.CONFIG}); give the folder of a finished run"
            ) from None
    return out


def group_compatible(
    items: Iterable[Union[runs.Run, PathLike]], device: Optional[str] = None, trust_remote_code: Optional[bool] = None
) -> Grouping:
    """Group runs by :class:`BackboneKey` (largest group first, ties by the newest run); refusals for the rest."""
    groups: dict[BackboneKey, list[runs.Run]] = {}
    refused: list[Refusal] = []
    for run in as_runs(items):
        key = run_key(run, device, trust_remote_code)
        if isinstance(key, Refusal):
            refused.append(key)
        else:
            groups.setdefault(key, []).append(run)
    order = sorted(groups.items(), key=lambda item: -len(item[1]))  # stable: first seen (newest) wins ties
    return Grouping([PanelGroup(key, members) for key, members in order], refused)


def check_panel(
    items: Sequence[Union[runs.Run, PathLike]], device: Optional[str] = None, trust_remote_code: Optional[bool] = None
) -> tuple[BackboneKey, list[runs.Run]]:
    """The shared key and the runs of a panel; :class:`PanelError` naming every run that cannot join, and why.

    The first run that can join sets the panel's backbone; every other run is compared with it.
    """
    members = as_runs(items)
    if not members:
        raise PanelError("a panel needs at least one finished run")
    seen: dict[Path, str] = {}
    for run in members:
        path = run.path.resolve()
        if path in seen:
            raise PanelError(f"{run.path} is given twice; give each run once")
        seen[path] = run.id
    keys = [run_key(run, device, trust_remote_code) for run in members]
    reference = next((k for k in keys if isinstance(k, BackboneKey)), None)
    problems: list[str] = []
    for run, key in zip(members, keys):
        if isinstance(key, Refusal):
            problems.append(str(key))
        elif key != reference:
            problems.append(f"{run.id}: {'; '.join(key.differences(reference))}")  # type: ignore[arg-type]
    if problems:
        where = f" (the panel's backbone, from {members[keys.index(reference)].id}: {reference.describe()})" if reference else ""
        raise PanelError(
            f"{len(problems)} of {len(members)} run(s) cannot join the panel{where}:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nFix: leave them out (python -m lingo_core panel --runs-dir DIR --list shows which runs can form a panel)"
        )
    return reference, members  # type: ignore[return-value]


def describe_grouping(grouping: Grouping) -> list[dict[str, Any]]:
    """One row per run for listings: its group number (0 = refused), backbone, and the reason if refused."""
    rows: list[dict[str, Any]] = []
    for number, group in enumerate(grouping.groups, start=1):
        for run in group.runs:
            rows.append({"group": number, "run": run.id, "task": run.task, "method": run.method, "backbone": group.key.describe(), "reason": ""})
    for refusal in grouping.refused:
        rows.append({"group": 0, "run": refusal.run.id, "task": refusal.run.task, "method": refusal.run.method, "backbone": "", "reason": refusal.reason})
    return rows
