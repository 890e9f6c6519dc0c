"""Parameter-efficient methods as a registry, one folder per method (like peft's tuners).

Importing this package registers the built-in methods (``lora``, ``adalora``, ``ars``, ``head``,
``full``) without importing torch: each folder's ``__init__`` registers a settings dataclass and
the dotted path of its model class. Adding a method is one new folder here (or one
:func:`register_method` call from your own code): config validation, the Train page, the study
and the rank charts read the registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from .registry import (
    MethodSpec,
    budget_methods,
    get_method,
    has_rank_budget,
    method_names,
    register_method,
    sections_of,
    settings_classes,
    settings_fields,
    unregister_method,
)

if TYPE_CHECKING:
    from ..config import AdapterConfig
    from ..models import LoadedModel
    from .base import AdaptedModel

# the built-in methods first (in this order: a method is registered after the one it extends),
# then any other method folder dropped into this package
for _name in ("lora", "adalora", "ars", "head", "full"):
    importlib.import_module(f"{__name__}.{_name}")
for _info in pkgutil.iter_modules(__path__):
    if _info.ispkg:
        importlib.import_module(f"{__name__}.{_info.name}")


def build_adapter(loaded: "LoadedModel", cfg: "AdapterConfig", total_step: int, seed: int = 0) -> "AdaptedModel":
    """Apply ``cfg.method`` to ``loaded.model`` (in place) and return the adapted model."""
    return get_method(cfg.method).model_class()(loaded, cfg, total_step, seed)


__all__ = [
    "MethodSpec",
    "budget_methods",
    "build_adapter",
    "get_method",
    "has_rank_budget",
    "method_names",
    "register_method",
    "sections_of",
    "settings_classes",
    "settings_fields",
    "unregister_method",
]
