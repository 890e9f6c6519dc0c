"""A panel: one backbone, every run's adapter attached under its own name, sequences scored against all tasks.

    >>> from lingo_core.panel import load_panel
    >>> panel = load_panel(["runs/A", "runs/B", "runs/C"])     # the backbone is loaded once
    >>> panel.score(["ACGT...", "TTGA..."], ids=["a", "b"])    # one row per sequence, one column per task (and label)
    >>> panel.task_table()                                       # each column's task, label, domain, test MCC/AUROC

Each task is scored by a :class:`TaskPredictor`: a :class:`~lingo_core.predict.Predictor` whose model
is the panel's shared peft model with the task's adapter switched in, so validation, windows, the
reverse complement and aggregation are exactly what ``predict`` does for that run alone. Switching is
``set_adapter`` (no reload, no merge). In ``mixed`` mode the logit requests of all tasks go through
one forward pass per batch, each row through its own adapter (peft's ``adapter_names``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

from .. import runs
from ..inference import (
    RunLoadError,
    TrainedModel,
    build_encoder,
    inference_config,
    load_backbone,
    predict_logits,
    run_task_info,
)
from ..models import store_frozen_weights
from ..predict import (
    STREAM_CHUNK_NT,
    STREAM_CHUNK_RECORDS,
    Predictions,
    Predictor,
    SequencePrediction,
    default_batch_size,
    default_max_tokens,
    record_chunks,
    run_steps,
)
from ..sequence_input import InputRecord, as_records, gather_inputs
from .attach import adapter_parameter_count, adapter_parts, attach, fuse_lora_layers
from .compat import BackboneKey, PanelError, check_panel

PathLike = Union[str, Path]
MODES = ("auto", "switch", "mixed")
SCORING_OPTIONS = {"aggregate", "stride", "window", "reverse_complement", "strict", "batch_size"}  # no threshold: no labels


class TaskPredictor(Predictor):
    """One task of a panel: a Predictor on the panel's shared model that switches its adapter in before every forward."""

    def __init__(self, trained: TrainedModel, adapter: str, panel: "Panel") -> None:
        super().__init__(trained, merge=False)
        self.adapter = adapter
        self.panel = panel

    def logits_of_ids(self, input_ids: Sequence[list[int]], batch_size: Optional[int] = None, precision: Optional[str] = None) -> np.ndarray:
        with self.panel.lock:  # the active adapter is the shared model's state: one task's forward at a time
            self.panel.activate(self.adapter)
            return super().logits_of_ids(input_ids, batch_size, precision)


@dataclass
class PanelColumn:
    """One probability column: a task's label."""

    name: str  # the column header, ``<task>:<label>``
    task: "PanelTask"
    label_index: int

    @property
    def label(self) -> str:
        return self.task.label_names[self.label_index]


@dataclass
class PanelTask:
    """A run in a panel, with what a user needs to read its columns."""

    adapter: str  # the peft adapter name
    run: runs.Run
    predictor: TaskPredictor
    name: str  # unique within the panel: the task, with the method or run id when two runs share a task
    task: str
    domain: str
    description: str
    method: str
    form: str  # how its adapter is attached: LoRA, AdaLoRA (LoRA form), ARS (LoRA form), head only
    parameters: int  # of its adapter alone
    test: dict[str, Any]
    columns: list[PanelColumn] = field(default_factory=list)

    @property
    def label_names(self) -> list[str]:
        return self.predictor.label_names

    @property
    def multi_label(self) -> bool:
        return self.predictor.multi_label

    @property
    def n_outputs(self) -> int:
        return len(self.label_names)

    @property
    def has_lora_layers(self) -> bool:
        return self.form != "head only"

    def metric(self, name: str) -> Optional[float]:
        """A test metric of the run's report (mcc, auroc, auprc, f1, accuracy), None when absent."""
        value = self.test.get(name)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    @property
    def summary(self) -> str:
        """One line: the description's first sentence."""
        text = " ".join((self.description or "").split())
        first = text.split(". ")[0].rstrip(".")
        return first + "." if first else ""


def label_columns(label_names: Sequence[str], multi_label: bool) -> list[int]:
    """Which labels become columns: the positive class of a binary task, every class or label otherwise."""
    if not multi_label and len(label_names) == 2:
        return [1]
    return list(range(len(label_names)))


