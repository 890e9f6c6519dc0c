"""AdaLoRA through peft: SVD adapters whose total rank shrinks on a cubic schedule by importance."""

from ..registry import MethodSpec, register_method
from .config import AdaLoraSettings, resolve_schedule

register_method(
    MethodSpec(
        name="adalora",
        summary="AdaLoRA: SVD adapters, rank budget shrinks on a cubic schedule (top-b by importance)",
        model="lingo_core.adapters.adalora.model:AdaLoRA",
        settings=AdaLoraSettings,
        extends="lora",
        rank_budget=True,
        recommended_lr=0.004,
        recommended_lr_source="chosen on dev in the medium study (docs/results.md), against 1e-3, 2e-3 and 8e-3: λ starts at 0 and needs a larger rate",
    )
)

__all__ = ["AdaLoraSettings", "resolve_schedule"]
