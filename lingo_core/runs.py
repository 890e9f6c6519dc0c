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
import time
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
STATE_KEYS = ("loop", "trainable", "allocator", "optimizer", "scheduler", "rng", "total_step")  # in state.pt
BEST_KEYS = ("step", "trainable")  # in best.pt
CONFIG_KEYS = ("data", "encoding", "model", "adapter", "train", "output_dir")  # what every run's config.yaml holds
_TEMPORARY = re.compile(r"^\.(" + "|".join(re.escape(n) for n in (
    "config.yaml", "status.json", "metrics.jsonl", "ranks.jsonl", "report.json", "data_report.json", "CANCEL",
    "state.pt", "best.pt", "lingo_adapter.json", "trainable.safetensors", "predictions_",
)) + r").*\.|^\.adapter\.tmp$")  # what atomic writes and publish_export leave when killed mid-write
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
    """``torch.load`` that accepts only tensors and plain Python values (never runs code from a file).

    Any failure (a refused object, a truncated or garbage file) raises :class:`RunFileError` naming the file.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RunFileError(
            f"{path} holds objects other than tensors and plain values, so it was not loaded (it could run code); "
            f"only open checkpoints written by LINGO from people you trust ({_first_line(exc)})"
        ) from None
    except FileNotFoundError:
        raise RunFileError(f"{path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways on a damaged file; all mean the same
        raise RunFileError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: {_first_line(exc)}); it is truncated or "
            "damaged. Fix: resume or retrain the run, or restore the file from a copy"
        ) from None


def load_checkpoint_dict(path: PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A checkpoint that must be a dict holding ``required`` keys; else :class:`RunFileError` naming the file."""
    value = safe_torch_load(path)
    if not isinstance(value, dict):
        raise RunFileError(f"{path} holds a {type(value).__name__}, not a LINGO checkpoint; it is damaged or not from LINGO")
    missing = [key for key in required if key not in value]
    if missing:
        raise RunFileError(f"{path} is not a LINGO checkpoint: it lacks {missing}; it is damaged or from another program")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RunFileError(RuntimeError):
    """A file inside a run directory is unsafe or unreadable."""


# -- exported adapters (the adapter/ folder) --------------------------------------------------------
def write_export_info(directory: PathLike, method: str, export_format: str) -> None:
    """Say which method wrote an export and in which format (``peft`` or ``lingo-trainable``)."""
    atomic_write_json(Path(directory) / EXPORT_INFO, {"method": method, "format": export_format})


def read_export_info(directory: PathLike) -> Optional[dict[str, Any]]:
    """``{"method", "format"}`` of an export folder, or None when there is no finished export."""
    return _read_json(Path(directory) / EXPORT_INFO)


def is_embedding_weight(name: str) -> bool:
    """Whether a tensor name is a model's word-embedding matrix (peft may copy it into exports)."""
    return bool(_FROZEN_EMBEDDING.search(name))


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
    """Records of a JSONL file; a torn (half-written) last line, or any line that is not a JSON object, is skipped."""
    return _scan_jsonl(Path(path))[0]


