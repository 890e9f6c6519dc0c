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
    )
)

__all__ = ["AdaLoraSettings", "resolve_schedule"]
