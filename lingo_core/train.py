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
  atomically at every evaluation and at the step where a cancel (CANCEL file or SIGTERM) stops
  the run; ``resume`` continues from it bit for bit;
- at the end the dev-selected state is restored, evaluated on dev and test, exported to
  ``adapter/`` and summarised in ``report.json``.
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from . import runs
from .adapters.base import short_module_name
from .config import ConfigError, LingoConfig, save_config
from .data import TaskData, load_task
from .dropout import use_uniform_dropout
from .encoding import SequenceEncoder, warn_truncation
from .evaluate import metric_value
from .inference import (
    EncodedSplit,
    attach_adapter,
    checked_run_config,
    collate,
    encode_split,
    load_backbone,
    metrics_from_probabilities,
    restore_selected,
    seed_everything,
    split_probabilities,
    task_info,
)
from .learning import LearningWarning, learning_findings
from .models import LoadedModel, resolve_device, skip_adapter_input_casts, store_frozen_weights
from .plan import plan_steps, with_adapted
from .sequence_input import reverse_complement


class RunCancelled(Exception):
    """Raised inside the loop when a cancel was requested (CANCEL file or SIGTERM)."""


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for single-label (integer labels), binary cross-entropy for multi-label (0/1 floats)."""
    logits = logits.float()
    if labels.dtype.is_floating_point:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    return torch.nn.functional.cross_entropy(logits, labels)


def capture_rng() -> dict[str, Any]:
    """Every RNG state as tensors and plain values (checkpoints load with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def strand_flips(n: int, seed: int, epoch: int) -> np.ndarray:
    """Which training sequences an epoch reads as their reverse complement (``data.augment``): a
    seeded coin per sequence and epoch, so a resumed run reads the same strands."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7_919 * 1_000_003)
    return (torch.rand(n, generator=generator) < 0.5).numpy()


def crop_windows(lengths: Sequence[int], crop: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each training sequence starts and ends in an epoch under ``data.crop``: up to ``crop`` bases
    dropped at each end (at most a quarter of the sequence per end), a seeded draw per sequence and
    epoch, so a resumed run reads the same windows."""
    lengths = np.asarray(lengths, dtype=np.int64)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 104_729 * 1_000_003)
    drops = torch.randint(0, crop + 1, (2, len(lengths)), generator=generator).numpy()
    most = lengths // 4
    starts = np.minimum(drops[0], most)
    return starts, lengths - np.minimum(drops[1], most)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[np.ndarray]:
    """This process's batches of an epoch: a seeded permutation, sharded, last partial batch kept."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator).numpy()
    shard = order[rank::world]
    return [shard[i : i + batch_size] for i in range(0, len(shard), batch_size)]


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
    backbone = load_backbone(cfg, task_info(task))
    loaded, encoder = backbone.loaded, backbone.encoder
    splits = {}
    for name in ("train", "dev", "test"):
        split = getattr(task, name)
        splits[name] = encode_split(encoder, split.sequences, split.labels)
        warn_truncation(splits[name].n_truncated, len(split), cfg.encoding.max_length)
    if cfg.data.augment == "reverse_complement" and not cfg.data.crop:  # under data.crop each epoch encodes its own
        splits["train_reverse_complement"] = encode_split(
            encoder, [reverse_complement(s) for s in task.train.sequences], task.train.labels)
    if cfg.data.eval_strands == "both":
        for name in ("dev", "test"):
            split = getattr(task, name)
            splits[f"{name}_reverse_complement"] = encode_split(
                encoder, [reverse_complement(s) for s in split.sequences], split.labels)
    return Prepared(task, loaded, encoder, splits)


class Trainer:
    """Runs one training job into one run directory."""

    def __init__(
        self,
        cfg: LingoConfig,
        writer: runs.RunWriter,
        resume: bool = False,
        prepared: Optional[Prepared] = None,
        restart: bool = False,
    ) -> None:
        """``resume``: continue from the run's checkpoint; ``restart``: the run directory holds an earlier
        attempt that stopped before its first checkpoint, whose records are dropped before step 1."""
        self.cfg = cfg
        self.writer = writer
        self.resume = resume
        self.restart = restart and not resume
        self.prepared = prepared
        self._sigterm = False
        self.state: dict[str, Any] = {"elapsed": 0.0}  # the loop position (replaced when the loop starts)
        self.masks_checked = 0

    # -- entry -------------------------------------------------------------------------------
    def run(self) -> Path:
        from accelerate import Accelerator

        cfg, writer = self.cfg, self.writer
        previous = signal.signal(signal.SIGTERM, self._on_sigterm) if _in_main_thread() else None
        started = time.time()
        device, precision = resolve_device(cfg.model)
        _forget_other_precision(precision)
        accelerator = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
        self.accelerator = accelerator
        self.is_main = accelerator.is_main_process
        writer.enabled = self.is_main
        try:
            writer.remove_stale_temporaries()  # left by a process killed while writing
            restarted = {}
            if self.restart:
                writer.clear_records()  # an attempt without a checkpoint: its log would precede the new step 1
                restarted = {"resumed_from_step": 0}
            writer.set_status("running", pid=os.getpid(), started=runs.now(), error=None, traceback=None, **restarted)
            prepared = self.prepared or prepare(cfg)
            self.prepared = prepared
            loaded = prepared.loaded
            if not self.resume:
                report = dict(prepared.task.report)
                report.update(task_info(prepared.task))
                report["truncated"] = {k: prepared.splits[k].n_truncated for k in ("train", "dev", "test")}
                report["token_stats"] = prepared.encoder.token_length_stats(prepared.task.train.sequences[:256])
                if cfg.data.augment != "none":
                    report["augment"] = {"method": cfg.data.augment, "description": (
                        "each training sequence read on a random strand in each epoch (seeded)")}
                if cfg.data.crop:
                    report["crop"] = {"bases": cfg.data.crop, "description": (
                        f"up to {cfg.data.crop} bases dropped at random from each end of a training sequence in "
                        "each epoch (seeded; at most a quarter of it per end); dev and test read whole")}
                report["eval_strands"] = {"given": "dev and test scored as given", "both": (
                    "dev and test scored as the mean of each sequence's and its reverse complement's probabilities"
                )}[cfg.data.eval_strands]
                writer.write_data_report(report)
            self.plan = plan_steps(cfg, len(prepared.splits["train"]), accelerator.num_processes)
            self.total_step = self.plan.total_step
            writer.update_status(progress=self._progress(0))
            self.adapted = attach_adapter(loaded, cfg, self.total_step)
            with_adapted(self.plan, cfg, self.adapted)
            if accelerator.device.type == "cpu":
                # dropout masks that cost a third as much on a CPU (lingo_core/dropout.py): the adapter's, and
                # under an adapter the frozen backbone's too; head-only and full fine-tuning keep nn.Dropout
                use_uniform_dropout(self.adapted.model, backbone=self.adapted.method not in ("head", "full"))
            if loaded.precision == "bf16":
                # every forward runs under bf16 autocast: keep the frozen backbone in bf16 too, so its
                # matrices are not cast on every step (bench/bench_bf16.py); trainable weights stay fp32
                store_frozen_weights(self.adapted.model, torch.bfloat16)
                skip_adapter_input_casts(self.adapted.model)  # bf16 -> fp32 -> bf16 round trips: same values
            self._train(accelerator, started)
            self._finish(started)
            writer.set_status("done", progress=self._progress(self.total_step), finished=runs.now())
            accelerator.wait_for_everyone()  # every process returns after the run is marked done
            return writer.path
        except RunCancelled:
            writer.set_status("cancelled", finished=runs.now())
            return writer.path
        except BaseException as exc:  # noqa: BLE001 - the run must record any failure
            writer.record_failure(one_line_error(exc), traceback.format_exc())
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, signum, frame) -> None:  # noqa: ARG002
        self._sigterm = True

    def _cancel_requested(self) -> bool:
        return self._sigterm or self.writer.cancel_requested()

    # -- the loop ----------------------------------------------------------------------------
    def _train(self, accelerator, started: float) -> None:
        tcfg, adapted = self.cfg.train, self.adapted
        train_split = self.prepared.splits["train"]
        reverse_split = self.prepared.splits.get("train_reverse_complement")  # data.augment
        pad_id = self.prepared.loaded.tokenizer.pad_token_id
        optimizer, scheduler = self._optimizer(accelerator)
        model = self.model

        self.state = {"step": 0, "epoch": 0, "batch": 0, "best": -math.inf, "best_step": None, "bad_evals": 0, "elapsed": 0.0, "seen": 0}
        if self.resume:
            self._load_checkpoint(optimizer, scheduler)
        st = self.state
        self._run_started = time.time() - st["elapsed"]
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total_step, initial=st["step"], disable=not (self.is_main and tcfg.progress_bar), desc="train", unit="step")
        model.train()
        micro, running_loss = 0, 0.0
        stop = False
        while st["step"] < self.total_step and not stop:
            batches = epoch_batches(len(train_split), tcfg.batch_size, tcfg.seed, st["epoch"], accelerator.process_index, accelerator.num_processes)
            flips = strand_flips(len(train_split), tcfg.seed, st["epoch"]) if self.cfg.data.augment == "reverse_complement" else None
            cropped = self._cropped_split(st["epoch"], flips)
            while st["batch"] < len(batches):
                idx = batches[st["batch"]]
                st["batch"] += 1
                if cropped is not None:
                    ids = [cropped.input_ids[i] for i in idx]
                else:
                    ids = [(reverse_split if flips is not None and flips[i] else train_split).input_ids[i] for i in idx]
                batch = collate(ids, pad_id, train_split.labels[idx])
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
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
                stop = self._optimizer_step(optimizer, scheduler, running_loss, st["epoch"] + st["batch"] / len(batches))
                running_loss, micro = 0.0, 0
                if stop or st["step"] >= self.total_step:
                    break
            if st["batch"] >= len(batches):
                st["epoch"] += 1
                st["batch"] = 0
        self._bar.close()
        if stop and self.is_main:
            self.writer.update_status(early_stopped_at=st["step"])

    def _cropped_split(self, epoch: int, flips: Optional[np.ndarray]) -> Optional[EncodedSplit]:
        """The training split as this epoch reads it under ``data.crop`` (each sequence on its epoch's
        strand, cut to its epoch's window, encoded anew); None without cropping."""
        crop = self.cfg.data.crop
        if crop <= 0:
            return None
        train = self.prepared.task.train
        sequences = [reverse_complement(s) if flips is not None and flips[i] else s for i, s in enumerate(train.sequences)]
        starts, ends = crop_windows([len(s) for s in sequences], crop, self.cfg.train.seed, epoch)
        windows = [s[a:b] for s, a, b in zip(sequences, starts, ends)]
        return encode_split(self.prepared.encoder, windows, train.labels)

    def _optimizer(self, accelerator) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """AdamW over the method's parameter groups, linear warm-up and decay; the model prepared by Accelerate."""
        tcfg = self.cfg.train
        groups = self.adapted.param_groups(tcfg.lr)
        self._params = [p for group in groups for p in group["params"]]
        optimizer = torch.optim.AdamW(groups, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_warmup_decay(self.plan.warmup_steps, self.total_step))
        self.model, optimizer = accelerator.prepare(self.adapted.model, optimizer)
        return optimizer, scheduler

    def _optimizer_step(self, optimizer, scheduler, loss: float, epoch: float) -> bool:
        """One optimizer step, the allocation hook, logs, dev evaluation and checkpoint; True to stop early."""
        st, tcfg, accelerator = self.state, self.cfg.train, self.accelerator
        if tcfg.max_grad_norm:
            accelerator.clip_grad_norm_(self._params, tcfg.max_grad_norm)
        optimizer.step()
        st["step"] += 1
        record = self.adapted.after_optimizer_step(st["step"])  # before zero_grad (peft requirement)
        if record is not None and accelerator.num_processes > 1:
            self._check_same_masks(st["step"])
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if self.is_main:
            if record is not None:
                self.writer.log_ranks(record)
            self.writer.log_metrics({"step": st["step"], "epoch": round(epoch, 4), "loss": loss, "lr": scheduler.get_last_lr()[0]})
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{loss:.4f}")
        st["elapsed"] = time.time() - self._run_started
        if self.is_main and (st["step"] % 5 == 0 or st["step"] in (1, self.total_step)):
            self.writer.update_status(progress=self._progress(st["step"]))
        stop = False
        if st["step"] % self.plan.eval_every == 0 or st["step"] == self.total_step:
            stop = self._evaluate_dev(st)
        checkpointed = st["step"] % self.plan.checkpoint_every == 0 or st["step"] == self.total_step or stop
        if checkpointed:
            self._save_checkpoint(optimizer, scheduler)
        if self._cancel_requested():
            if not checkpointed:  # keep the work: Resume continues from this step
                self._save_checkpoint(optimizer, scheduler)
            raise RunCancelled()
        return stop

    def _check_same_masks(self, step: int) -> None:
        """Every process must have made the same allocation (same seed, same all-reduced scores)."""
        pattern = self.adapted.rank_pattern() or {}
        bits = torch.tensor([float(b) for mask in pattern.values() for b in mask], device=self.accelerator.device)
        gathered = self.accelerator.gather(bits.unsqueeze(0))
        if not torch.all(gathered == gathered[0]):
            raise RuntimeError(f"rank masks differ between processes at step {step}; the ARS generators diverged")
        self.masks_checked += 1

    def _progress(self, step: int) -> dict[str, Any]:
        elapsed = self.state["elapsed"]
        eta = elapsed / step * (self.total_step - step) if step else None
        return {"step": step, "total_step": self.total_step, "fraction": round(step / self.total_step, 4), "elapsed_s": round(elapsed, 1), "eta_s": None if eta is None else round(eta, 1)}

    def _probabilities(self, name: str) -> np.ndarray:
        """The model's probabilities on split ``name``, averaged over both strands with ``data.eval_strands: both``."""
        prepared, tcfg = self.prepared, self.cfg.train
        strands = [prepared.splits[name]]
        if f"{name}_reverse_complement" in prepared.splits:
            strands.append(prepared.splits[f"{name}_reverse_complement"])
        probs = [
            split_probabilities(self.model, split, prepared.loaded.tokenizer.pad_token_id, prepared.task.multi_label,
                                tcfg.eval_batch_size, self.accelerator.device, prepared.loaded.precision)
            for split in strands
        ]
        return probs[0] if len(probs) == 1 else (probs[0] + probs[1]) / 2

    def _evaluate_dev(self, st: dict[str, Any]) -> bool:
        """Evaluate on dev, keep the best state; return True when early stopping triggers."""
        tcfg = self.cfg.train
        prepared = self.prepared
        metrics = metrics_from_probabilities(prepared.splits["dev"].labels, self._probabilities("dev"), prepared.task.multi_label)
        value = metric_value(metrics, tcfg.metric_for_best)
        if self.is_main:
            record = {"step": st["step"], "epoch": st["epoch"]}
            record.update({f"dev_{k}": v for k, v in metrics.items() if k not in ("confusion_matrix", "per_label_mcc", "n")})
            self.writer.log_metrics(record)
        if value > st["best"]:
            st["best"], st["best_step"], st["bad_evals"] = value, st["step"], 0
            best = {
                "step": st["step"],
                "total_step": self.total_step,
                "trainable": self.adapted.trainable_state(),
                "rank_pattern": self.adapted.rank_pattern(),
                "dev": metrics,
            }
            self.writer.save_best(best)
        else:
            st["bad_evals"] += 1
        patience = tcfg.early_stopping_patience  # None or 0: off
        return bool(patience) and st["bad_evals"] >= patience

    # -- checkpoints ---------------------------------------------------------------------------
    def _save_checkpoint(self, optimizer, scheduler) -> None:
        if not self.is_main:
            return
        self.writer.save_state({
            "loop": dict(self.state),
            "trainable": self.adapted.trainable_state(),
            "allocator": self.adapted.allocator_state(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": capture_rng(),
            "total_step": self.total_step,
        })

    def _load_checkpoint(self, optimizer, scheduler) -> None:
        state = self.writer.load_state()  # RunFileError when damaged, not a LINGO state or missing keys
        if state["total_step"] != self.total_step:
            raise ValueError(
                f"cannot resume: the checkpoint was made for {state['total_step']} steps but the config now gives "
                f"{self.total_step}; resume with the run's own config.yaml"
            )
        try:
            self.adapted.load_trainable_state(state["trainable"])
            self.adapted.load_allocator_state(state["allocator"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            restore_rng(state["rng"])
            loop = dict(state["loop"])
            missing = [k for k in ("step", "epoch", "batch", "best", "bad_evals", "elapsed", "seen") if k not in loop]
            if missing:
                raise KeyError(f"loop position lacks {missing}")
        except Exception as exc:  # noqa: BLE001 - a state of the wrong shape fails inside torch/peft in many ways
            path = self.writer.path / runs.CHECKPOINT / runs.STATE_FILE
            raise runs.RunFileError(
                f"{path} does not fit this run ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                "it is damaged or from another run. Fix: delete it to restart the run from step 0, or train a new run"
            ) from None
        self.state = loop
        if self.is_main:
            self.writer.truncate_logs_after(self.state["step"])
            self.writer.update_status(resumed_from_step=self.state["step"])

    # -- the end -------------------------------------------------------------------------------
    def _finish(self, started: float) -> None:
        """Restore the dev-selected state as it will be exported, evaluate it on dev and test, export, report."""
        prepared, adapted, tcfg = self.prepared, self.adapted, self.cfg.train
        self.accelerator.wait_for_everyone()  # best.pt is written by the main process
        best = self.writer.load_best()
        best_step = self.state.get("best_step")
        selection_dev = None
        if best is not None:
            restore_selected(adapted, best)  # masked exactly as the export truncates it
            best_step, selection_dev = best["step"], best["dev"]
        results: dict[str, Any] = {}
        probabilities: dict[str, Any] = {}
        for name in ("dev", "test"):
            probabilities[name] = self._probabilities(name)
            results[name] = metrics_from_probabilities(prepared.splits[name].labels, probabilities[name], prepared.task.multi_label)
        if not self.is_main:
            return
        for name, probs in probabilities.items():  # per sequence, for paired comparisons between runs
            self.writer.write_predictions(name, prepared.splits[name].labels, probs, prepared.task.label_names)
        self.writer.publish_export(adapted.export)
        run = runs.Run(self.writer.path)
        history = run.metrics()  # read once: the evaluation count and the learning check
        parameters = {**adapted.parameter_counts(), "exported": run.exported_parameters()}
        wall = self.state["elapsed"]
        report = {
            "selected_step": best_step,
            "selection": f"best dev {tcfg.metric_for_best} over {len([m for m in history if 'dev_loss' in m])} evaluations",
            "dev": results["dev"],  # of the exported model (pruned singular values masked)
            "test": results["test"],
            "dev_at_selection": selection_dev,  # as measured while training, when this state was selected
            "parameters": parameters,
            "total_step": self.total_step,
            "plan": self.plan.summary(),
            "steps_done": self.state["step"],
            "wall_time_s": round(wall, 2),
            "train_sequences_per_s": round(self.state["seen"] / wall, 2) if wall > 0 else None,
            "n_train": len(prepared.splits["train"]),
            "label_names": prepared.task.label_names,
            "multi_label": prepared.task.multi_label,
            "device": str(self.accelerator.device),
            "precision": prepared.loaded.precision,
            "pooling": prepared.loaded.pooling,
            "eval_strands": self.cfg.data.eval_strands,  # "both": dev and test scored on both strands, as predict does
            "update_norms": {k: round(v, 6) for k, v in adapted.update_norms().items()},  # of the exported adapter
            "num_processes": self.accelerator.num_processes,
            "allocations_checked_identical_across_processes": self.masks_checked,
        }
        findings = learning_findings(history, finished=True)
        report["learning"] = [f.to_dict() for f in findings]  # empty: no sign that learning failed
        for finding in findings:
            warnings.warn(f"{finding.summary} {finding.advice} (setting: {finding.setting})", LearningWarning, stacklevel=1)
        if adapted.rank_pattern():
            report["final_ranks"] = {short_module_name(k): int(sum(v)) for k, v in adapted.rank_pattern().items()}
        self.writer.write_report(report)


def one_line_error(exc: BaseException) -> str:
    """``Type: message`` on one line (at most 500 characters): what status.json records as the error."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 500 else text[:497] + "..."


def _linear_warmup_decay(warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _forget_other_precision(precision: str) -> None:
    """Let one process train runs of different precisions one after another (studies, notebooks, tests).

    Accelerate keeps its mixed-precision choice in a process-wide singleton and refuses a second
    Accelerator with another one; its own reset drops that choice while keeping the distributed setup.
    """
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and str(state.get("_mixed_precision", precision)) != precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(cfg: LingoConfig) -> Path:
    """Train ``cfg`` into a new run directory under ``cfg.output_dir``; return its path.

    Data, model and encoding are loaded and validated first: bad input raises before any run
    directory exists, so no half-made run is left behind.
    """
    if int(os.environ.get("RANK", "0") or 0) == 0:  # the main process creates the run (others would see it made)
        check_output_dir(cfg)  # before loading anything: a name clash or a read-only folder fails in a second
    prepared = prepare(cfg)
    return Trainer(cfg, _create_shared_run(cfg), prepared=prepared).run()


def check_output_dir(cfg: LingoConfig) -> None:
    """Refuse a run that cannot be created: ``run_name`` taken, ``output_dir`` a file or not writable."""
    root = Path(cfg.output_dir).expanduser()
    if cfg.run_name:
        target = root / cfg.run_name
        if target.exists() or target.is_symlink():
            raise ConfigError(
                f"run_name {cfg.run_name!r}: {target} already exists; choose another run_name, or leave it out for a generated one"
            )
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"output_dir {root}: {existing} is a file, not a folder; choose another output_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir {root}: {existing} is not writable, so no run directory can be created there; choose another output_dir")


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


def _run_config(run: runs.Run, trust_remote_code: bool) -> LingoConfig:
    """A run directory's own config (refused when damaged), with ``model.trust_remote_code`` granted only by the caller."""
    cfg = checked_run_config(run)
    if cfg.model.trust_remote_code and not trust_remote_code:
        raise ConfigError(
            f"{run.path / runs.CONFIG} sets model.trust_remote_code: true, so training it would run Python code shipped "
            f"with model {cfg.model.name!r}; a run directory cannot switch that on by itself. If you trust it, "
            "pass --trust-remote-code (command line) or trust_remote_code=True"
        )
    return cfg


def train_queued(run_dir: str | Path, trust_remote_code: bool = False) -> Path:
    """Train a run directory created ahead (state ``queued``, e.g. by the app's launcher) from its config.yaml."""
    run = runs.load_run(run_dir)
    if run.state != "queued":
        raise RuntimeError(f"{run_dir} is in state '{run.state}', not 'queued'; use --resume to continue a stopped run")
    writer = runs.RunWriter(run.path)
    if writer.cancel_requested():
        writer.set_status("cancelled", finished=runs.now())
        return run.path
    return Trainer(_run_config(run, trust_remote_code), writer).run()


def resume(run_dir: str | Path, trust_remote_code: bool = False) -> Path:
    """Continue a killed, failed or cancelled run from its last checkpoint, with its own config.

    A run stopped before its first checkpoint restarts from step 0, its earlier records dropped.
    """
    run = runs.load_run(run_dir)
    state = run.state
    if state == "running":
        raise RuntimeError(f"{run_dir} is still running (pid {run.status.get('pid')}); it cannot be resumed twice")
    if state == "done":
        raise RuntimeError(f"{run_dir} has finished; there is nothing to resume")
    cfg = _run_config(run, trust_remote_code)  # ConfigError naming config.yaml when it is damaged
    writer = runs.RunWriter(run.path)
    problem = run.checkpoint_damage((runs.STATE_FILE,))  # cheap: the file's head and tail, not its tensors
    if problem:
        raise runs.RunFileError(
            f"{run.path}: {problem}, so the run cannot resume from it. Fix: delete "
            f"{run.path / runs.CHECKPOINT / runs.STATE_FILE} to restart the run from step 0, or train a new run"
        )
    writer.clear_cancel()
    has_state = writer.has_state()
    return Trainer(cfg, writer, resume=has_state, restart=not has_state).run()
