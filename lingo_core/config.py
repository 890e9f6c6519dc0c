"""Typed run configuration: dataclasses, YAML loading and ``--set dotted.key=value`` overrides.

A config is the single source of truth for a run. ``config.yaml`` in a run directory is the
fully resolved config (every default filled in), so a run can be reproduced or resumed from it.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config file or override is invalid; the message says which key and how to fix it."""


@dataclass
class SplitConfig:
    """How to split a single table or FASTA file into train/dev/test."""

    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42
    stratify: bool = True


@dataclass
class DataConfig:
    """Where the data comes from and how it is validated.

    ``task`` is a registry name (``demo/motifs``, ``gue/prom_core_tata``, ``gue/tf/0``,
    ``gue/EMP/H3``...) or a path to a GUE-style folder, a CSV file or a FASTA file.
    """

    task: str = "demo/motifs"
    root: Optional[str] = None  # data root for registry names; default $LINGO_DATA_DIR or ../shared/data
    sequence_column: str = "sequence"
    label_columns: list[str] = field(default_factory=lambda: ["label"])
    id_column: Optional[str] = None
    labels_table: Optional[str] = None  # FASTA: CSV with id,label columns instead of `>id|label` headers
    split: SplitConfig = field(default_factory=SplitConfig)
    iupac: str = "n"  # "n": map other IUPAC codes (R, Y, ...) to N; "reject": raise an error
    duplicates: str = "report"  # "report" or "remove" exact train/dev/test overlaps (from train)
    max_train: Optional[int] = None  # stratified subsample of the training split (documented in report)
    max_eval: Optional[int] = None  # subsample of dev and test (stratified); None keeps all
    subsample_seed: int = 0


@dataclass
class EncodingConfig:
    """Language prefix and sequence tokenisation."""

    prefix: str = "paper"  # "paper", "rich", "none", or a custom template containing {sequence}
    domain: Optional[str] = None  # defaults to the task's own domain, e.g. "DNA Promoter"
    species: Optional[str] = None
    task_description: Optional[str] = None
    sequence: str = "native"  # "native", "nucleotide" or "kmer"
    k: int = 6  # k-mer length for sequence="kmer"
    kmer_stride: Optional[int] = None  # default: k (non-overlapping)
    max_length: int = 512  # tokens; the sequence part is truncated (never the prompt) with a warning


@dataclass
class ModelConfig:
    """Backbone selection; ``name`` is a registry key, a Hugging Face id or a local folder."""

    name: str = "minilm-l6"
    trust_remote_code: bool = False
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    # "auto": bf16 autocast on CUDA and on CPUs with AMX / AVX-512 BF16, fp32 elsewhere; or
    # "float32", "bfloat16", "float16"
    dtype: str = "auto"
    # what the classifier reads: "auto" (mean for sentence-transformers encoders such as MiniLM,
    # the last real token for decoders, the model's CLS head otherwise), "cls", "mean", "last", or
    # "native" (the head transformers builds, as runs made before this setting used)
    pooling: str = "auto"


class ConfigWarning(UserWarning):
    """A config used an old key name; it was read with the new one (the message says which)."""


@dataclass
class AdapterConfig:
    """The parameter-efficient method and one settings section per registered method.

    ``method`` names a method of :mod:`lingo_core.adapters` (``lora``, ``adalora``, ``ars``,
    ``head``, ``full`` or one registered by you). Each method with settings has its own section,
    ``adapter.<method>``; a method reads its own section and those of the methods it extends
    (``ars`` reads ``lora``, ``adalora`` and ``ars``). Sections are attributes:
    ``cfg.adapter.adalora.init_r``.
    """

    method: str = "ars"
    sections: dict[str, Any] = field(default_factory=dict)  # section name -> settings dataclass instance

    def __post_init__(self) -> None:
        for name, cls in _settings_classes().items():
            if name not in self.sections:
                self.sections[name] = cls()

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"AdapterConfig has no attribute or section {name!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        for name, settings in self.sections.items():
            out[name] = dataclasses.asdict(settings)
        return out

    def used_sections(self) -> list[str]:
        """The sections this config's method reads, base first."""
        from .adapters import sections_of

        return sections_of(self.method)


def _settings_classes() -> dict[str, type]:
    from .adapters import settings_classes  # registers the built-in methods (no torch import)

    return settings_classes()


def _build_adapter(values: dict[str, Any], prefix: str) -> AdapterConfig:
    """Parse ``adapter``: ``method`` plus one section per method; old flat keys are moved into their
    section with a :class:`ConfigWarning` (``adapter.init_r`` -> ``adapter.adalora.init_r``)."""
    classes = _settings_classes()
    values = dict(values)
    method = values.pop("method", AdapterConfig.method)
    sections_in: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in classes:
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{prefix}.{key}: expected a mapping of {key} settings, got {value!r}")
            sections_in[key] = dict(value or {})
        else:
            flat[key] = value
    owner = {f.name: name for name, cls in classes.items() for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in flat if k not in owner)
    if unknown:
        valid = ["method"] + [f"{name}.{f.name}" for name, cls in classes.items() for f in dataclasses.fields(cls)]
        raise ConfigError(f"unknown config key(s) {[f'{prefix}.{k}' for k in unknown]}; valid keys under '{prefix}': {valid}")
    for key, value in flat.items():
        sections_in.setdefault(owner[key], {})[key] = value
    if flat:
        renamed = ", ".join(f"{prefix}.{k} -> {prefix}.{owner[k]}.{k}" for k in flat)
        warnings.warn(
            f"renamed config keys were read with their new names ({renamed}); rename them in the config file",
            ConfigWarning,
            stacklevel=4,
        )
    sections = {name: _build(cls, sections_in.get(name, {}), f"{prefix}.{name}") for name, cls in classes.items()}
    return AdapterConfig(method=_coerce(method, str, f"{prefix}.method"), sections=sections)


