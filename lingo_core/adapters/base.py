"""The interface every method offers the trainer, inference and the plan (:class:`AdaptedModel`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from safetensors.torch import load_file, save_file

from .. import runs

if TYPE_CHECKING:
    from ..models import LoadedModel


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

    Subclasses are built as ``Method(loaded, adapter_cfg, total_step, seed)`` by
    :func:`lingo_core.adapters.build_adapter`. The trainer calls :meth:`after_optimizer_step`
    after every optimizer step (before ``zero_grad``); methods with a rank budget reallocate
    there and return a record for ``ranks.jsonl``. The defaults here are those of a method
    without a rank budget.
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

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The trainable parameters as optimizer groups (one group at ``lr`` unless a method says otherwise)."""
        return [{"params": [p for p in self.model.parameters() if p.requires_grad], "lr": lr}]

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

    def adapted_modules(self) -> list[str]:
        """Short names of the modules the method adds weights to (none for head/full)."""
        return []

    def update_norms(self) -> dict[str, float]:
        """Per adapted module, the Frobenius norm of the update the adapter adds to its weight, ‖ΔW‖."""
        return {}

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

    # -- rank budget (methods registered with rank_budget=True override these) -------------------
    def budget_modules(self) -> list[str]:
        """Full names of the singular-value parameters that share the rank budget (none here)."""
        return []

    def rank_pattern(self) -> Optional[dict[str, list[bool]]]:
        return None

    def apply_rank_pattern(self, pattern: Optional[dict[str, list[bool]]]) -> None:
        """Make ``pattern`` the active pattern and mask what it prunes, exactly as :meth:`export` truncates."""

    def allocator_state(self) -> dict[str, Any]:
        return {}

    def load_allocator_state(self, state: dict[str, Any]) -> None:
        return None

    def load_selected(self, trainable: dict[str, torch.Tensor], rank_pattern: Optional[dict[str, list[bool]]]) -> None:
        """Restore a dev-selected state so that the model computes what its export computes."""
        self.load_trainable_state(trainable)
        self.apply_rank_pattern(rank_pattern)

    # -- export ----------------------------------------------------------------------------
    def export(self, directory: Path) -> None:
        """Write the trained weights: peft format for peft methods, safetensors otherwise."""
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {n: t.contiguous() for n, t in self.trainable_state().items()}
        save_file(tensors, str(runs.export_weights_path(directory)))
        runs.write_export_info(directory, self.method, runs.EXPORT_TRAINABLE)

    @classmethod
    def load_export(cls, loaded: "LoadedModel", directory: Path) -> torch.nn.Module:
        """The backbone of ``loaded`` with the weights :meth:`export` wrote (for inference)."""
        state = load_file(str(runs.export_weights_path(directory)))
        params = dict(loaded.model.named_parameters())
        with torch.no_grad():
            for name, tensor in state.items():
                if name not in params:
                    raise KeyError(f"{directory}: tensor {name} not found in the model")
                params[name].copy_(tensor)
        return loaded.model
