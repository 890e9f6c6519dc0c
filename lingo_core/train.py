"""The training loop: one loop for the CLI, the app, notebooks and studies.

config -> data -> encoding -> model + adapter -> this loop -> run directory. The loop is written
out (nanoGPT style) rather than hidden in a Trainer so the rank allocation hook, checkpointing and
resume are easy to read:

- the training set is reshuffled each epoch by a generator seeded with ``seed + epoch`` and sharded
  across processes, so a resumed run replays exactly the same batches;
- after every optimizer step the adapter's ``after_optimizer_step`` runs (AdaLoRA/ARS rank
  allocation, before ``zero_grad``) and its record goes to ``ranks.jsonl``;
- the dev set is evaluated every ``eval_every`` steps; the best checkpoint by
  ``metric_for_best`` is kept, and early stopping watches it;
- a checkpoint (full-rank adapter, allocator state, optimizer, scheduler, RNG states) is written
  atomically at every evaluation; ``resume`` continues from it bit for bit;
- at the end the dev-selected state is restored, evaluated on dev and test, exported to
  ``adapter/`` and summarised in ``report.json``.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from . import runs
from .adapters import build_adapter, short_module_name
from .adapters.adalora import LAMBDA_PARAMETER
from .config import LingoConfig, config_from_dict, save_config
from .data import TaskData, load_task
from .encoding import SequenceEncoder, warn_truncation
from .evaluate import classification_metrics, metric_value
from .models import LoadedModel, load_model, resolve_device


class RunCancelled(Exception):
    """Raised inside the loop when a cancel was requested (CANCEL file or SIGTERM)."""


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
) -> np.ndarray:
    """Logits for every sequence, batched by length (at most ``max_tokens`` per batch if set); in input order."""
    was_training = model.training
    model.eval()
    outputs: list[Optional[np.ndarray]] = [None] * len(input_ids)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    for idx in length_buckets([len(x) for x in input_ids], batch_size, max_tokens):
        batch = collate([input_ids[i] for i in idx], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(**batch).logits.float().cpu().numpy()
        for row, i in enumerate(idx):
            outputs[i] = logits[row]
    model.train(was_training)
    return np.stack(outputs) if outputs else np.zeros((0, 0))


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for single-label (integer labels), binary cross-entropy for multi-label (0/1 floats)."""
    logits = logits.float()
    if labels.dtype.is_floating_point:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    return torch.nn.functional.cross_entropy(logits, labels)