def _scan_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """(records, numbers of the unreadable lines) of a JSONL file; never raises (a missing file has no records)."""
    try:
        data = path.read_bytes()
    except OSError:
        return [], []
    records, bad = [], []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            bad.append(number)
            continue
        if isinstance(value, dict):
            records.append(value)
        else:
            bad.append(number)
    return records, bad


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def _load_json(path: Path) -> tuple[Any, Optional[str]]:
    """(value, problem) of a JSON file; never raises. A missing file is ``(None, "is missing")``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "is missing"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"is not UTF-8 text (bad byte at offset {exc.start})"
    if not text.strip():
        return None, "is empty"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    except (ValueError, RecursionError) as exc:
        return None, f"is not valid JSON ({_first_line(exc)})"


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    """A JSON object file as a dict, or None when it is missing, unreadable, not JSON or not an object."""
    value, _ = _load_json(path)
    return value if isinstance(value, dict) else None


def _json_object_problem(path: Path, name: str, required: bool = False) -> Optional[str]:
    """Why ``path`` is not a JSON object (``name`` is how to call it), or None; a missing file is fine unless required."""
    value, problem = _load_json(path)
    if problem == "is missing" and not required:
        return None
    if problem:
        return f"{name} {problem}"
    if not isinstance(value, dict):
        return f"{name} holds {_json_kind(value)} instead of a JSON object"
    return None


def _json_kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "true/false", type(None): "null", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_int(value: Any) -> Optional[int]:
    """``value`` as an int when it is a (finite, whole) number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return int(value) if float(value).is_integer() else None
    except (OverflowError, ValueError):
        return None


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def now() -> str:
    """The clock every run file uses: UTC, ISO 8601, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def pid_alive(pid: Optional[int]) -> bool:
    """Whether process ``pid`` runs (a zombie counts as dead); anything but a positive int is not a process."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
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

    def record_failure(self, error: str, traceback_text: Optional[str] = None) -> bool:
        """Mark the run ``failed`` with a one-line ``error``; never raises. True when it was recorded.

        When the full status cannot be written (a full disk), a minimal status is written over the old
        file in place, which needs no new disk blocks; if even that fails, the run reads as interrupted.
        """
        if not self.enabled:
            return False
        try:
            self.set_status("failed", error=error, traceback=traceback_text, finished=now())
            return True
        except Exception:  # noqa: BLE001 - the disk may be full; fall back below
            pass
        try:
            room = (self.path / STATUS).stat().st_size
            for keep in (300, 120, 40, 0):  # fit into the old file's blocks when possible
                minimal = json.dumps({"state": "failed", "error": error[:keep], "updated": now()}).encode("utf-8")
                if len(minimal) <= room:
                    break
            with open(self.path / STATUS, "r+b") as handle:
                handle.write(minimal)
                handle.truncate(len(minimal))
                handle.flush()
            return True
        except Exception:  # noqa: BLE001
            return False

    def update_status(self, **fields: Any) -> None:
        if not self.enabled:
            return
        state = (_read_json(self.path / STATUS) or {}).get("state")
        self.set_status(state if state in STATES else "running", **fields)

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
            if not (self.path / name).exists():
                continue
            records = [r for r in read_jsonl(self.path / name) if (_number(r.get("step", 0)) or 0) <= step]
            atomic_write_text(self.path / name, "".join(json.dumps(r) + "\n" for r in records))

    def clear_records(self) -> None:
        """On a restart from step 0 (no checkpoint yet): drop the previous attempt's logs and best state."""
        if not self.enabled:
            return
        for path in (self.path / METRICS, self.path / RANKS, self.path / CHECKPOINT / BEST_FILE):
            path.unlink(missing_ok=True)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files an earlier process left when it was killed while writing; return them.

        Only the run's own writer calls this (at the start of training or a resume). Files younger than
        ``STALE_TEMPORARY_S`` are left alone: another process may be writing one right now (the dashboard
        requesting a cancel as the run starts), and deleting it would lose that write.
        """
        if not self.enabled:
            return []
        removed = []
        young = time.time() - STALE_TEMPORARY_S
        for folder in (self.path, self.path / CHECKPOINT, self.adapter_dir):
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                if _is_temporary(entry.name):
                    try:
                        if entry.stat().st_mtime > young:
                            continue
                        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                        removed.append(entry)
                    except OSError:
                        pass
        return removed

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
        """The resumable checkpoint; :class:`RunFileError` when it is missing, damaged or not a LINGO state."""
        path = self.path / CHECKPOINT / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: this run has no checkpoint to resume from")
        return load_checkpoint_dict(path, STATE_KEYS)

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


STALE_TEMPORARY_S = 30.0  # a temporary file older than this belongs to a writer that is gone


def _is_temporary(name: str) -> bool:
    return bool(_TEMPORARY.match(name))


def request_cancel(run_dir: PathLike) -> None:
    """Ask a queued or running run to stop; the trainer checks between steps."""
    atomic_write_text(Path(run_dir) / CANCEL, now())


def clear_cancel(run_dir: PathLike) -> None:
    """Withdraw a cancel request (before a resume, or a study cell that continues)."""
    (Path(run_dir) / CANCEL).unlink(missing_ok=True)


# -- reading (the API the app, predict and study use) -------------------------------------------
@dataclass
class Run:
    """Read-only view of a run directory.

    Reading never raises on a damaged directory: a file that is missing, not UTF-8, not valid
    JSON/YAML or of the wrong type reads as absent (``config`` -> ``{}``, ``report()`` -> None,
    ``state`` -> ``unknown``), and :attr:`damage` says what is wrong. Loaders (``typed_config``,
    ``load_best``) raise the project's own errors naming the file instead.
    """

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)  # a str from a user's script or a study record reads the same

    @property
    def id(self) -> str:
        return self.path.name

    def _read_config(self) -> tuple[dict[str, Any], Optional[str]]:
        """(values, problem) of config.yaml; values are ``{}`` when there is a problem."""
        path = self.path / CONFIG
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return {}, f"{CONFIG} is missing"
        except OSError as exc:
            return {}, f"{CONFIG} cannot be read ({exc.strerror or exc})"
        except UnicodeDecodeError as exc:
            return {}, f"{CONFIG} is not UTF-8 text (bad byte at offset {exc.start})"
        try:
            value = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            return {}, f"{CONFIG} is not valid YAML{where} ({exc.problem or exc.context})"
        except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
            return {}, f"{CONFIG} is not valid YAML ({_first_line(exc)})"
        if value is None:
            return {}, f"{CONFIG} is empty"
        if not isinstance(value, dict):
            return {}, f"{CONFIG} holds {_json_kind(value)} instead of a mapping of sections"
        return value, None

    @property
    def config(self) -> dict[str, Any]:
        """The raw config.yaml mapping; ``{}`` when it is missing or damaged (see :attr:`damage`)."""
        return self._read_config()[0]

    @property
    def status(self) -> dict[str, Any]:
        """status.json; a run whose process died without saying so reads as state ``interrupted``.

        A missing or damaged status (not a JSON object, an unknown state) reads as state ``unknown``.
        """
        status = _read_json(self.path / STATUS)
        if status is None:
            return {"state": "unknown"}
        if status.get("state") not in STATES:
            return {**status, "state": "unknown"}
        if status["state"] == "running" and not pid_alive(status.get("pid")):
            status = {**status, "state": "interrupted"}
        return status

    @property
    def state(self) -> str:
        return self.status["state"]

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / METRICS)

    def ranks(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / RANKS)

    def report(self) -> Optional[dict[str, Any]]:
        return _read_json(self.path / REPORT)

    def learning_findings(self, metrics: Optional[list[dict[str, Any]]] = None) -> list:
        """What went wrong with learning (:mod:`lingo_core.learning`), from the dev evaluations so far
        (``metrics``: the history already read, else metrics.jsonl); provisional while the run is queued
        or training. Never raises: an unreadable log gives no findings."""
        from .learning import learning_findings

        try:
            history = self.metrics() if metrics is None else metrics
            return learning_findings(history, finished=self.state not in ("queued", "running"))
        except Exception:  # noqa: BLE001 - the read API never raises; damage is reported by `damage`
            return []

    def data_report(self) -> Optional[dict[str, Any]]:
        return _read_json(self.path / DATA_REPORT)

    def typed_config(self):
        """The run's config as a validated :class:`~lingo_core.config.LingoConfig` (old key names migrated).

        Raises :class:`~lingo_core.config.ConfigError` naming the run's config.yaml when it is missing,
        empty, not valid YAML or not a valid config (an empty file never means "the defaults").
        """
        from .config import ConfigError, config_from_dict

        values, problem = self._read_config()
        path = self.path / CONFIG
        if problem:
            raise ConfigError(f"{self.path}: {problem}. Fix: restore {path} from a copy, or train the run again")
        model = values.get("model")
        if isinstance(model, dict) and "pooling" not in model:
            # runs made before model.pooling existed used the head transformers builds
            values = {**values, "model": {**model, "pooling": "native"}}
        try:
            return config_from_dict(values)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def _config_value(self, section: str, key: str) -> Optional[str]:
        values = self.config.get(section)
        value = values.get(key) if isinstance(values, dict) else None
        return value if isinstance(value, str) else None

    @property
    def method(self) -> Optional[str]:
        return self._config_value("adapter", "method")

    @property
    def task(self) -> Optional[str]:
        return self._config_value("data", "task")

    @property
    def eval_strands(self) -> str:
        """``both`` when the run scored dev and test as the mean over both strands (``data.eval_strands``), else ``given``."""
        return "both" if self._config_value("data", "eval_strands") == "both" else "given"

    @property
    def model_name(self) -> Optional[str]:
        return self._config_value("model", "name")

    @property
    def total_step(self) -> Optional[int]:
        """Optimizer steps of the run: from report.json, else from the live progress in status.json."""
        from_report = _as_int(_mapping(self.report()).get("total_step"))
        if from_report:
            return from_report
        return _as_int(_mapping(self.status.get("progress")).get("total_step")) or None

    @property
    def adapter_dir(self) -> Path:
        """The exported adapter folder (peft's ``PeftModel.from_pretrained`` reads a peft export)."""
        return self.path / ADAPTER

    def export_info(self) -> Optional[dict[str, Any]]:
        """``{"method", "format"}`` of the finished export, or None (also when lingo_adapter.json is damaged)."""
        return read_export_info(self.adapter_dir)

    def predictions(self, split: str = "test"):
        """The reported model's per-sequence predictions on ``split`` (a pandas frame), or None."""
        import pandas as pd

        path = self.path / PREDICTIONS.format(split=split)
        try:
            return pd.read_csv(path)
        except (OSError, ValueError):  # missing, unreadable, not UTF-8, not a table
            return None

    def exported_parameters(self) -> Optional[int]:
        """Parameters in the exported adapter (after rank pruning for budget methods), or None without an export.

        Counted from the export's safetensors files, without peft's copy of frozen word embeddings.
        None too when a weights file is damaged (see :attr:`damage`).
        """
        info = self.export_info()
        if info is None:
            return None
        from safetensors import SafetensorError, safe_open

        peft_format = info.get("format") == EXPORT_PEFT
        files = sorted(self.adapter_dir.glob("*.safetensors"))
        total = 0
        try:
            for path in files:
                with safe_open(str(path), framework="pt") as handle:
                    for key in handle.keys():
                        if peft_format and is_embedding_weight(key):
                            continue
                        shape = handle.get_slice(key).get_shape()
                        count = 1
                        for size in shape:
                            count *= int(size)
                        total += count
        except (SafetensorError, OSError, ValueError):
            return None
        return total if files else None

    def load_best(self) -> Optional[dict[str, Any]]:
        """The dev-selected state so far (tensors and plain values only), or None before the first dev evaluation.

        Raises :class:`RunFileError` naming ``checkpoint/best.pt`` when it is damaged or holds anything else.
        """
        path = self.path / CHECKPOINT / BEST_FILE
        return load_checkpoint_dict(path, BEST_KEYS) if path.exists() else None

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
        except OSError:
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

    # -- damage ----------------------------------------------------------------------------------
    @property
    def damage(self) -> Optional[str]:
        """None when the run directory reads cleanly, else a one-line reason in plain words.

        Checks (cheap; no model or checkpoint is loaded): config.yaml (readable, valid YAML, a valid
        config), status.json, report.json and data_report.json (JSON objects), metrics.jsonl and
        ranks.jsonl (only the last line may be torn), the export in adapter/ (its info file, weights
        present with a sound safetensors header) and checkpoint/*.pt (whole PyTorch zip files).
        """
        for check in (self.config_damage, self._status_damage, self._report_damage, self._log_damage,
                      self.export_damage, self.checkpoint_damage):
            try:
                problem = check()
            except Exception as exc:  # noqa: BLE001 - a check must never raise; an unforeseen failure is damage too
                problem = f"cannot be checked ({type(exc).__name__}: {_first_line(exc)})"
            if problem:
                return " ".join(problem.split())
        return None

    def config_damage(self) -> Optional[str]:
        """Why config.yaml cannot be the config this run was made with (unreadable, incomplete, invalid), or None.

        A run's config.yaml is fully resolved, so one that lacks a section is truncated: :meth:`typed_config`
        would fill the gap with defaults, and loaders refuse it instead (``load_trained``, ``resume``).
        """
        from .config import ConfigError

        values, problem = self._read_config()
        if problem:
            return problem
        missing = [key for key in CONFIG_KEYS if key not in values]
        if missing:
            return f"{CONFIG} lacks {', '.join(missing)}: it is truncated or was not written by LINGO"
        try:
            self.typed_config()
        except ConfigError as exc:
            return f"{CONFIG} is not a valid config: {str(exc).split(CONFIG + ': ', 1)[-1]}"
        return None

    def _status_damage(self) -> Optional[str]:
        problem = _json_object_problem(self.path / STATUS, STATUS, required=True)
        if problem:
            return problem
        state = (_read_json(self.path / STATUS) or {}).get("state")
        if state not in STATES:
            return f"{STATUS} has an unknown state {state!r} (expected one of {', '.join(STATES)})"
        return None

    def _report_damage(self) -> Optional[str]:
        done = self.state == "done"
        for name in (DATA_REPORT, REPORT):  # both written by every finished run
            problem = _json_object_problem(self.path / name, name, required=done)
            if problem:
                return f"the run is done but {problem}" if problem.endswith("is missing") else problem
        report = self.report() or {}
        for key in ("dev", "test", "parameters"):
            if key in report and not isinstance(report[key], dict):
                return f"{REPORT}: '{key}' holds {_json_kind(report[key])} instead of an object"
        return None

    def _log_damage(self) -> Optional[str]:
        for name in (METRICS, RANKS):
            path = self.path / name
            _, bad = _scan_jsonl(path)
            if not bad:
                continue
            try:
                last = len(path.read_bytes().splitlines())
            except OSError:
                last = 0
            torn = [n for n in bad if n != last]  # a torn last line is a write interrupted by a kill: harmless
            if torn:
                more = f" (and {len(torn) - 1} more)" if len(torn) > 1 else ""
                return f"{name}: line {torn[0]}{more} is not a JSON record"
        return None

    def export_damage(self) -> Optional[str]:
        """Why the export in adapter/ cannot be loaded (info file, weights), or None (also when there is none yet)."""
        folder = self.adapter_dir
        if not folder.exists():
            return f"the run is done but {ADAPTER}/ is missing" if self.state == "done" else None
        if not folder.is_dir():
            return f"{ADAPTER} is not a folder"
        problem = _json_object_problem(folder / EXPORT_INFO, f"{ADAPTER}/{EXPORT_INFO}", required=True)
        if problem:
            return problem
        info = read_export_info(folder) or {}
        export_format = info.get("format")
        if export_format == EXPORT_PEFT:
            problem = _json_object_problem(folder / "adapter_config.json", f"{ADAPTER}/adapter_config.json", required=True)
            if problem:
                return problem
            weights = folder / "adapter_model.safetensors"
        elif export_format == EXPORT_TRAINABLE:
            weights = export_weights_path(folder)
        else:
            return f"{ADAPTER}/{EXPORT_INFO} names an unknown format {export_format!r} (expected {EXPORT_PEFT} or {EXPORT_TRAINABLE})"
        if not isinstance(info.get("method"), str):
            return f"{ADAPTER}/{EXPORT_INFO} does not name the method that wrote the export"
        problem = _safetensors_problem(weights)
        return f"{ADAPTER}/{weights.name} {problem}" if problem else None

    def checkpoint_damage(self, names: tuple[str, ...] = (BEST_FILE, STATE_FILE)) -> Optional[str]:
        """Why checkpoint/best.pt or state.pt (those present of ``names``) is not a whole PyTorch file, or None."""
        for name in names:
            path = self.path / CHECKPOINT / name
            if path.exists():
                problem = _torch_file_problem(path)
                if problem:
                    return f"{CHECKPOINT}/{name} {problem}"
        return None

    def summary(self) -> dict[str, Any]:
        """One row for run tables: id, state, method, model, task, progress, best dev, test metrics, damage."""
        status, report = self.status, self.report() or {}
        dev_values = [_number(m.get("dev_mcc")) for m in self.metrics()]
        best_dev = max((v for v in dev_values if v is not None), default=None)
        params, test = _mapping(report.get("parameters")), _mapping(report.get("test"))
        progress = status.get("progress")
        return {
            "id": self.id,
            "state": status.get("state"),
            "method": self.method,
            "model": self.model_name,
            "task": self.task,
            "progress": progress if isinstance(progress, dict) else None,
            "best_dev_mcc": best_dev,
            "test_mcc": _number(test.get("mcc")),
            "test_auroc": _number(test.get("auroc")),
            "test_auprc": _number(test.get("auprc")),
            "trainable_percent": _number(params.get("percent")),
            "wall_time_s": _number(report.get("wall_time_s")),
            "created": status.get("created") if isinstance(status.get("created"), str) else None,
            "damage": self.damage,
        }


def _safetensors_problem(path: Path) -> Optional[str]:
    """Why ``path`` is not a whole safetensors file (header length, JSON header, data extent), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if length < 2 or length > min(size - 8, 100_000_000):
                return "is missing" if size == 0 and not head else "is not a safetensors file (bad header)"
            header = json.loads(handle.read(length).decode("utf-8"))
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except (ValueError, RecursionError):
        return "is not a safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return "is not a safetensors file (its header is not a JSON object)"
    ends = [entry.get("data_offsets", [0, 0])[-1] for key, entry in header.items() if key != "__metadata__" and isinstance(entry, dict)]
    if any(not isinstance(end, int) for end in ends) or max(ends, default=0) > size - 8 - length:
        return "is truncated (its tensors extend past the end of the file)"
    return None


def _torch_file_problem(path: Path) -> Optional[str]:
    """Why ``path`` is not a whole PyTorch (zip) checkpoint, or None; reads its first and last bytes only."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(max(0, size - 65_558))  # the zip end record sits in the last 22 + 65,535 bytes
            tail = handle.read()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "is empty"
    if head != b"PK\x03\x04":
        return "is not a PyTorch checkpoint file"
    if b"PK\x05\x06" not in tail:
        return "is truncated (no end of archive)"
    return None


def load_run(path: PathLike) -> Run:
    path = Path(path)
    if not (path / CONFIG).exists():
        raise FileNotFoundError(f"{path} is not a LINGO run directory (no {CONFIG})")
    return Run(path)


def _is_run_dir(path: Path) -> bool:
    try:
        return path.is_dir() and (path / CONFIG).exists()
    except OSError:  # an unreadable entry is not a run this user can see
        return False


def list_runs(root: PathLike = "runs") -> list[Run]:
    """Run directories under ``root``, newest first: by creation time (``created`` in status.json,
    else when config.yaml was written), never by name, so a named run sorts where it was made."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if _is_run_dir(p)]
    return sorted(runs, key=_creation_key, reverse=True)


def _creation_key(run: Run) -> tuple[float, float, str]:
    """(creation time, config.yaml's modification time, id); never raises on a damaged run."""
    try:
        written = (run.path / CONFIG).stat().st_mtime
    except OSError:
        written = 0.0
    created = None
    try:
        stamp = (_read_json(run.path / STATUS) or {}).get("created")
        if isinstance(stamp, str):
            created = _dt.datetime.fromisoformat(stamp).timestamp()
    except (ValueError, OverflowError, OSError, TypeError):
        created = None
    return (written if created is None else created, written, run.id)

