"""AdaLoRA settings (``adapter.adalora``): the rank budget and its cubic schedule. ARS reads them too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass
class AdaLoraSettings:
    """Defaults follow AdaLoRA's published GLUE scripts (QingruZhang/AdaLoRA, NLU/): orthogonal
    regulariser 0.1, importance EMAs 0.85, and a budget that decreases over about half of training
    (there tinit 6-8k and tfinal 22-50k of 63-86k steps; here tinit 10 % and tfinal 40 % of the steps)."""

    init_r: int = field(default=8, metadata={"label": "Initial rank per module", "min": 1, "max": 256})
    target_r: int = field(default=4, metadata={"label": "Target rank per module (average)", "min": 1, "max": 256})
    # int: steps; float in (0, 1): a fraction of all steps
    tinit: Union[int, float] = field(default=0.1, metadata={"label": "tinit (steps, or a fraction < 1 of all steps)", "help": "warm-up with the full budget", "min": 0.0, "step": 0.05})
    tfinal: Union[int, float] = field(default=0.4, metadata={"label": "tfinal (steps, or a fraction < 1)", "help": "final fine-tuning at the target budget", "min": 0.0, "step": 0.05})
    deltaT: int = field(default=10, metadata={"label": "deltaT (steps between allocations)", "min": 1, "max": 10_000})
    beta1: float = field(default=0.85, metadata={"label": "beta1 (importance EMA)", "min": 0.01, "max": 0.999, "advanced": True})
    beta2: float = field(default=0.85, metadata={"label": "beta2 (uncertainty EMA)", "min": 0.01, "max": 0.999, "advanced": True})
    orth_reg_weight: float = field(default=0.1, metadata={"label": "Orthogonality weight", "min": 0.0, "max": 10.0, "step": 0.1})
    # learning-rate multiplier for the singular values lambda (they start at 0 and move by about
    # lr per step, so on short budgets the SVD adapters barely change the model)
    lambda_lr_scale: float = field(default=1.0, metadata={"label": "lambda learning-rate multiplier", "min": 0.01, "max": 1000.0, "advanced": True})

    def validate(self) -> None:
        for name in ("init_r", "target_r", "deltaT"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.target_r > self.init_r:
            raise ValueError(f"target_r ({self.target_r}) must not exceed init_r ({self.init_r})")
        if self.tinit < 0 or self.tfinal < 0:
            raise ValueError(f"tinit and tfinal must be >= 0, got {self.tinit}, {self.tfinal}")
        if not self.lambda_lr_scale > 0:
            raise ValueError(f"lambda_lr_scale must be > 0, got {self.lambda_lr_scale}")


def resolve_schedule(settings: AdaLoraSettings, total_step: int) -> tuple[int, int]:
    """``tinit``/``tfinal`` in steps (floats in (0, 1) are fractions of ``total_step``), checked."""

    def steps(value: Union[int, float]) -> int:
        if isinstance(value, float) and 0 < value < 1:
            return int(round(value * total_step))
        return int(value)

    tinit, tfinal = steps(settings.tinit), steps(settings.tfinal)
    if tinit < 0 or tfinal < 0:
        raise ValueError(f"adapter.adalora.tinit and tfinal must be >= 0, got {settings.tinit}, {settings.tfinal}")
    if tinit >= total_step - tfinal:
        raise ValueError(
            f"the rank budget schedule is empty: tinit={tinit} steps must be < total_step - tfinal = "
            f"{total_step} - {tfinal}; lower adapter.adalora.tinit/tfinal or train for more steps"
        )
    return tinit, tfinal
