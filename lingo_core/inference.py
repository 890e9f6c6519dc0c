"""Building and restoring models, below training: what the trainer, evaluation, predict and attribute share.

config + task -> :func:`build_model` (backbone, encoder, adapter) -> :func:`restore_selected` (the
dev-selected state, masked exactly as the export truncates it) -> :func:`predict_logits` /
:func:`evaluate_split`. :func:`load_trained` rebuilds a run's model from its run directory.
Nothing here imports the training loop.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from . import runs
from .adapters import build_adapter, get_method
from .adapters.base import AdaptedModel
from .config import ConfigError, LingoConfig
from .encoding import SequenceEncoder
from .evaluate import classification_metrics
from .models import REGISTRY, LoadedModel, load_model
from .sequence_input import reverse_complement


class RunLoadError(RuntimeError):
    """A run directory cannot be loaded for inference; the message says why and what to do."""


# -- remote code: never switched on by a run directory -------------------------------------------------
_REMOTE_CODE_ALLOWED: contextvars.ContextVar[bool] = contextvars.ContextVar("lingo_remote_code_allowed", default=False)


@contextlib.contextmanager
def remote_code_allowed(allow: bool = True):
    """Within this block, :func:`load_trained` calls that do not say otherwise may run a model's own code
    when the run's config asks for it (``model.trust_remote_code: true``). The CLI's
    ``--trust-remote-code`` flag opens such a block; nothing else does."""
    token = _REMOTE_CODE_ALLOWED.set(bool(allow))
    try:
        yield
    finally:
        _REMOTE_CODE_ALLOWED.reset(token)


def _allow_remote_code(cfg: LingoConfig, run: runs.Run, trust_remote_code: Optional[bool]) -> None:
    """Switch ``cfg.model.trust_remote_code`` off unless the caller opted in; refuse a run that needs it.

    A run's config.yaml may come from someone else: its ``trust_remote_code: true`` is a request, and
    only the person loading the run can grant it (``trust_remote_code=True``, or ``--trust-remote-code``).
    """
    allowed = _REMOTE_CODE_ALLOWED.get() if trust_remote_code is None else bool(trust_remote_code)
    if not cfg.model.trust_remote_code or allowed:
        return
    cfg.model.trust_remote_code = False
    if cfg.model.name not in REGISTRY:  # registry models never run their own code: nothing to refuse
        raise RunLoadError(
            f"{run.path}: its config.yaml sets model.trust_remote_code: true, so loading it would run Python code "
            f"shipped with model {cfg.model.name!r}. A run directory cannot switch that on by itself. If you trust "
            "this run and that model, pass --trust-remote-code (command line) or trust_remote_code=True (Python API)"
        )


# -- the task facts a model needs (kept in data_report.json) ------------------------------------------
def task_info(task) -> dict[str, Any]:
    """What prediction needs to know about a :class:`~lingo_core.data.TaskData` without its data."""
    return {
        "task": task.name,
        "label_names": list(task.label_names),
        "multi_label": task.multi_label,
        "domain": task.domain,
        "species": task.species,
        "description": task.description,
        "synthetic": task.synthetic,
    }


# -- building -----------------------------------------------------------------------------------------
@dataclass
class Backbone:
    """A loaded backbone with the encoder that turns sequences into its token ids."""

    loaded: LoadedModel
    encoder: SequenceEncoder


def load_backbone(cfg: LingoConfig, info: dict[str, Any], empty: bool = False) -> Backbone:
    """The run's backbone (fresh head for ``info``'s labels) and its sequence encoder.

    ``empty=True`` builds the architecture without weights (meta device): for plans and counts.
    """
    loaded = load_model(cfg.model, len(info["label_names"]), bool(info["multi_label"]), cfg.encoding, empty=empty)
    return Backbone(loaded, build_encoder(loaded, cfg, info))


def build_encoder(loaded: LoadedModel, cfg: LingoConfig, info: dict[str, Any]) -> SequenceEncoder:
    """The encoder of a run (its prefix filled with ``info``'s domain, species and description) on ``loaded``'s tokenizer."""
    check_max_length(cfg, loaded)
    return SequenceEncoder(
        loaded.tokenizer,
        cfg.encoding,
        domain=info.get("domain") or "DNA",
        species=info.get("species"),
        task=info.get("description"),
    )


def model_positions(loaded: LoadedModel) -> Optional[int]:
    """How many token positions the backbone has (None when its config does not say)."""
    config = getattr(loaded.model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_max_length(cfg: LingoConfig, loaded: LoadedModel) -> None:
    """Refuse ``encoding.max_length`` above the model's positions (a tensor-size error deep in training otherwise)."""
    positions = model_positions(loaded)
    if positions is not None and cfg.encoding.max_length > positions:
        raise ConfigError(
            f"encoding.max_length is {cfg.encoding.max_length} tokens but model {cfg.model.name!r} has only "
            f"{positions} positions; set encoding.max_length to at most {positions}"
        )


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def attach_adapter(loaded: LoadedModel, cfg: LingoConfig, total_step: int) -> AdaptedModel:
    """Apply the config's method to the backbone, with the adapter initialisation seeded (``seed + 1``)."""
    seed_everything(cfg.train.seed + 1)  # adapter initialisation, whatever ran before
    return build_adapter(loaded, cfg.adapter, total_step, seed=cfg.train.seed)


def restore_selected(adapted: AdaptedModel, selected: dict[str, Any]) -> None:
    """Load a dev-selected state (``best.pt``) so the model computes exactly what its export computes.

    For methods with a rank budget the state's pattern is applied and what it prunes is zeroed:
    singular values that regrew after the last allocation are not part of the export.
    """
    adapted.load_selected(selected["trainable"], selected.get("rank_pattern"))


# -- batches and logits ---------------------------------------------------------------------------------
@dataclass
class EncodedSplit:
    """Token ids of one split, with its labels."""

    input_ids: list[list[int]]
    labels: np.ndarray
    n_truncated: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_split(encoder: SequenceEncoder, sequences: Sequence[str], labels: np.ndarray) -> EncodedSplit:
    ids, n_truncated = encoder.encode_batch(sequences)
    return EncodedSplit(ids, labels, n_truncated)


def collate(input_ids: Sequence[list[int]], pad_id: int, labels: Optional[np.ndarray] = None) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest member."""
    width = max(len(ids) for ids in input_ids)
    batch = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(input_ids), width), dtype=torch.long)
    for i, ids in enumerate(input_ids):
        batch[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[i, : len(ids)] = 1
    out = {"input_ids": batch, "attention_mask": mask}
    if labels is not None:
        dtype = torch.float32 if labels.ndim == 2 else torch.long
        out["labels"] = torch.as_tensor(labels, dtype=dtype)
    return out


def length_buckets(lengths: Sequence[int], batch_size: int, max_tokens: Optional[int] = None) -> list[np.ndarray]:
    """Index batches of similar length (sorted), to minimise padding at inference.

    With ``max_tokens`` a batch also stops growing before rows x its longest length exceeds it
    (on CPU, batches that stay in cache run faster: bench/bench_inference.py).
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    if max_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    sorted_lengths = np.asarray(lengths)[order]
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < batch_size and (end + 1 - start) * sorted_lengths[end] <= max_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    input_ids: Sequence[list[int]],
    pad_id: int,
    batch_size: int,
    device: torch.device,
    precision: str = "no",
    max_tokens: Optional[int] = None,
    adapter_names: Optional[Sequence[str]] = None,
) -> np.ndarray:
    """Logits for every sequence, batched by length (at most ``max_tokens`` per batch if set); in input order.

    ``adapter_names`` (one per sequence) runs a peft model with several adapters in mixed batches:
    each row through its own adapter (peft's ``adapter_names`` forward argument).
    """
    was_training = model.training
    model.eval()
    outputs: list[Optional[np.ndarray]] = [None] * len(input_ids)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    for idx in length_buckets([len(x) for x in input_ids], batch_size, max_tokens):
        batch = collate([input_ids[i] for i in idx], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        if adapter_names is not None:
            batch["adapter_names"] = [adapter_names[i] for i in idx]
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(**batch).logits.float().cpu().numpy()
        for row, i in enumerate(idx):
            outputs[i] = logits[row]
    model.train(was_training)
    return np.stack(outputs) if outputs else np.zeros((0, 0))


def logits_to_probs(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def split_probabilities(
    model: torch.nn.Module,
    split: EncodedSplit,
    pad_id: int,
    multi_label: bool,
    batch_size: int,
    device: torch.device,
    precision: str = "no",
) -> np.ndarray:
    """Class (or per-label) probabilities of ``model`` for every sequence of an encoded split."""
    logits = predict_logits(model, split.input_ids, pad_id, batch_size, device, precision)
    return logits_to_probs(logits, multi_label)


def metrics_from_probabilities(labels: np.ndarray, probs: np.ndarray, multi_label: bool) -> dict[str, Any]:
    """Classification metrics and the mean loss of predicted probabilities."""
    metrics = classification_metrics(labels, probs, multi_label)
    if multi_label:
        y = labels.astype(np.float64)
        p = np.clip(probs, 1e-7, 1 - 1e-7)
        loss = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    else:
        loss = float(-np.log(np.clip(probs[np.arange(len(probs)), labels.astype(int)], 1e-12, None)).mean())
    metrics["loss"] = loss
    return metrics


def evaluate_split(
    model: torch.nn.Module,
    split: EncodedSplit,
    pad_id: int,
    multi_label: bool,
    batch_size: int,
    device: torch.device,
    precision: str = "no",
) -> dict[str, Any]:
    """Metrics and mean loss of ``model`` on an encoded split."""
    probs = split_probabilities(model, split, pad_id, multi_label, batch_size, device, precision)
    return metrics_from_probabilities(split.labels, probs, multi_label)


# -- a run's model, as trained --------------------------------------------------------------------------
@dataclass
class TrainedModel:
    """A ready-to-use classifier restored from a run directory."""

    run: runs.Run
    cfg: LingoConfig
    model: torch.nn.Module
    loaded: LoadedModel
    encoder: SequenceEncoder
    label_names: list[str]
    multi_label: bool
    source: str  # "adapter" (final, dev-selected) or "best-checkpoint" (a run still training)

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def device(self) -> torch.device:
        return self.loaded.device


def run_task_info(run: runs.Run) -> dict[str, Any]:
    """The task facts recorded in a run's data report."""
    info = run.data_report()
    path = run.path / runs.DATA_REPORT
    if info is None and path.exists():
        raise RunLoadError(
            f"{path} is damaged (not a readable JSON object); it holds the label names prediction needs. "
            "Fix: restore it from a copy, or train the run again"
        )
    if info is None or "label_names" not in info:
        raise RunLoadError(
            f"{run.path} has no data report with label names: the run failed before its data was loaded"
        )
    names = info["label_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RunLoadError(f"{path}: 'label_names' must be a list of class names, got {names!r}; the file is damaged")
    if not isinstance(info.get("multi_label", False), bool):
        raise RunLoadError(f"{path}: 'multi_label' must be true or false, got {info.get('multi_label')!r}; the file is damaged")
    return info


def checked_run_config(run: runs.Run) -> LingoConfig:
    """The run's typed config; :class:`ConfigError` when config.yaml is unreadable, truncated or invalid."""
    problem = run.config_damage()
    if problem:
        raise ConfigError(f"{run.path}: {problem}. Fix: restore {run.path / runs.CONFIG} from a copy, or train the run again")
    return run.typed_config()


def inference_config(run: runs.Run, device: Optional[str] = None, trust_remote_code: Optional[bool] = None) -> LingoConfig:
    """The run's config as inference runs it: checked, remote code only as the caller allows, ``device`` if given."""
    cfg = checked_run_config(run)
    _allow_remote_code(cfg, run, trust_remote_code)
    if device:
        cfg.model.device = device
    return cfg


def _no_model_message(run: runs.Run) -> str:
    """Why a run without an export or best checkpoint has no model, and what to do, by its state."""
    status = run.status
    state = status.get("state")
    if state in ("queued", "running"):
        return f"{run.path} has no best checkpoint yet; wait for its first dev evaluation"
    error = status.get("error")
    why = f" ({' '.join(str(error).split())[:300]})" if state == "failed" and error else ""
    fix = (
        f"resume it with: python -m lingo_core train --resume {run.path}"
        if run.has_checkpoint and state != "done"
        else "train it again"
    )
    if state == "done":
        return f"{run.path} is marked done but has neither adapter/ nor checkpoint/best.pt: the run directory is damaged; {fix}"
    return f"{run.path} {state} before its first dev evaluation{why}, so it has no model to load; {fix}"


def load_trained(
    run_dir: Union[str, Path], device: Optional[str] = None, *, trust_remote_code: Optional[bool] = None
) -> TrainedModel:
    """Rebuild the model of a run: the exported adapter if the run finished, else its best checkpoint so far.

    ``trust_remote_code``: allow a model's own code when the run's config asks for it. The run's
    config alone never switches it on; None takes the caller's :func:`remote_code_allowed` block
    (off by default). A damaged run directory raises :class:`RunLoadError`, :class:`RunFileError`
    or :class:`~lingo_core.config.ConfigError`, naming the file.
    """
    run = runs.load_run(run_dir)
    cfg = inference_config(run, device, trust_remote_code)
    info = run_task_info(run)
    has_export = run.adapter_dir.exists()
    problem = run.export_damage() if has_export else run.checkpoint_damage((runs.BEST_FILE,))
    if problem:
        raise RunLoadError(f"{run.path}: {problem}; the run's model cannot be loaded. Fix: restore the file, or train the run again")
    best = None if has_export else run.load_best()
    if not has_export and best is None:  # before loading the backbone: there is nothing to restore
        raise RunLoadError(_no_model_message(run))
    backbone = load_backbone(cfg, info)
    loaded = backbone.loaded
    if has_export:
        export = run.export_info() or {}
        try:
            model = get_method(export["method"]).model_class().load_export(loaded, run.adapter_dir)
        except Exception as exc:  # noqa: BLE001 - peft/safetensors fail in many ways on a damaged export
            raise RunLoadError(
                f"{run.adapter_dir}: the exported adapter does not load ({type(exc).__name__}: "
                f"{_first_line(exc)}); it is damaged or does not match the run's config. Fix: train the run again"
            ) from None
        source = "adapter"
    else:
        total_step = best.get("total_step") or run.total_step
        if not isinstance(total_step, int) or total_step < 1:
            raise RunLoadError(f"{run.path}: its best checkpoint does not say how many steps the run has; it cannot be rebuilt")
        try:
            adapted = attach_adapter(loaded, cfg, int(total_step))
            restore_selected(adapted, best)
        except Exception as exc:  # noqa: BLE001 - a checkpoint of the wrong shape fails inside torch/peft
            raise RunLoadError(
                f"{run.path / runs.CHECKPOINT / runs.BEST_FILE}: the best checkpoint does not fit the run's model "
                f"({type(exc).__name__}: {_first_line(exc)}); it is damaged or from another run"
            ) from None
        model = adapted.model
        source = "best-checkpoint"
    model.to(loaded.device)
    model.eval()
    return TrainedModel(run, cfg, model, loaded, backbone.encoder, list(info["label_names"]), bool(info["multi_label"]), source)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def evaluate_run(
    run_dir: Union[str, Path], splits: tuple[str, ...] = ("dev", "test"), *, trust_remote_code: Optional[bool] = None
) -> dict[str, Any]:
    """Re-evaluate a run's model on its own data splits (as configured in its config.yaml)."""
    from .data import load_task

    trained = load_trained(run_dir, trust_remote_code=trust_remote_code)
    task = load_task(trained.cfg.data)
    results: dict[str, Any] = {"run": str(trained.run.path), "source": trained.source}
    strands = [lambda s: s]
    if trained.cfg.data.eval_strands == "both":  # scored as the run scored them: the mean over both strands
        strands.append(reverse_complement)
    for name in splits:
        split = getattr(task, name)
        probs = [
            split_probabilities(
                trained.model, encode_split(trained.encoder, [read(s) for s in split.sequences], split.labels),
                trained.tokenizer.pad_token_id, task.multi_label, trained.cfg.train.eval_batch_size, trained.device,
                trained.loaded.precision,
            )
            for read in strands
        ]
        results[name] = metrics_from_probabilities(split.labels, sum(probs) / len(probs), task.multi_label)
    return results