@dataclass
class TrainConfig:
    """Optimisation, evaluation and model selection."""

    epochs: float = 3.0
    batch_size: int = 16
    eval_batch_size: int = 64
    grad_accum: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    max_steps: Optional[int] = None  # caps the number of optimizer steps (smoke tests, demos)
    eval_every: Optional[int] = None  # optimizer steps between dev evaluations; None: ~4 per epoch
    checkpoint_every: Optional[int] = None  # default: every evaluation
    metric_for_best: str = "mcc"
    early_stopping_patience: Optional[int] = None  # evaluations without improvement; None: off
    seed: int = 42
    progress_bar: bool = True


@dataclass
class LingoConfig:
    """A complete run: data -> encoding -> model + adapter -> training."""

    data: DataConfig = field(default_factory=DataConfig)
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = "runs"
    run_name: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in out.items():
            if isinstance(value, AdapterConfig):
                out[name] = value.to_dict()
            elif dataclasses.is_dataclass(value):
                out[name] = dataclasses.asdict(value)
        return out


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise a ConfigError naming ``key``."""
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin is Union:
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        # try the more specific types first (int before float, then str)
        candidates = sorted((o for o in options if o is not type(None)), key=_type_rank)
        for option in candidates:
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        names = " or ".join(getattr(o, "__name__", str(o)) for o in candidates)
        raise ConfigError(f"{key}: expected {names}, got {value!r}")
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        if annotation is AdapterConfig:
            return _build_adapter(value, key)
        return _build(annotation, value, key)
    if origin is list:
        (item_type,) = get_args(annotation)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "yes", "1", "false", "no", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _type_rank(t: Any) -> int:
    return {bool: 0, int: 1, float: 2}.get(t, 3)


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key(s) {sorted(where + u for u in unknown)}; "
            f"valid keys under '{prefix or 'top level'}': {sorted(names)}"
        )
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key)
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> LingoConfig:
    """Build a validated :class:`LingoConfig` from a nested dict (missing keys take defaults)."""
    cfg = _build(LingoConfig, values or {})
    validate_config(cfg)
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``dotted.key=value`` (value parsed as YAML) into a key path and a value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like dotted.key=value, e.g. train.max_steps=20")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    value = yaml.safe_load(raw) if raw.strip() else ""
    return path, value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a nested dict in place and return it."""
    for text in overrides:
        path, value = parse_override(text)
        node = values
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return values


def load_config(path: Optional[Union[str, Path]] = None, overrides: Optional[list[str]] = None) -> LingoConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``--set`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    apply_overrides(values, list(overrides or []))
    try:
        return config_from_dict(values)
    except ConfigError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from None


def save_config(cfg: LingoConfig) -> str:
    """The YAML text of a fully resolved config."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def validate_config(cfg: LingoConfig) -> None:
    """Check value ranges and choices; raise :class:`ConfigError` with the key and the fix."""
    a, t, e, d = cfg.adapter, cfg.train, cfg.encoding, cfg.data
    from .adapters import method_names

    _choice("adapter.method", a.method, tuple(method_names()))
    for name, settings in a.sections.items():
        check = getattr(settings, "validate", None)
        if check is not None:
            try:
                check()
            except ValueError as exc:
                raise ConfigError(f"adapter.{name}.{exc}") from None
    _choice("encoding.sequence", e.sequence, ("native", "nucleotide", "kmer"))
    _choice("model.pooling", cfg.model.pooling, ("auto", "native", "cls", "mean", "last"))
    _choice("data.iupac", d.iupac, ("n", "reject"))
    _choice("data.duplicates", d.duplicates, ("report", "remove"))
    if e.sequence == "kmer" and not 1 <= e.k <= 12:
        raise ConfigError(f"encoding.k must be between 1 and 12, got {e.k}")
    if e.prefix not in ("paper", "rich", "none") and "{sequence}" not in e.prefix:
        raise ConfigError(
            "encoding.prefix must be 'paper', 'rich', 'none' or a template containing {sequence}, "
            f"got {e.prefix!r}"
        )
    if t.batch_size < 1 or t.grad_accum < 1:
        raise ConfigError("train.batch_size and train.grad_accum must be >= 1")
    if t.max_steps is not None and t.max_steps < 1:
        raise ConfigError(f"train.max_steps must be >= 1, got {t.max_steps}")
    if t.epochs <= 0:
        raise ConfigError(f"train.epochs must be > 0, got {t.epochs}")
    _choice("train.metric_for_best", t.metric_for_best, ("mcc", "f1", "accuracy", "auroc", "auprc", "loss"))


def _choice(key: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{key} must be one of {list(options)}, got {value!r}")


def default_data_root() -> Optional[Path]:
    """``$LINGO_DATA_DIR``, else ``../shared/data`` next to the project when it exists."""
    env = os.environ.get("LINGO_DATA_DIR")
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None
