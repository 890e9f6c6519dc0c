"""LoRA through peft."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..config import AdapterConfig
from .base import EXPORT_INFO, AdaptedModel


def peft_common_kwargs(
    cfg: AdapterConfig,
    target_modules: Union[list[str], str],
    new_token_ids: list[int],
    family: str,
) -> dict[str, Any]:
    """Arguments shared by peft's LoraConfig and AdaLoraConfig."""
    from peft import TaskType

    kwargs: dict[str, Any] = {
        "task_type": TaskType.SEQ_CLS,
        "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout,
        "target_modules": cfg.target_modules or target_modules,
        "fan_in_fan_out": family == "gpt2",  # GPT-2 uses Conv1D layers
    }
    if new_token_ids:
        kwargs["trainable_token_indices"] = list(new_token_ids)
    return kwargs


class PeftAdapted(AdaptedModel):
    """Any peft-wrapped model; exports in peft format (``PeftModel.from_pretrained`` loads it)."""

    def export(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # The embedding matrix is never trained here (new nucleotide rows are saved by peft's
        # trainable-token layer), so it is not copied into every adapter (48 MB for MiniLM).
        with warnings.catch_warnings():
            # AdaLoRA modules pruned to rank 0 have (0, d) tensors, which peft mistakes for
            # unsharded ZeRO-3/FSDP parameters; they load back correctly
            warnings.filterwarnings("ignore", message=".*LoRA tensor\\(s\\) have invalid shape")
            self.model.save_pretrained(str(directory), save_embedding_layers=False)
        (directory / EXPORT_INFO).write_text(f'{{"method": "{self.method}", "format": "peft"}}')


class LoRA(PeftAdapted):
    """Plain LoRA of rank ``r`` on the target modules."""

    method = "lora"

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: AdapterConfig,
        target_modules: Union[list[str], str],
        new_token_ids: Optional[list[int]] = None,
        family: str = "",
    ) -> None:
        from peft import LoraConfig, get_peft_model

        peft_config = LoraConfig(r=cfg.r, **peft_common_kwargs(cfg, target_modules, new_token_ids or [], family))
        super().__init__(get_peft_model(model, peft_config), new_token_ids)
