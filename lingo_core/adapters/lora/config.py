"""LoRA settings (``adapter.lora``); AdaLoRA and ARS read the scaling, dropout and targets too (not ``r``:
their rank is ``adapter.adalora.init_r``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class LoraSettings:
    r: int = field(default=8, metadata={"label": "Rank r", "help": "LoRA rank in every targeted layer", "min": 1, "max": 256, "inherited": False})
    lora_alpha: int = field(default=32, metadata={"label": "alpha", "help": "scaling: the update is multiplied by alpha / r", "min": 1, "max": 1024})
    lora_dropout: float = field(default=0.05, metadata={"label": "dropout", "min": 0.0, "max": 0.9, "step": 0.01})
    # None: the architecture's q/k/v/fc1/fc2 equivalents (lingo_core.models.TARGET_MODULES)
    target_modules: Optional[list[str]] = field(default=None, metadata={"ui": False})

    def validate(self) -> None:
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")
        if self.lora_alpha < 1:
            raise ValueError(f"lora_alpha must be >= 1, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