@dataclass
class PanelRow:
    """One input record scored against every task of a panel."""

    id: str
    sequence: str
    probabilities: dict[str, Optional[float]]
    length: int
    n_fraction: float
    n_windows: int  # the most windows any task scored it in (per strand)
    windows_truncated: int  # over all tasks
    iupac_replaced: int
    duplicate_id: bool
    error: Optional[str]


@dataclass
class PanelScores:
    """A chunk of records scored by every task: one :class:`~lingo_core.predict.Predictions` per task, merged by record."""

    panel: "Panel"
    parts: list[Predictions]
    rows: list[PanelRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.rows:
            self.rows = [self._row(k) for k in range(len(self.parts[0].rows))] if self.parts else []

    def _row(self, k: int) -> PanelRow:
        per_task = [part.rows[k] for part in self.parts]
        first = per_task[0]
        valid = [r for r in per_task if r.error is None]
        shown = valid[0] if valid else first
        probabilities: dict[str, Optional[float]] = {}
        for task, row in zip(self.panel.tasks, per_task):
            for column in task.columns:
                probabilities[column.name] = None if row.probabilities is None else float(row.probabilities[column.label_index])
        return PanelRow(
            first.id, shown.sequence, probabilities, shown.length, shown.n_fraction,
            max(r.n_windows for r in per_task), sum(r.windows_truncated for r in per_task), shown.iupac_replaced,
            first.duplicate_id, _merged_error(self.panel.tasks, per_task),
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def errors(self) -> list[str]:
        """Error messages of the records some task could not score (each names its record)."""
        return [r.error for r in self.rows if r.error]

    def to_frame(self) -> pd.DataFrame:
        """``id``, ``sequence``, one column per task (and label), then the flags, as ``predict`` names them."""
        names = [c.name for c in self.panel.columns]
        frame = pd.DataFrame({"id": [r.id for r in self.rows], "sequence": [r.sequence for r in self.rows]})
        for name in names:
            frame[name] = np.array([np.nan if r.probabilities[name] is None else r.probabilities[name] for r in self.rows], dtype=float)
        frame["length"] = [r.length for r in self.rows]
        frame["n_fraction"] = [round(r.n_fraction, 6) for r in self.rows]
        frame["n_windows"] = [r.n_windows for r in self.rows]
        frame["windows_truncated"] = [r.windows_truncated for r in self.rows]
        frame["aggregation"] = self.parts[0].aggregation if self.parts else ""
        frame["rc_averaged"] = self.parts[0].reverse_complement if self.parts else False
        frame["iupac_replaced"] = [r.iupac_replaced for r in self.rows]
        frame["duplicate_id"] = [r.duplicate_id for r in self.rows]
        frame["error"] = [r.error or "" for r in self.rows]
        return frame

    def header(self) -> dict[str, Any]:
        """The JSON export's settings: the backbone, every column's task, the windows of each task."""
        first = self.parts[0] if self.parts else None
        return {
            "backbone": self.panel.key.describe(),
            "columns": self.panel.task_table().to_dict(orient="records"),
            "probability": "per column: P(label) of its task (softmax over the task's classes, or sigmoid per label)",
            "aggregation": first.aggregation_text() if first else "",
            "reverse_complement_averaged": bool(first and first.reverse_complement),
            "windows": {task.name: {"window_nt": p.window_nt, "stride_nt": p.stride_nt} for task, p in zip(self.panel.tasks, self.parts)},
        }

    def entry(self, row: PanelRow) -> dict[str, Any]:
        """One record of the JSON export."""
        return {
            "id": row.id,
            "sequence": row.sequence,
            "probabilities": row.probabilities,
            "flags": {
                "length": row.length, "n_fraction": row.n_fraction, "n_windows": row.n_windows,
                "windows_truncated": row.windows_truncated, "iupac_replaced": row.iupac_replaced, "duplicate_id": row.duplicate_id,
            },
            "error": row.error,
        }


def _merged_error(tasks: Sequence[PanelTask], rows: Sequence[SequencePrediction]) -> Optional[str]:
    """The record's error: once when every task that failed says the same, else per task."""
    failed = [(task, row.error) for task, row in zip(tasks, rows) if row.error]
    if not failed:
        return None
    messages = list(dict.fromkeys(error for _, error in failed))
    if len(messages) == 1 and len(failed) == len(rows):
        return messages[0]
    return "; ".join(f"{task.name}: {error}" for task, error in failed)


class Panel:
    """Finished runs sharing one loaded backbone; build it with :func:`load_panel`."""

    def __init__(self, key: BackboneKey, model: torch.nn.Module, tasks: list[PanelTask], load_seconds: float) -> None:
        self.key = key
        self.model = model
        self.tasks = tasks
        self.load_seconds = load_seconds
        self.switches = 0  # how many times the active adapter changed
        self._active: Optional[str] = None
        # held around every forward pass: the active adapter (and peft's mixed-batch hooks) belong to the shared
        # model, and one panel may serve several threads (the dashboard's sessions share a cached panel)
        self.lock = threading.RLock()

    # -- what it holds -------------------------------------------------------------------------
    @property
    def columns(self) -> list[PanelColumn]:
        return [column for task in self.tasks for column in task.columns]

    @property
    def device(self) -> torch.device:
        return self.tasks[0].predictor.device

    @property
    def precision(self) -> str:
        return self.tasks[0].predictor.trained.loaded.precision

    def task_table(self) -> pd.DataFrame:
        """One row per column: its task, label, domain, description, run, method and test metrics."""
        rows = []
        for task in self.tasks:
            for column in task.columns:
                rows.append({
                    "column": column.name, "task": task.task, "label": column.label, "domain": task.domain,
                    "description": task.summary, "run": task.run.id, "method": task.method, "adapter": task.form,
                    "adapter_parameters": task.parameters, "test_mcc": task.metric("mcc"), "test_auroc": task.metric("auroc"),
                })
        return pd.DataFrame(rows)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the backbone (held once) and of every task's adapter."""
        counts = {task.name: task.parameters for task in self.tasks}
        adapters = sum(counts.values())
        total = int(sum(p.numel() for p in self.model.parameters()))
        return {"backbone": total - adapters, **counts}

    def activate(self, adapter: str) -> None:
        """Make ``adapter`` the active one (peft ``set_adapter``: a flag per layer; nothing is loaded or merged)."""
        with self.lock:
            if self._active != adapter:
                self.model.set_adapter(adapter)
                self._active = adapter
                self.switches += 1

    # -- scoring ---------------------------------------------------------------------------------
    def score(
        self, inputs: Union[Sequence[str], Sequence[InputRecord]], ids: Optional[Sequence[str]] = None, **options: Any
    ) -> pd.DataFrame:
        """Score raw sequences or records against every task: one row per record, in input order.

        ``options``: ``aggregate``, ``stride``, ``window``, ``reverse_complement``, ``strict``,
        ``batch_size`` as in :meth:`~lingo_core.predict.Predictor.predict`, and ``mode``
        (:meth:`score_stream`). The frame's ``attrs["tasks"]`` holds :meth:`task_table`'s records.
        """
        records = as_records(inputs, ids)
        chunks = list(self.score_stream(records, chunk_records=max(1, len(records)), chunk_nt=1 << 62, **options))
        frame = pd.concat([chunk.to_frame() for chunk in chunks], ignore_index=True)
        frame.attrs["tasks"] = self.task_table().to_dict(orient="records")
        return frame

    def score_stream(
        self,
        records: Iterable[InputRecord],
        *,
        chunk_records: int = STREAM_CHUNK_RECORDS,
        chunk_nt: int = STREAM_CHUNK_NT,
        mode: str = "auto",
        **options: Any,
    ) -> Iterator[PanelScores]:
        """Score ``records`` chunk by chunk (bounded memory, as ``predict_stream``): one :class:`PanelScores` per chunk.

        ``options`` are :meth:`~lingo_core.predict.Predictor.predict`'s: ``aggregate``, ``stride``,
        ``window``, ``reverse_complement``, ``strict``, ``batch_size`` (checked before the first record is read).
        ``mode``: ``switch`` runs the tasks one after another on each chunk, switching the active
        adapter; ``mixed`` sends the rows of all tasks that have LoRA layers and the same number of
        outputs through one forward pass per batch, each row through its own adapter; ``auto`` is
        ``mixed`` on a GPU and ``switch`` on CPU (bench/bench_panel.py measures both).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if chunk_records < 1 or chunk_nt < 1:
            raise ValueError(f"chunk_records ({chunk_records}) and chunk_nt ({chunk_nt}) must be at least 1")
        resolved = ("mixed" if self.device.type == "cuda" else "switch") if mode == "auto" else mode
        unknown = sorted(set(options) - SCORING_OPTIONS)
        if unknown:
            raise TypeError(f"unknown scoring option(s) {unknown}; the options are {sorted(SCORING_OPTIONS)} and mode")
        # one strand setting for every column (the table has one rc_averaged column): off unless asked for
        options["reverse_complement"] = bool(options.get("reverse_complement"))
        settings = [task.predictor.scoring_options(**options) for task in self.tasks]

        def chunks() -> Iterator[PanelScores]:
            seen: list[dict[str, int]] = [{} for _ in self.tasks]
            start = 0
            for chunk in record_chunks(records, chunk_records, chunk_nt):
                yield self._score_chunk(chunk, seen, start, settings, resolved)
                start += len(chunk)

        return chunks()

    def _score_chunk(
        self, records: list[InputRecord], seen: list[dict[str, int]], start: int, options: list[dict[str, Any]], mode: str
    ) -> PanelScores:
        validated = [
            task.predictor.validate(records, opts["strict"], first_seen, start)
            for task, opts, first_seen in zip(self.tasks, options, seen)
        ]
        steps = [task.predictor.score_steps(rows, clean, opts) for task, (rows, clean), opts in zip(self.tasks, validated, options)]
        if mode == "mixed":
            self._drive_mixed(steps, options)
        else:
            for task, task_steps, opts in zip(self.tasks, steps, options):
                run_steps(task_steps, lambda ids, t=task, o=opts: t.predictor.logits_of_ids(ids, o["batch_size"]))
        parts = [task.predictor.predictions(rows, opts) for task, (rows, _), opts in zip(self.tasks, validated, options)]
        return PanelScores(self, parts)

    def _drive_mixed(self, steps: list, options: list[dict[str, Any]]) -> None:
        """Drive every task's scoring in lock step; each round's requests share forward passes where peft can mix them."""
        pending: dict[int, list[list[int]]] = {}
        for i, task_steps in enumerate(steps):
            _advance(pending, i, task_steps, None)
        while pending:
            answers: dict[int, np.ndarray] = {}
            for group in self._mixable_groups(pending):
                if len(group) == 1:
                    i = group[0]
                    answers[i] = self.tasks[i].predictor.logits_of_ids(pending[i], options[i]["batch_size"])
                    continue
                answers.update(self._mixed_logits({i: pending[i] for i in group}, options[group[0]]["batch_size"]))
            for i, logits in answers.items():
                _advance(pending, i, steps[i], logits)

    def _mixable_groups(self, pending: dict[int, list[list[int]]]) -> list[list[int]]:
        """Tasks whose rows can share a batch: LoRA layers (peft's check) and heads of the same width (peft stacks rows)."""
        groups: dict[Any, list[int]] = {}
        for i in pending:
            task = self.tasks[i]
            groups.setdefault(("lora", task.n_outputs) if task.has_lora_layers else ("alone", i), []).append(i)
        return list(groups.values())

    def _mixed_logits(self, requests: dict[int, list[list[int]]], batch_size: Optional[int]) -> dict[int, np.ndarray]:
        ids = [row for i in requests for row in requests[i]]
        names = [self.tasks[i].adapter for i in requests for _ in requests[i]]
        if not ids:
            return {i: np.zeros((0, self.tasks[i].n_outputs), dtype=np.float32) for i in requests}
        predictor = self.tasks[next(iter(requests))].predictor
        with self.lock:
            logits = predict_logits(
                self.model, ids, predictor.pad_id, batch_size or default_batch_size(self.device), self.device,
                self.precision, max_tokens=None if batch_size else default_max_tokens(self.device), adapter_names=names,
            )
        out, start = {}, 0
        for i, rows in requests.items():
            out[i] = logits[start : start + len(rows)]
            start += len(rows)
        return out


def _advance(pending: dict[int, Any], i: int, steps, answer: Optional[np.ndarray]) -> None:
    """Send ``answer`` to generator ``i`` (None: start it) and keep its next request, or drop it when it is done."""
    try:
        pending[i] = next(steps) if answer is None else steps.send(answer)
    except StopIteration:
        pending.pop(i, None)


# -- loading -------------------------------------------------------------------------------------------
def _task_names(members: Sequence[tuple[runs.Run, dict[str, Any]]]) -> list[str]:
    """A unique display name per run: its task; with the method, then the run id, when runs share a task."""
    def short(task: str) -> str:
        path = Path(task)
        return path.name if path.is_absolute() else task

    names = [short(str(info.get("task") or run.task or run.id)) for run, info in members]
    for _ in range(2):
        counts = {n: names.count(n) for n in names}
        for k, (run, _) in enumerate(members):
            if counts[names[k]] > 1:
                names[k] = f"{names[k]} [{run.method}]" if "[" not in names[k] else f"{names[k][:-1]} {run.id}]"
    return names


def load_panel(
    items: Sequence[Union[runs.Run, PathLike]],
    device: Optional[str] = None,
    *,
    trust_remote_code: Optional[bool] = None,
    fused: bool = True,
) -> Panel:
    """Load a panel of finished runs: the backbone once, each run's adapter attached under its own name.

    Raises :class:`~lingo_core.panel.PanelError` naming every run that cannot join and why (see
    :mod:`lingo_core.panel.compat`). ``fused`` gives LoRA layers the cheaper inference forward
    (:class:`~lingo_core.panel.attach.FusedLoraLinear`); ``False`` runs peft's own. On a GPU under
    bf16 (or fp16) autocast the weights of every linear layer are stored in that dtype: autocast would
    cast them at every call, so the results are the same, with half the memory and without the casts.
    """
    started = time.perf_counter()
    key, members = check_panel(items, device, trust_remote_code)
    configs = [inference_config(run, device, trust_remote_code) for run in members]
    infos = [run_task_info(run) for run in members]
    backbone = load_backbone(configs[0], infos[0])
    loaded = backbone.loaded
    base = loaded.model
    embedding = base.get_input_embeddings()
    embedding_path = next(name for name, module in base.named_modules() if module is embedding)
    model: Optional[torch.nn.Module] = None
    forms: list[str] = []
    for k, run in enumerate(members):
        try:
            parts = adapter_parts(run, loaded, embedding_path)
            model = attach(model, base, f"task{k}", parts, run)
        except (PanelError, RunLoadError):
            raise
        except Exception as exc:  # noqa: BLE001 - peft, safetensors and JSON fail in many ways on a damaged export
            raise RunLoadError(
                f"{run.adapter_dir}: the exported adapter does not load on the panel's backbone ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}); it is damaged or was made for another model. Fix: leave the run out"
            ) from None
        forms.append(parts.form)
    assert model is not None
    if fused:
        fuse_lora_layers(model)
    model.requires_grad_(False)
    model.to(loaded.device)
    model.eval()
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(loaded.precision)
    if low is not None and loaded.device.type == "cuda":
        # autocast casts every linear weight to this dtype at each call: store it so, once (half the device
        # memory, no casts, the same results). Not on CPU: there the fp32 weights stay mapped from the
        # checkpoint file, resident as they are read, and a converted copy would come on top of them.
        store_frozen_weights(model, low)
    panel = Panel(key, model, [], 0.0)
    names = _task_names(list(zip(members, infos)))
    for k, (run, cfg, info) in enumerate(zip(members, configs, infos)):
        encoder = backbone.encoder if k == 0 else build_encoder(loaded, cfg, info)
        trained = TrainedModel(run, cfg, model, loaded, encoder, list(info["label_names"]), bool(info["multi_label"]), "adapter")
        predictor = TaskPredictor(trained, f"task{k}", panel)
        report = run.report() or {}
        task = PanelTask(
            f"task{k}", run, predictor, names[k], str(info.get("task") or run.task), str(info.get("domain") or ""),
            str(info.get("description") or ""), str(run.method), forms[k], adapter_parameter_count(model, f"task{k}"),
            report.get("test") if isinstance(report.get("test"), dict) else {},
        )
        task.columns = [
            PanelColumn(f"{task.name}:{task.label_names[j]}", task, j) for j in label_columns(task.label_names, task.multi_label)
        ]
        panel.tasks.append(task)
    panel.load_seconds = time.perf_counter() - started
    return panel


INPUT_OPTIONS = ("ids", "fasta", "csv", "sequence_column", "id_column")  # gather_inputs' keywords


def score_panel(
    items: Sequence[Union[runs.Run, PathLike]], sequences: Optional[Sequence[str]] = None, *, device: Optional[str] = None,
    **options: Any,
) -> pd.DataFrame:
    """One call: load a panel of ``items`` and score ``sequences``, a FASTA file or a CSV file.

    ``options``: the input's (``ids``, ``fasta``, ``csv``, ``sequence_column``, ``id_column``, as
    :func:`~lingo_core.predict.predict` takes them) and the scoring options of :meth:`Panel.score`.
    """
    inputs = {name: options.pop(name) for name in INPUT_OPTIONS if name in options}
    return load_panel(items, device).score(gather_inputs(sequences, **inputs), **options)
