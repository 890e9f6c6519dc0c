"""ARS settings (``adapter.ars``): what adaptive rank sampling adds to AdaLoRA's budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass
class ARSSettings:
    reintroduce_rate: float = field(default=0.1, metadata={"label": "Reintroduction rate rho", "help": "share of the budget filled by sampling outside the top-b", "min": 0.0, "max": 0.9, "step": 0.01})
    # tau for p ~ exp(z-score / tau), or "uniform"
    temperature: Union[float, str] = field(default=1.0, metadata={"label": "Sampling temperature tau (or 'uniform')", "help": "p ~ exp(z / tau) over the standardised importance z; 'uniform' ignores the scores"})
    reintroduce: str = field(default="restore", metadata={"label": "Reintroduced lambda", "choices": ["restore", "regrow"], "help": "restore: the last non-zero lambda; regrow: the value its gradient regrew"})
    rho_decay: bool = field(default=True, metadata={"label": "rho decays over the schedule", "help": "linearly from reintroduce_rate to rho_min"})
    # the share still sampled at the last allocation: 0 makes the exported pattern AdaLoRA's top-b;
    # above 0 the final (exported) pattern keeps sampled triplets, so ARS can end apart from AdaLoRA
    rho_min: float = field(default=0.0, metadata={"label": "rho at the last allocation", "help": "the final, exported pattern samples this share of the budget (0: deterministic top-b)", "min": 0.0, "max": 0.9, "step": 0.01})
    mode: str = field(default="sampling", metadata={"label": "Mode", "choices": ["sampling", "paper"], "help": "paper: the published code's coin-flip pruning at a constant rho, the last pattern kept to the end, for comparison"})

    def validate(self) -> None:
        if not 0.0 <= self.reintroduce_rate < 1.0:
            raise ValueError(f"reintroduce_rate must be in [0, 1), got {self.reintroduce_rate}")
        if not 0.0 <= self.rho_min <= self.reintroduce_rate:
            raise ValueError(f"rho_min must be in [0, reintroduce_rate={self.reintroduce_rate}], got {self.rho_min}")
        if isinstance(self.temperature, str) and self.temperature != "uniform":
            raise ValueError(f"temperature must be a positive number or 'uniform', got {self.temperature!r}")
        if isinstance(self.temperature, float) and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.reintroduce not in ("restore", "regrow"):
            raise ValueError(f"reintroduce must be one of ['restore', 'regrow'], got {self.reintroduce!r}")
        if self.mode not in ("sampling", "paper"):
            raise ValueError(f"mode must be one of ['sampling', 'paper'], got {self.mode!r}")
