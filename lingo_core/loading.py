"""Load a trained run as it was trained: base model + adapter + encoding + language prefix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch

from . import runs
from .config import LingoConfig, config_from_dict
from .encoding import SequenceEncoder
from .models import LoadedModel, load_model


class RunLoadError(RuntimeError):
    """A run directory cannot be loaded for inference; the message says why and what to do."""


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


def _task_info(run: runs.Run) -> dict[str, Any]:
    info = run.data_report() or {}
    if "label_names" not in info:
        raise RunLoadError(
            f"{run.path} has no data_report.json with label names: the run failed before its data was loaded"
        )
    return info


def load_trained(run_dir: Union[str, Path], device: Optional[str] = None) -> TrainedModel:
    """Rebuild the model of a run: the exported adapter if the run finished, else its best checkpoint."""
    from .adapters import build_adapter, load_exported_trainable

    run = runs.load_run(run_dir)
    cfg = config_from_dict(run.config)
    if device:
        cfg.model.device = device
    info = _task_info(run)
    loaded = load_model(cfg.model, len(info["label_names"]), info["multi_label"], cfg.encoding)
    encoder = SequenceEncoder(
        loaded.tokenizer, cfg.encoding, domain=info.get("domain") or "DNA", species=info.get("species"), task=info.get("description")
    )
    if run.has_adapter:
        export = json.loads((run.adapter_dir / "lingo_adapter.json").read_text())
        if export["format"] == "peft":
            import warnings

            from peft import PeftModel

            with warnings.catch_warnings():
                # AdaLoRA's rank_pattern is applied by its own layers; peft's generic LoRA check
                # warns that the keys match no module, which is expected here
                warnings.filterwarnings("ignore", message="The following rank_pattern keys")
                model = PeftModel.from_pretrained(loaded.model, str(run.adapter_dir))
        else:
            load_exported_trainable(loaded.model, run.adapter_dir)
            model = loaded.model
        source = "adapter"
    else:
        best_path = run.checkpoint_dir / runs.BEST_FILE
        if not best_path.exists():
            raise RunLoadError(
                f"{run.path} has neither an exported adapter nor a best checkpoint yet; wait for its first dev evaluation"
            )
        best = torch.load(best_path, map_location="cpu", weights_only=False)
        report = run.report() or {}
        total_step = report.get("total_step") or (run.status.get("progress") or {}).get("total_step") or 1000
        adapted = build_adapter(loaded, cfg.adapter, int(total_step), seed=cfg.train.seed)
        adapted.load_trainable_state(best["trainable"])
        if best.get("rank_pattern") is not None and hasattr(adapted, "set_rank_pattern"):
            adapted.set_rank_pattern(best["rank_pattern"])
            adapted.allocator.mask_using_rank_pattern(adapted.tuner.model, best["rank_pattern"])
        model = adapted.model
        source = "best-checkpoint"
    model.to(loaded.device)
    model.eval()
    return TrainedModel(run, cfg, model, loaded, encoder, list(info["label_names"]), bool(info["multi_label"]), source)


def evaluate_run(run_dir: Union[str, Path], splits: tuple[str, ...] = ("dev", "test")) -> dict[str, Any]:
    """Re-evaluate a run's model on its own data splits (as configured in its config.yaml)."""
    from .data import load_task
    from .train import encode_split, evaluate_split

    trained = load_trained(run_dir)
    task = load_task(trained.cfg.data)
    results: dict[str, Any] = {"run": str(trained.run.path), "source": trained.source}
    for name in splits:
        split = getattr(task, name)
        encoded = encode_split(trained.encoder, split.sequences, split.labels)
        results[name] = evaluate_split(
            trained.model, encoded, trained.tokenizer.pad_token_id, task.multi_label,
            trained.cfg.train.eval_batch_size, trained.device, trained.loaded.precision,
        )
    return results
