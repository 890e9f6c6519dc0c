"""The method registry: every parameter-efficient method, its settings and its model, by name.

A method is one folder under ``lingo_core/adapters/`` (like peft's tuners): ``config.py`` with a
settings dataclass (no torch import) and ``model.py`` with an :class:`~lingo_core.adapters.base.AdaptedModel`
subclass. Its ``__init__.py`` calls :func:`register_method`. Everything that lists methods (config
validation, the Train page's controls, the study, the Runs page's rank charts) reads this registry.

A method's settings are the section ``adapter.<name>`` of a config; a method that ``extends``
another also reads that method's section (``ars`` extends ``adalora``, which extends ``lora``,
as peft's ``AdaLoraConfig`` extends ``LoraConfig``).

Settings dataclass fields may carry UI hints in ``field(metadata=...)``: ``label``, ``help``,
``min``, ``max``, ``step``, ``choices``, ``advanced`` (shown folded), ``ui=False`` (not shown),
``inherited=False`` (not shown when the section is read by a method that extends it, e.g. LoRA's
``r`` under AdaLoRA).
A settings class may define ``validate(self)`` raising ``ValueError`` with the field name.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry."""

    name: str
    summary: str  # one line for pickers and help texts
    model: Union[str, Callable[..., Any]]  # AdaptedModel subclass, or "package.module:Class" (imported lazily)
    settings: Optional[type] = None  # dataclass of the method's own section ``adapter.<name>``
    extends: Optional[str] = None  # a method whose section this method reads too
    rank_budget: bool = False  # AdaLoRA-style budget b(t): ranks.jsonl, schedule, rank charts
    # the learning rate to start from (the Train page sets it when the method is picked), and where it comes from
    recommended_lr: Optional[float] = None
    recommended_lr_source: str = ""

    def model_class(self) -> Any:
        if isinstance(self.model, str):
            module, _, attr = self.model.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.model


_METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry (``replace`` to redefine a name); returns it."""
    if not replace and spec.name in _METHODS:
        raise ValueError(f"adapter method {spec.name!r} is already registered")
    if spec.settings is not None and not dataclasses.is_dataclass(spec.settings):
        raise TypeError(f"{spec.name}: settings must be a dataclass, got {spec.settings!r}")
    if spec.extends is not None and spec.extends not in _METHODS:
        raise ValueError(f"{spec.name} extends {spec.extends!r}, which is not registered (register it first)")
    _METHODS[spec.name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a method (tests that register a toy method clean up with this)."""
    _METHODS.pop(name, None)


def method_names() -> list[str]:
    """Registered methods in registration order."""
    return list(_METHODS)


def get_method(name: str) -> MethodSpec:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"adapter.method must be one of {method_names()}, got {name!r}") from None


def has_rank_budget(name: Optional[str]) -> bool:
    """Whether ``name`` is a registered method with an AdaLoRA-style rank budget."""
    return bool(name in _METHODS and _METHODS[name].rank_budget)


def budget_methods() -> list[str]:
    return [name for name, spec in _METHODS.items() if spec.rank_budget]


def sections_of(name: str) -> list[str]:
    """The config sections ``name`` reads, base first: ``ars`` -> ``[lora, adalora, ars]``."""
    chain: list[str] = []
    spec: Optional[MethodSpec] = get_method(name)
    while spec is not None:
        if spec.settings is not None:
            chain.append(spec.name)
        spec = _METHODS.get(spec.extends) if spec.extends else None
    return chain[::-1]


def settings_classes() -> dict[str, type]:
    """``{section name: settings dataclass}`` for every method that has settings."""
    return {name: spec.settings for name, spec in _METHODS.items() if spec.settings is not None}


def settings_fields(name: str) -> list[tuple[str, dataclasses.Field]]:
    """``(section, field)`` for every setting ``name`` reads, base first; a field marked
    ``inherited=False`` counts only for its own method (LoRA's ``r`` is not AdaLoRA's rank)."""
    classes = settings_classes()
    out = []
    for section in sections_of(name):
        for f in dataclasses.fields(classes[section]):
            if section != name and f.metadata.get("inherited", True) is False:
                continue
            out.append((section, f))
    return out
