"""Adaptive rank sampling (ARS): AdaLoRA's peft layers with a sampling allocator, like peft's tuner folders."""

from ..registry import MethodSpec, register_method
from .config import ARSSettings

register_method(
    MethodSpec(
        name="ars",
        summary="ARS: AdaLoRA's schedule, with pruned singular values sampled back in",
        model="lingo_core.adapters.ars.model:ARS",
        settings=ARSSettings,
        extends="adalora",
        rank_budget=True,
        recommended_lr=0.004,
        recommended_lr_source="AdaLoRA's rate, chosen on dev in the medium study (docs/results.md)",
    )
)

__all__ = ["ARSSettings"]
