"""Run directories: the only code that knows the file names inside ``runs/<id>/``.

Layout of a run directory::

    config.yaml       fully resolved config (every default filled in)
    status.json       state (queued/running/done/failed/cancelled), pid, progress, error + traceback
    metrics.jsonl     one record per log/eval step: step, epoch, loss, lr, dev metrics
    ranks.jsonl       one record per rank allocation (adalora/ars): step, budget, active, lambdas,
                      pruned, reintroduced (and rho, sampled for ars)
    data_report.json  what the data loader found: sizes, duplicates, IUPAC replacements, subsampling
    report.json       test metrics of the dev-selected checkpoint, parameter counts, wall time
    adapter/          the dev-selected adapter (peft format for lora/adalora/ars, else
                      trainable.safetensors) and lingo_adapter.json (method, format)
    checkpoint/       resumable full-rank state of the latest checkpoint (state.pt) + best.pt
                      (both plain tensors and Python values: loaded with weights_only=True)
    CANCEL            present when a cancel was requested
    train.log         stdout/stderr of a run started in the background (the app's launcher)

Every JSON/YAML/torch file is written atomically (temporary file + ``os.replace``); JSONL files
are appended one whole line per ``write`` and readers skip a torn last line.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml

CONFIG, STATUS, METRICS, RANKS, REPORT = "config.yaml", "status.json", "metrics.jsonl", "ranks.jsonl", "report.json"
DATA_REPORT, ADAPTER, CHECKPOINT, CANCEL = "data_report.json", "adapter", "checkpoint", "CANCEL"
STATE_FILE, BEST_FILE = "state.pt", "best.pt"
LOG = "train.log"
EXPORT_INFO, TRAINABLE_WEIGHTS = "lingo_adapter.json", "trainable.safetensors"  # inside adapter/
EXPORT_PEFT, EXPORT_TRAINABLE = "peft", "lingo-trainable"  # the two export formats
PREDICTIONS = "predictions_{split}.csv"  # per-sequence labels and probabilities of the reported model
STATES = ("queued", "running", "done", "failed", "cancelled")
PathLike = Union[str, Path]
_FROZEN_EMBEDDING = re.compile(r"(word_embeddings|embed_tokens|\.wte)\.weight$")  # peft may copy it into exports


# -- atomic writes --------------------------------------------------------------------------------
def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, default=_json_default) + "\n")


def atomic_torch_save(path: PathLike, obj: Any) -> None:
    """``torch.save`` through a temporary file and ``os.replace``."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_torch_load(path: PathLike) -> Any:
    """``torch.load`` that accepts only tensors and plain Python values (never runs code from a file)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RunFileError(
            f"{path} holds objects other than tensors and plain values, so it was not loaded (it could run code); "
            f"only open checkpoints written by LINGO from people you trust ({str(exc).splitlines()[0]})"
        ) from None


class RunFileError(RuntimeError):
    """A file inside a run directory is unsafe or unreadable."""


# -- exported adapters (the adapter/ folder) --------------------------------------------------------
def write_export_info(directory: PathLike, method: str, export_format: str) -> None:
    """Say which method wrote an export and in which format (``peft`` or ``lingo-trainable``)."""
    atomic_write_json(Path(directory) / EXPORT_INFO, {"method": method, "format": export_format})


def read_export_info(directory: PathLike) -> Optional[dict[str, Any]]:
    """``{"method", "format"}`` of an export folder, or None when there is no finished export."""
    return _read_json(Path(directory) / EXPORT_INFO)


def export_weights_path(directory: PathLike) -> Path:
    """Where a non-peft export keeps its tensors."""
    return Path(directory) / TRAINABLE_WEIGHTS


def append_jsonl(path: PathLike, record: dict[str, Any]) -> None:
    """Append one JSON record as a single line (one ``write`` call, flushed)."""
    line = json.dumps(record, default=_json_default) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()


def read_jsonl(path: PathLike) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn (half-written) last line is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def now() -> str:
    """The clock every run file uses: UTC, ISO 8601, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def pid_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (finished child not yet reaped) counts as dead
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="utf-8") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# -- writing --------------------------------------------------------------------------------------
def new_run_id(method: str, task: str) -> str:
    """``20261125-153000-ars-prom_core_tata-3f2a``: sortable, readable, unique."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(task).name if "/" in task and Path(task).exists() else task)
    slug = slug.replace("/", "_").strip("_")[:40] or "task"
    return f"{stamp}-{method}-{slug}-{secrets.token_hex(2)}"


class RunWriter:
    """Writes one run directory; used by the trainer (and by launchers to create queued runs).

    Under multi-process training every process holds a writer, but only the main process's is
    ``enabled``: the others' writes are no-ops, so the run directory has a single author.
    """

    def __init__(self, path: PathLike, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    @classmethod
    def create(cls, output_dir: PathLike, config_yaml: str, method: str, task: str, name: Optional[str] = None) -> "RunWriter":
        root = Path(output_dir)
        root.mkdir(parents=True, exist_ok=True)
        run_id = name or new_run_id(method, task)
        path = root / run_id
        if path.exists():
            raise FileExistsError(f"run directory {path} already exists; choose another run_name")
        path.mkdir()
        writer = cls(path)
        atomic_write_text(path / CONFIG, config_yaml)
        writer.set_status("queued", created=now())
        return writer

    def set_status(self, state: str, **fields: Any) -> dict[str, Any]:
        if not self.enabled:
            return {}
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        status = _read_json(self.path / STATUS) or {}
        status.update(fields)
        status["state"] = state
        status["updated"] = now()
        atomic_write_json(self.path / STATUS, status)
        return status

    def update_status(self, **fields: Any) -> None:
        if not self.enabled:
            return
        status = _read_json(self.path / STATUS) or {"state": "running"}
        self.set_status(status.get("state", "running"), **fields)

    def log_metrics(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path / METRICS, record)

    def log_ranks(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path / RANKS, record)

    def truncate_logs_after(self, step: int) -> None:
        """On resume: drop records written after the checkpoint we continue from."""
        if not self.enabled:
            return
        for name in (METRICS, RANKS):
            records = [r for r in read_jsonl(self.path / name) if r.get("step", 0) <= step]
            atomic_write_text(self.path / name, "".join(json.dumps(r) + "\n" for r in records))

    def write_report(self, report: dict[str, Any]) -> None:
        if not self.enabled:
            return
        atomic_write_json(self.path / REPORT, report)

    def write_data_report(self, report: dict[str, Any]) -> None:
        if not self.enabled:
            return
        atomic_write_json(self.path / DATA_REPORT, report)

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER

    def publish_export(self, write: Callable[[Path], None]) -> Path:
        """Call ``write(folder)`` on a temporary folder, then move it into place as ``adapter/``."""
        if not self.enabled:
            return self.adapter_dir
        tmp_dir = self.path / f".{ADAPTER}.tmp"
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        write(tmp_dir)
        if self.adapter_dir.exists():
            shutil.rmtree(self.adapter_dir)
        os.replace(tmp_dir, self.adapter_dir)
        return self.adapter_dir

    def write_predictions(self, split: str, labels: Any, probs: Any, label_names: list[str]) -> None:
        """The reported model's probabilities for every sequence of ``split`` (in split order), with the
        true labels: ``label`` (or ``label_<name>`` per label when multi-label) and ``p_<name>``."""
        if not self.enabled:
            return
        import numpy as np

        import csv
        import io

        labels, probs = np.asarray(labels), np.asarray(probs)
        label_header = [f"label_{n}" for n in label_names] if labels.ndim == 2 else ["label"]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(label_header + [f"p_{n}" for n in label_names])
        for truth, row in zip(labels.reshape(len(labels), -1), probs):
            writer.writerow([int(v) for v in truth] + [f"{float(v):.6g}" for v in row])
        atomic_write_text(self.path / PREDICTIONS.format(split=split), text.getvalue())

    def save_state(self, state: dict[str, Any]) -> None:
        """The resumable checkpoint (``checkpoint/state.pt``), atomically."""
        if self.enabled:
            atomic_torch_save(self.path / CHECKPOINT / STATE_FILE, state)

    def has_state(self) -> bool:
        return (self.path / CHECKPOINT / STATE_FILE).exists()

    def load_state(self) -> dict[str, Any]:
        path = self.path / CHECKPOINT / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: this run has no checkpoint to resume from")
        return safe_torch_load(path)

    def save_best(self, best: dict[str, Any]) -> None:
        """The dev-selected state so far (``checkpoint/best.pt``), atomically."""
        if self.enabled:
            atomic_torch_save(self.path / CHECKPOINT / BEST_FILE, best)

    def load_best(self) -> Optional[dict[str, Any]]:
        return Run(self.path).load_best()

    def cancel_requested(self) -> bool:
        return (self.path / CANCEL).exists()

    def clear_cancel(self) -> None:
        clear_cancel(self.path)


def request_cancel(run_dir: PathLike) -> None:
    """Ask a queued or running run to stop; the trainer checks between steps."""
    atomic_write_text(Path(run_dir) / CANCEL, now())


def clear_cancel(run_dir: PathLike) -> None:
    """Withdraw a cancel request (before a resume, or a study cell that continues)."""
    (Path(run_dir) / CANCEL).unlink(missing_ok=True)


# -- reading (the API the app, predict and study use) -------------------------------------------
@dataclass
class Run:
    """Read-only view of a run directory."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config(self) -> dict[str, Any]:
        try:
            value = yaml.safe_load((self.path / CONFIG).read_text(encoding="utf-8"))
        except (FileNotFoundError, yaml.YAMLError, UnicodeDecodeError):
            return {}  # a broken run directory reads as an empty config: pages show it, never crash
        return value if isinstance(value, dict) else {}

    @property
    def status(self) -> dict[str, Any]:
        """status.json; a run whose process died without saying so reads as state ``interrupted``."""
        status = _read_json(self.path / STATUS) or {"state": "unknown"}
        if status.get("state") == "running" and not pid_alive(status.get("pid")):
            status = {**status, "state": "interrupted"}
        return status

    @property
    def state(self) -> str:
        return self.status.get("state", "unknown")

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / METRICS)

    def ranks(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / RANKS)

    def report(self) -> Optional[dict[str, Any]]:
        return _read_json(self.path / REPORT)

    def data_report(self) -> Optional[dict[str, Any]]:
        return _read_json(self.path / DATA_REPORT)

    def typed_config(self):
        """The run's config as a validated :class:`~lingo_core.config.LingoConfig` (old key names migrated)."""
        from .config import config_from_dict

        values = self.config
        model = values.get("model")
        if isinstance(model, dict) and "pooling" not in model:
            # runs made before model.pooling existed used the head transformers builds
            values = {**values, "model": {**model, "pooling": "native"}}
        return config_from_dict(values)

    def _config_value(self, section: str, key: str) -> Any:
        values = self.config.get(section)
        return values.get(key) if isinstance(values, dict) else None

    @property
    def method(self) -> Optional[str]:
        return self._config_value("adapter", "method")

    @property
    def task(self) -> Optional[str]:
        return self._config_value("data", "task")

    @property
    def model_name(self) -> Optional[str]:
        return self._config_value("model", "name")

    @property
    def total_step(self) -> Optional[int]:
        """Optimizer steps of the run: from report.json, else from the live progress in status.json."""
        report = self.report() or {}
        if report.get("total_step"):
            return int(report["total_step"])
        progress = self.status.get("progress") or {}
        return int(progress["total_step"]) if progress.get("total_step") else None

    @property
    def adapter_dir(self) -> Path:
        """The exported adapter folder (peft's ``PeftModel.from_pretrained`` reads a peft export)."""
        return self.path / ADAPTER

    def export_info(self) -> Optional[dict[str, Any]]:
        """``{"method", "format"}`` of the finished export, or None."""
        return read_export_info(self.adapter_dir)

    def predictions(self, split: str = "test"):
        """The reported model's per-sequence predictions on ``split`` (a pandas frame), or None."""
        import pandas as pd

        path = self.path / PREDICTIONS.format(split=split)
        try:
            return pd.read_csv(path)
        except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError):
            return None

    def exported_parameters(self) -> Optional[int]:
        """Parameters in the exported adapter (after rank pruning for budget methods), or None without an export.

        Counted from the export's safetensors files, without peft's copy of frozen word embeddings.
        """
        info = self.export_info()
        if info is None:
            return None
        from safetensors import safe_open

        peft_format = info.get("format") == EXPORT_PEFT
        files = sorted(self.adapter_dir.glob("*.safetensors"))
        total = 0
        for path in files:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    if peft_format and _FROZEN_EMBEDDING.search(key):
                        continue
                    shape = handle.get_slice(key).get_shape()
                    count = 1
                    for size in shape:
                        count *= int(size)
                    total += count
        return total if files else None

    def load_best(self) -> Optional[dict[str, Any]]:
        """The dev-selected state so far (tensors and plain values only), or None before the first dev evaluation."""
        path = self.path / CHECKPOINT / BEST_FILE
        return safe_torch_load(path) if path.exists() else None

    @property
    def has_model(self) -> bool:
        """Whether the run has weights to predict with: its export, or a best checkpoint so far."""
        return self.has_adapter or (self.path / CHECKPOINT / BEST_FILE).exists()

    def weights_stamp(self) -> str:
        """A string that changes whenever the run's usable weights change (export or best checkpoint)."""
        parts = []
        for path in (self.adapter_dir / EXPORT_INFO, self.path / CHECKPOINT / BEST_FILE):
            try:
                parts.append(str(path.stat().st_mtime_ns))
            except OSError:
                parts.append("-")
        return ":".join(parts)

    @property
    def log_path(self) -> Path:
        return self.path / LOG

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of ``train.log`` (background runs), or "" when there is none."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - max_chars))
                return handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def has_adapter(self) -> bool:
        return (self.adapter_dir / EXPORT_INFO).exists()

    @property
    def has_checkpoint(self) -> bool:
        """Whether a resumable checkpoint exists."""
        return (self.path / CHECKPOINT / STATE_FILE).exists()

    @property
    def resumable(self) -> bool:
        return self.has_checkpoint and self.state in ("interrupted", "failed", "cancelled")

    def summary(self) -> dict[str, Any]:
        """One row for run tables: id, state, method, model, task, progress, best dev, test metrics."""
        status, report = self.status, self.report() or {}
        dev_metrics = [m for m in self.metrics() if "dev_mcc" in m]
        best_dev = max((m["dev_mcc"] for m in dev_metrics), default=None)
        params = report.get("parameters", {})
        return {
            "id": self.id,
            "state": status.get("state"),
            "method": self.method,
            "model": self.model_name,
            "task": self.task,
            "progress": status.get("progress"),
            "best_dev_mcc": best_dev,
            "test_mcc": report.get("test", {}).get("mcc"),
            "test_auroc": report.get("test", {}).get("auroc"),
            "test_auprc": report.get("test", {}).get("auprc"),
            "trainable_percent": params.get("percent"),
            "wall_time_s": report.get("wall_time_s"),
            "created": status.get("created"),
        }


def load_run(path: PathLike) -> Run:
    path = Path(path)
    if not (path / CONFIG).exists():
        raise FileNotFoundError(f"{path} is not a LINGO run directory (no {CONFIG})")
    return Run(path)


def list_runs(root: PathLike = "runs") -> list[Run]:
    """Run directories under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if (p / CONFIG).exists()]
    return sorted(runs, key=lambda r: r.id, reverse=True)

