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
    rho_decay: bool = field(default=True, metadata={"label": "rho decays to 0 over the schedule"})
    mode: str = field(default="sampling", metadata={"label": "Mode", "choices": ["sampling", "paper"], "help": "paper: the published code's coin-flip pruning, for comparison"})

    def validate(self) -> None:
        if not 0.0 <= self.reintroduce_rate < 1.0:
            raise ValueError(f"reintroduce_rate must be in [0, 1), got {self.reintroduce_rate}")
        if isinstance(self.temperature, str) and self.temperature != "uniform":
            raise ValueError(f"temperature must be a positive number or 'uniform', got {self.temperature!r}")
        if isinstance(self.temperature, float) and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.reintroduce not in ("restore", "regrow"):
            raise ValueError(f"reintroduce must be one of ['restore', 'regrow'], got {self.reintroduce!r}")
        if self.mode not in ("sampling", "paper"):
            raise ValueError(f"mode must be one of ['sampling', 'paper'], got {self.mode!r}")
