"""LoRA through peft: a fixed rank ``r`` in every targeted layer."""

from ..registry import MethodSpec, register_method
from .config import LoraSettings

register_method(
    MethodSpec(
        name="lora",
        summary="LoRA: a fixed rank r in every targeted layer",
        model="lingo_core.adapters.lora.model:LoRA",
        settings=LoraSettings,
    )
)

__all__ = ["LoraSettings"]
