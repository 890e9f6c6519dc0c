"""Parameter-efficient methods behind one interface (:class:`AdaptedModel`).

``build_adapter`` maps ``adapter.method`` to a builder: ``lora`` and ``adalora`` are peft's,
``ars`` is peft's AdaLoRA layers with the adaptive rank sampling allocator, ``head`` and
``full`` are the baselines.
"""

from __future__ import annotations

from ..config import AdapterConfig
from ..models import LoadedModel
from .adalora import AdaLoRA, resolve_schedule
from .ars import ARS
from .base import AdaptedModel, load_exported_trainable, short_module_name
from .baselines import FullFineTune, HeadOnly
from .lora import LoRA

METHODS = ("lora", "adalora", "ars", "head", "full")


def build_adapter(loaded: LoadedModel, cfg: AdapterConfig, total_step: int, seed: int = 0) -> AdaptedModel:
    """Apply ``cfg.method`` to ``loaded.model`` (in place) and return the adapted model."""
    model, new_ids = loaded.model, loaded.new_token_ids
    if cfg.method == "head":
        return HeadOnly(model, new_ids)
    if cfg.method == "full":
        return FullFineTune(model, new_ids)
    targets = cfg.target_modules or loaded.target_modules
    if cfg.method == "lora":
        return LoRA(model, cfg, targets, new_ids, loaded.family)
    if cfg.method == "adalora":
        return AdaLoRA(model, cfg, targets, total_step, new_ids, loaded.family, seed)
    if cfg.method == "ars":
        return ARS(model, cfg, targets, total_step, new_ids, loaded.family, seed)
    raise ValueError(f"adapter.method must be one of {list(METHODS)}, got {cfg.method!r}")


__all__ = [
    "ARS",
    "METHODS",
    "AdaLoRA",
    "AdaptedModel",
    "FullFineTune",
    "HeadOnly",
    "LoRA",
    "build_adapter",
    "load_exported_trainable",
    "resolve_schedule",
    "short_module_name",
]
