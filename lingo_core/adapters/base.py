"""The interface every method (lora, adalora, ars, head, full) offers the trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

EXPORT_INFO = "lingo_adapter.json"


def short_module_name(param_name: str) -> str:
    """``base_model.model.bert.encoder.layer.0.attention.self.query.lora_E.default`` -> ``0.attention.self.query``."""
    name = param_name
    for marker in (".lora_E", ".lora_A", ".lora_B", ".%s"):
        name = name.split(marker)[0]
    for prefix in ("base_model.model.", "model.", "bert.encoder.layer.", "decoder.layers.", "layers.", "h."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


class AdaptedModel:
    """A backbone with a parameter-efficient method applied.

    The trainer calls :meth:`after_optimizer_step` after every optimizer step (before
    ``zero_grad``); methods with a rank budget reallocate there and return a record for
    ``ranks.jsonl``.
    """

    method: str = "base"

    def __init__(self, model: torch.nn.Module, new_token_ids: Optional[list[int]] = None) -> None:
        self.model = model
        self.new_token_ids = list(new_token_ids or [])

    # -- training hooks ----------------------------------------------------------------------
    def after_optimizer_step(self, global_step: int) -> Optional[dict[str, Any]]:
        """Called after ``optimizer.step()`` and before ``zero_grad()``; returns a ranks record or None."""
        return None

    def regularizer(self) -> Optional[torch.Tensor]:
        """Extra loss term added to the task loss (AdaLoRA's orthogonal regulariser); None if none."""
        return None

    # -- parameters -------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, float]:
        """Trainable and total parameters; trainable embedding rows count only the new tokens."""
        trainable = 0
        total = 0
        for _, param in self.model.named_parameters():
            total += param.numel()
            if param.requires_grad:
                trainable += param.numel()
        trainable += self._extra_trainable()
        return {"trainable": int(trainable), "total": int(total), "percent": 100.0 * trainable / max(total, 1)}

    def _extra_trainable(self) -> int:
        return 0

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Copies of every trainable tensor at full rank (for checkpoints and dev-set selection)."""
        return {n: p.detach().clone().cpu() for n, p in self.model.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        missing = [n for n in state if n not in params]
        if missing:
            raise KeyError(f"checkpoint tensors not in the model: {missing[:5]}")
        with torch.no_grad():
            for name, tensor in state.items():
                params[name].copy_(tensor.to(params[name].device))

    def allocator_state(self) -> dict[str, Any]:
        return {}

    def load_allocator_state(self, state: dict[str, Any]) -> None:
        return None

    def rank_pattern(self) -> Optional[dict[str, list[bool]]]:
        return None

    # -- export ----------------------------------------------------------------------------
    def export(self, directory: Path) -> None:
        """Write the trained weights: peft format for peft methods, safetensors otherwise."""
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {n: t.contiguous() for n, t in self.trainable_state().items()}
        save_file(tensors, str(directory / "trainable.safetensors"))
        (directory / EXPORT_INFO).write_text(json.dumps({"method": self.method, "format": "lingo-trainable"}))


def load_exported_trainable(model: torch.nn.Module, directory: Path) -> None:
    """Load ``trainable.safetensors`` written by :meth:`AdaptedModel.export` into ``model``."""
    state = load_file(str(directory / "trainable.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            if name not in params:
                raise KeyError(f"{directory}: tensor {name} not found in the model")
            params[name].copy_(tensor)