def logits_to_probs(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


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
    logits = predict_logits(model, split.input_ids, pad_id, batch_size, device, precision)
    probs = logits_to_probs(logits, multi_label)
    metrics = classification_metrics(split.labels, probs, multi_label)
    if multi_label:
        y = split.labels.astype(np.float64)
        p = np.clip(probs, 1e-7, 1 - 1e-7)
        loss = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    else:
        loss = float(-np.log(np.clip(probs[np.arange(len(probs)), split.labels.astype(int)], 1e-12, None)).mean())
    metrics["loss"] = loss
    return metrics


def capture_rng() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[np.ndarray]:
    """This process's batches of an epoch: a seeded permutation, sharded, last partial batch kept."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator).numpy()
    shard = order[rank::world]
    return [shard[i : i + batch_size] for i in range(0, len(shard), batch_size)]


def optimizer_param_groups(model: torch.nn.Module, lr: float, lambda_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """The trainable parameters as AdamW groups: the singular values lambda at ``lr * lambda_lr_scale``.

    One group when the scale is 1. The learning-rate schedule multiplies every group's lr alike.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if lambda_lr_scale == 1.0:
        return [{"params": [p for _, p in trainable], "lr": lr}]
    lambdas = [p for n, p in trainable if LAMBDA_PARAMETER in n]
    if not lambdas:
        raise ValueError("adapter.lambda_lr_scale is set but the model has no trainable singular values (lora_E)")
    others = [p for n, p in trainable if LAMBDA_PARAMETER not in n]
    return [{"params": others, "lr": lr}, {"params": lambdas, "lr": lr * lambda_lr_scale}]


def steps_per_epoch(n_train: int, batch_size: int, grad_accum: int, world: int) -> int:
    batches = math.ceil(math.ceil(n_train / world) / batch_size)
    return max(1, math.ceil(batches / grad_accum))


def total_steps(cfg: LingoConfig, n_train: int, world: int) -> int:
    """Optimizer steps for the run: epochs x steps per epoch, capped by ``train.max_steps``."""
    per_epoch = steps_per_epoch(n_train, cfg.train.batch_size, cfg.train.grad_accum, world)
    total = max(1, math.ceil(cfg.train.epochs * per_epoch))
    if cfg.train.max_steps is not None:
        total = min(total, cfg.train.max_steps)
    return total


@dataclass
class Prepared:
    """Everything built from a config before the loop starts."""

    task: TaskData
    loaded: LoadedModel
    encoder: SequenceEncoder
    splits: dict[str, EncodedSplit]


def prepare(cfg: LingoConfig) -> Prepared:
    """Load and validate the data, the model and the encoder, and encode all splits."""
    seed_everything(cfg.train.seed)  # the classification head is initialised here
    task = load_task(cfg.data)
    loaded = load_model(cfg.model, task.num_labels, task.multi_label, cfg.encoding)
    encoder = SequenceEncoder(
        loaded.tokenizer, cfg.encoding, domain=task.domain, species=task.species, task=task.description
    )
    splits = {}
    for name in ("train", "dev", "test"):
        split = getattr(task, name)
        splits[name] = encode_split(encoder, split.sequences, split.labels)
        warn_truncation(splits[name].n_truncated, len(split), cfg.encoding.max_length)
    return Prepared(task, loaded, encoder, splits)


def task_info(task: TaskData) -> dict[str, Any]:
    """What prediction needs to know about the task without loading its data."""
    return {
        "task": task.name,
        "label_names": list(task.label_names),
        "multi_label": task.multi_label,
        "domain": task.domain,
        "species": task.species,
        "description": task.description,
        "synthetic": task.synthetic,
    }


class Trainer:
    """Runs one training job into one run directory."""

    def __init__(
        self, cfg: LingoConfig, writer: runs.RunWriter, resume: bool = False, prepared: Optional[Prepared] = None
    ) -> None:
        self.cfg = cfg
        self.writer = writer
        self.resume = resume
        self.prepared = prepared
        self._sigterm = False

    # -- entry -------------------------------------------------------------------------------
    def run(self) -> Path:
        from accelerate import Accelerator

        cfg, writer = self.cfg, self.writer
        previous = signal.signal(signal.SIGTERM, self._on_sigterm) if _in_main_thread() else None
        started = time.time()
        device, precision = resolve_device(cfg.model)
        accelerator = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
        self.accelerator = accelerator
        self.is_main = accelerator.is_main_process
        writer.enabled = self.is_main
        try:
            writer.set_status("running", pid=os.getpid(), started=runs._now(), error=None, traceback=None)
            prepared = self.prepared or prepare(cfg)
            self.prepared = prepared
            loaded = prepared.loaded
            if not self.resume:
                report = dict(prepared.task.report)
                report.update(task_info(prepared.task))
                report["truncated"] = {k: s.n_truncated for k, s in prepared.splits.items()}
                report["token_stats"] = prepared.encoder.token_length_stats(prepared.task.train.sequences[:256])
                writer.write_data_report(report)
            n_train = len(prepared.splits["train"])
            self.total_step = total_steps(cfg, n_train, accelerator.num_processes)
            writer.update_status(progress=self._progress(0))
            seed_everything(cfg.train.seed + 1)  # adapter initialisation, whatever ran before
            self.adapted = build_adapter(loaded, cfg.adapter, self.total_step, seed=cfg.train.seed)
            self._train(accelerator, started)
            self._finish(started)
            writer.set_status("done", progress=self._progress(self.total_step), finished=runs._now())
            accelerator.wait_for_everyone()  # every process returns after the run is marked done
            return writer.path
        except RunCancelled:
            writer.set_status("cancelled", finished=runs._now())
            return writer.path
        except BaseException as exc:  # noqa: BLE001 - the run must record any failure
            writer.set_status(
                "failed",
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
                finished=runs._now(),
            )
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, signum, frame) -> None:  # noqa: ARG002
        self._sigterm = True

    def _check_cancel(self) -> None:
        if self._sigterm or self.writer.cancel_requested():
            raise RunCancelled()

    # -- the loop ----------------------------------------------------------------------------
    def _train(self, accelerator, started: float) -> None:
        cfg, tcfg = self.cfg, self.cfg.train
        prepared, adapted = self.prepared, self.adapted
        train_split = prepared.splits["train"]
        pad_id = prepared.loaded.tokenizer.pad_token_id
        device = accelerator.device

        groups = optimizer_param_groups(adapted.model, tcfg.lr, cfg.adapter.lambda_lr_scale)
        params = [p for group in groups for p in group["params"]]
        optimizer = torch.optim.AdamW(groups, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        warmup = int(round(tcfg.warmup_ratio * self.total_step))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_warmup_decay(warmup, self.total_step))
        model, optimizer = accelerator.prepare(adapted.model, optimizer)
        self.model = model
        per_epoch = steps_per_epoch(len(train_split), tcfg.batch_size, tcfg.grad_accum, accelerator.num_processes)
        eval_every = tcfg.eval_every or max(1, per_epoch // 4)
        eval_every = min(eval_every, self.total_step)
        checkpoint_every = tcfg.checkpoint_every or eval_every

        self.state = {"step": 0, "epoch": 0, "batch": 0, "best": -math.inf, "best_step": None, "bad_evals": 0, "elapsed": 0.0, "seen": 0}
        if self.resume:
            self._load_checkpoint(optimizer, scheduler)
        st = self.state
        run_started = time.time() - st["elapsed"]
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_step, initial=st["step"], disable=not (self.is_main and tcfg.progress_bar), desc="train", unit="step")
        model.train()
        micro, running_loss = 0, 0.0
        stop = False
        while st["step"] < self.total_step and not stop:
            batches = epoch_batches(len(train_split), tcfg.batch_size, tcfg.seed, st["epoch"], accelerator.process_index, accelerator.num_processes)
            while st["batch"] < len(batches):
                idx = batches[st["batch"]]
                st["batch"] += 1
                batch = collate([train_split.input_ids[i] for i in idx], pad_id, train_split.labels[idx])
                batch = {k: v.to(device) for k, v in batch.items()}
                micro += 1
                sync = micro % tcfg.grad_accum == 0 or st["batch"] == len(batches)
                labels = batch.pop("labels")
                with accelerator.autocast():
                    loss = task_loss(model(**batch).logits, labels)
                    regularizer = adapted.regularizer()  # AdaLoRA/ARS orthogonality term
                    if regularizer is not None:
                        loss = loss + regularizer
                    loss = loss / tcfg.grad_accum
                if sync:
                    accelerator.backward(loss)
                else:
                    with accelerator.no_sync(model):
                        accelerator.backward(loss)
                running_loss += loss.item()
                st["seen"] += len(idx)
                if not sync:
                    continue
                if tcfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, tcfg.max_grad_norm)
                optimizer.step()
                st["step"] += 1
                record = adapted.after_optimizer_step(st["step"])  # before zero_grad (peft requirement)
                if record is not None and accelerator.num_processes > 1:
                    self._check_same_masks(st["step"])
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                lr = scheduler.get_last_lr()[0]
                if self.is_main:
                    if record is not None:
                        self.writer.log_ranks(record)
                    self.writer.log_metrics({"step": st["step"], "epoch": round(st["epoch"] + st["batch"] / len(batches), 4), "loss": running_loss, "lr": lr})
                bar.update(1)
                bar.set_postfix(loss=f"{running_loss:.4f}")
                running_loss, micro = 0.0, 0
                st["elapsed"] = time.time() - run_started
                if self.is_main and (st["step"] % 5 == 0 or st["step"] in (1, self.total_step)):
                    self.writer.update_status(progress=self._progress(st["step"]))
                if st["step"] % eval_every == 0 or st["step"] == self.total_step:
                    stop = self._evaluate_dev(st)
                if st["step"] % checkpoint_every == 0 or st["step"] == self.total_step or stop:
                    self._save_checkpoint(optimizer, scheduler)
                    _maybe_crash_for_tests(st["step"])
                self._check_cancel()
                if stop or st["step"] >= self.total_step:
                    break
            if st["batch"] >= len(batches):
                st["epoch"] += 1
                st["batch"] = 0
        bar.close()
        if stop and self.is_main:
            self.writer.update_status(early_stopped_at=st["step"])

    def _check_same_masks(self, step: int) -> None:
        """Every process must have made the same allocation (same seed, same all-reduced scores)."""
        pattern = self.adapted.rank_pattern() or {}
        bits = torch.tensor([float(b) for mask in pattern.values() for b in mask], device=self.accelerator.device)
        gathered = self.accelerator.gather(bits.unsqueeze(0))
        if not torch.all(gathered == gathered[0]):
            raise RuntimeError(f"rank masks differ between processes at step {step}; the ARS generators diverged")
        self.masks_checked = getattr(self, "masks_checked", 0) + 1

    def _progress(self, step: int) -> dict[str, Any]:
        elapsed = self.state["elapsed"] if hasattr(self, "state") else 0.0
        eta = elapsed / step * (self.total_step - step) if step else None
        return {"step": step, "total_step": self.total_step, "fraction": round(step / self.total_step, 4), "elapsed_s": round(elapsed, 1), "eta_s": None if eta is None else round(eta, 1)}

    def _evaluate_dev(self, st: dict[str, Any]) -> bool:
        """Evaluate on dev, keep the best state; return True when early stopping triggers."""
        tcfg = self.cfg.train
        prepared = self.prepared
        metrics = evaluate_split(
            self.model, prepared.splits["dev"], prepared.loaded.tokenizer.pad_token_id,
            prepared.task.multi_label, tcfg.eval_batch_size, self.accelerator.device, prepared.loaded.precision,
        )
        value = metric_value(metrics, tcfg.metric_for_best)
        if self.is_main:
            record = {"step": st["step"], "epoch": st["epoch"]}
            record.update({f"dev_{k}": v for k, v in metrics.items() if k not in ("confusion_matrix", "per_label_mcc", "n")})
            self.writer.log_metrics(record)
        if value > st["best"]:
            st["best"], st["best_step"], st["bad_evals"] = value, st["step"], 0
            best = {"step": st["step"], "trainable": self.adapted.trainable_state(), "rank_pattern": self.adapted.rank_pattern(), "dev": metrics}
            if self.is_main:
                runs.atomic_torch_save(self.writer.checkpoint_dir / runs.BEST_FILE, best)
        else:
            st["bad_evals"] += 1
        patience = tcfg.early_stopping_patience
        return patience is not None and st["bad_evals"] >= patience

    # -- checkpoints ---------------------------------------------------------------------------
    def _save_checkpoint(self, optimizer, scheduler) -> None:
        if not self.is_main:
            return
        state = {
            "loop": dict(self.state),
            "trainable": self.adapted.trainable_state(),
            "allocator": self.adapted.allocator_state(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": capture_rng(),
            "total_step": self.total_step,
        }
        runs.atomic_torch_save(self.writer.checkpoint_dir / runs.STATE_FILE, state)

    def _load_checkpoint(self, optimizer, scheduler) -> None:
        path = self.writer.checkpoint_dir / runs.STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: this run has no checkpoint to resume from")
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["total_step"] != self.total_step:
            raise ValueError(
                f"cannot resume: the checkpoint was made for {state['total_step']} steps but the config now gives "
                f"{self.total_step}; resume with the run's own config.yaml"
            )
        self.adapted.load_trainable_state(state["trainable"])
        self.adapted.load_allocator_state(state["allocator"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"])
        self.state = dict(state["loop"])
        if self.is_main:
            self.writer.truncate_logs_after(self.state["step"])
            self.writer.update_status(resumed_from_step=self.state["step"])

    # -- the end -------------------------------------------------------------------------------
    def _finish(self, started: float) -> None:
        """Restore the dev-selected state, evaluate dev and test, export the adapter, write the report."""
        prepared, adapted, tcfg = self.prepared, self.adapted, self.cfg.train
        best_path = self.writer.checkpoint_dir / runs.BEST_FILE
        best_step = self.state.get("best_step")
        self.accelerator.wait_for_everyone()  # best.pt is written by the main process
        results: dict[str, Any] = {}
        if best_path.exists():
            best = torch.load(best_path, map_location="cpu", weights_only=False)
            adapted.load_trainable_state(best["trainable"])
            if best.get("rank_pattern") is not None and hasattr(adapted, "set_rank_pattern"):
                adapted.set_rank_pattern(best["rank_pattern"])
            best_step = best["step"]
            results["dev"] = best["dev"]  # measured on exactly this state when it was selected
        for name in ("dev", "test"):
            if name not in results:
                results[name] = evaluate_split(
                    self.model, prepared.splits[name], prepared.loaded.tokenizer.pad_token_id,
                    prepared.task.multi_label, tcfg.eval_batch_size, self.accelerator.device, prepared.loaded.precision,
                )
        if not self.is_main:
            return
        tmp_dir = self.writer.path / ".adapter.tmp"
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        adapted.export(tmp_dir)
        final_dir = self.writer.adapter_dir
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(tmp_dir, final_dir)
        wall = self.state["elapsed"]
        report = {
            "selected_step": best_step,
            "selection": f"best dev {tcfg.metric_for_best} over {len([m for m in runs.read_jsonl(self.writer.path / runs.METRICS) if 'dev_loss' in m])} evaluations",
            "dev": results["dev"],
            "test": results["test"],
            "parameters": adapted.parameter_counts(),
            "total_step": self.total_step,
            "steps_done": self.state["step"],
            "wall_time_s": round(wall, 2),
            "train_sequences_per_s": round(self.state["seen"] / wall, 2) if wall > 0 else None,
            "n_train": len(prepared.splits["train"]),
            "label_names": prepared.task.label_names,
            "multi_label": prepared.task.multi_label,
            "device": str(self.accelerator.device),
            "precision": prepared.loaded.precision,
            "num_processes": self.accelerator.num_processes,
            "allocations_checked_identical_across_processes": getattr(self, "masks_checked", 0),
        }
        if adapted.rank_pattern():
            report["final_ranks"] = {short_module_name(k): int(sum(v)) for k, v in adapted.rank_pattern().items()}
        self.writer.write_report(report)


def _linear_warmup_decay(warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _maybe_crash_for_tests(step: int) -> None:
    """``LINGO_TEST_KILL_AFTER_STEP=N``: die like ``kill -9`` right after the checkpoint at step N."""
    value = os.environ.get("LINGO_TEST_KILL_AFTER_STEP")
    if value and step >= int(value):
        os._exit(137)


def train(cfg: LingoConfig) -> Path:
    """Train ``cfg`` into a new run directory under ``cfg.output_dir``; return its path.

    Data, model and encoding are loaded and validated first: bad input raises before any run
    directory exists, so no half-made run is left behind.
    """
    prepared = prepare(cfg)
    return Trainer(cfg, _create_shared_run(cfg), prepared=prepared).run()


def _create_shared_run(cfg: LingoConfig) -> runs.RunWriter:
    """Create the run directory on the main process and tell every other process its path."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    device, _ = resolve_device(cfg.model)
    state = PartialState(cpu=device.type == "cpu")
    path: list[Optional[str]] = [None]
    if state.is_main_process:
        writer = runs.RunWriter.create(cfg.output_dir, save_config(cfg), cfg.adapter.method, cfg.data.task, cfg.run_name)
        path[0] = str(writer.path)
    if state.num_processes > 1:
        broadcast_object_list(path)
    return runs.RunWriter(path[0], enabled=state.is_main_process)


def train_queued(run_dir: str | Path) -> Path:
    """Train a run directory created ahead (state ``queued``, e.g. by the app's launcher) from its config.yaml."""
    run = runs.load_run(run_dir)
    if run.state != "queued":
        raise RuntimeError(f"{run_dir} is in state '{run.state}', not 'queued'; use --resume to continue a stopped run")
    writer = runs.RunWriter(run.path)
    if writer.cancel_requested():
        writer.set_status("cancelled", finished=runs._now())
        return run.path
    return Trainer(config_from_dict(run.config), writer).run()


def resume(run_dir: str | Path) -> Path:
    """Continue a killed, failed or cancelled run from its last checkpoint, with its own config."""
    run = runs.load_run(run_dir)
    if run.state in ("running",):
        raise RuntimeError(f"{run_dir} is still running (pid {run.status.get('pid')}); it cannot be resumed twice")
    if run.state == "done":
        raise RuntimeError(f"{run_dir} has finished; there is nothing to resume")
    cfg = config_from_dict(run.config)
    writer = runs.RunWriter(run.path)
    if (writer.path / runs.CANCEL).exists():
        (writer.path / runs.CANCEL).unlink()
    has_checkpoint = (writer.checkpoint_dir / runs.STATE_FILE).exists()
    return Trainer(cfg, writer, resume=has_checkpoint).run()
