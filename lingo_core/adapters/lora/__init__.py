"""LoRA through peft: a fixed rank ``r`` in every targeted layer."""

from ..registry import MethodSpec, register_method
from .config import LoraSettings

register_method(
    MethodSpec(
        name="lora",
        summary="LoRA: a fixed rank r in every targeted layer",
        model="lingo_core.adapters.lora.model:LoRA",
        settings=LoraSettings,
        recommended_lr=0.0005,
        recommended_lr_source="stable on every task and seed of the medium study (docs/results.md); at 1e-3 it collapsed to chance on tf/4 and on one prom_core_tata seed",
    )
)

__all__ = ["LoraSettings"]
