"""Typed run configuration: dataclasses, YAML loading and ``--set dotted.key=value`` overrides.

A config is the single source of truth for a run. ``config.yaml`` in a run directory is the
fully resolved config (every default filled in), so a run can be reproduced or resumed from it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import re
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
    # "reverse_complement": each training sequence is read on a random strand in each epoch (the same
    # number of steps; for strand-symmetric tasks such as TF binding, not for strand-specific ones such
    # as promoters); dev and test are read as given, so the reported model is the exported one
    augment: str = "none"
    # up to this many bases dropped at random from each end of a training sequence, drawn anew in each
    # epoch (seeded; at most a quarter of the sequence per end): a motif moves within the window and the
    # tokenizer cuts the sequence differently around it. 0: read as given. Dev and test are never cropped
    crop: int = 0
    # "both": dev (model selection) and test are scored as the mean of each sequence's and its reverse
    # complement's probabilities, and predict does the same for this run unless told otherwise; "given":
    # one strand, as the sequences are given. For strand-symmetric labels (TF binding), not for promoters
    eval_strands: str = "given"


@dataclass
class EncodingConfig:
    """Language prefix and sequence tokenisation."""

    prefix: str = "paper"  # "paper", "rich", "none", or a custom template containing {sequence}
    domain: Optional[str] = None  # defaults to the task's own domain, e.g. "DNA Promoter"
    species: Optional[str] = None
    task_description: Optional[str] = None
    sequence: str = "native"  # "native", "nucleotide" or "kmer"
    k: int = 6  # k-mer length for sequence="kmer"
    # how sequence="nucleotide"'s new embedding rows start: "letters" = the embedding of the tokenizer's own
    # token(s) for the base's letter (A, C, G, T, N), so the model starts by reading each base as the letter it
    # already knows; "mean" = Hugging Face's mean-resizing (all five rows near the mean embedding: they start
    # indistinguishable; tf/0: never left chance, docs/results.md)
    nucleotide_init: str = "letters"
    kmer_stride: Optional[int] = None  # default: k (non-overlapping)
    max_length: int = 512  # tokens; the sequence part is truncated (never the prompt) with a warning


POOLINGS = ("auto", "native", "cls", "mean", "max", "attention", "last")  # model.pooling's choices


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
    # the last real token for decoders, the model's CLS head otherwise), "cls", "mean", "max" (the
    # element-wise maximum over real tokens; on MiniLM it did not learn the TF tasks, docs/results.md),
    # "attention" (a learnt softmax weighting of the real tokens that starts as their mean; its scorer,
    # hidden size + 1 parameters, trains and exports with the head), "last", or
    # "native" (the head transformers builds, as runs made before this setting used)
    pooling: str = "auto"
    # the backbone's own dropout (hidden states, attention weights, its classifier): null keeps the
    # model's (0.1 on MiniLM); a number sets every dropout rate in its config, e.g. 0 for a model that
    # underfits (training loss as high as dev loss). Adapter dropout is adapter.lora.lora_dropout.
    dropout: Optional[float] = None


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
    # dev evaluations without improvement before training stops; None or 0: off (as on the Train page)
    early_stopping_patience: Optional[int] = None
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


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    """A settings dataclass's resolved field annotations (resolving them is slow; studies build thousands)."""
    return get_type_hints(cls)


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key(s) {sorted(where + str(u) for u in unknown)}; "
            f"valid keys under '{prefix or 'top level'}': {sorted(names)}"
        )
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key)
    return cls(**kwargs)


def deep_merge(base: Any, overlay: Any) -> Any:
    """A copy of ``base`` with ``overlay`` merged in: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for key, value in overlay.items():
            out[key] = deep_merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(overlay)


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
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(
            f"override {text!r}: the value {raw!r} is not valid YAML ({detail}); "
            f"quote it (--set '{key.strip()}=\"...\"') or close its brackets"
        ) from None
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
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        if not path.is_file():
            raise ConfigError(f"config file {path} is not a file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save the config as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        try:
            values = yaml.safe_load(text)
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        if values is None:
            raise ConfigError(
                f"{path}: the config file is empty; write at least one section (see configs/quickstart.yaml), "
                "or start from the defaults with no file"
            )
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


def config_values(cfg: LingoConfig) -> dict[str, Any]:
    """The config as plain values, exactly as its saved YAML reads back (what a run's ``config.yaml``
    holds): what studies hash into cell ids and the launcher compares against queued runs.

    ``to_dict`` holds only YAML's safe types (the safe dumper refuses anything else), whose round trip
    changes nothing but tuples, which read back as lists; so that is the one conversion made here, without
    the round trip's cost (a study expands hundreds of cells). tests/test_config_encoding.py checks it
    against the round trip.
    """
    return _as_read_back(cfg.to_dict())


def _as_read_back(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _as_read_back(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_read_back(item) for item in value]
    return value


def validate_config(cfg: LingoConfig) -> None:
    """Check value ranges and choices; raise :class:`ConfigError` with the key and the fix.

    Everything that can be checked without the data or the model is checked here, so a bad value is
    refused before any run directory exists. (``encoding.max_length`` against the model's positions
    is checked when the model is loaded, also before the run directory: ``inference.load_backbone``.)
    """
    a, t, e, d, m = cfg.adapter, cfg.train, cfg.encoding, cfg.data, cfg.model
    from .adapters import method_names

    _finite("", cfg.to_dict())
    _choice("adapter.method", a.method, tuple(method_names()))
    for name, settings in a.sections.items():
        check = getattr(settings, "validate", None)
        if check is not None:
            try:
                check()
            except ValueError as exc:
                raise ConfigError(f"adapter.{name}.{exc}") from None
    adalora = a.sections.get("adalora")
    if adalora is not None:
        for name in ("beta1", "beta2"):
            _range(f"adapter.adalora.{name}", getattr(adalora, name), 0.0, 1.0, low_open=True, high_open=True)
        _at_least("adapter.adalora.orth_reg_weight", adalora.orth_reg_weight, 0)

    _choice("encoding.sequence", e.sequence, ("native", "nucleotide", "kmer"))
    _choice("encoding.nucleotide_init", e.nucleotide_init, ("letters", "mean"))
    if e.sequence == "kmer" and not 1 <= e.k <= 12:
        raise ConfigError(f"encoding.k must be between 1 and 12, got {e.k}")
    if e.kmer_stride is not None:
        _at_least("encoding.kmer_stride", e.kmer_stride, 1)
    _at_least("encoding.max_length", e.max_length, 8, "tokens (the prompt must fit)")
    if e.prefix not in ("paper", "rich", "none"):
        problem = template_problem(e.prefix)
        if problem:
            raise ConfigError(f"encoding.prefix must be 'paper', 'rich', 'none' or a template containing {{sequence}}: {problem}")

    _choice("model.pooling", m.pooling, POOLINGS)
    if m.dropout is not None:
        _range("model.dropout", m.dropout, 0.0, 1.0, high_open=True)
    _choice("model.dtype", m.dtype, ("auto", "float32", "bfloat16", "float16"))
    if not _DEVICE.match(m.device):
        raise ConfigError(f"model.device must be auto, cpu, cuda, cuda:N or mps, got {m.device!r}")
    if not m.name.strip():
        raise ConfigError("model.name is empty; give a registry name (python -m lingo_core list-models), a hub id or a folder")

    _choice("data.iupac", d.iupac, ("n", "reject"))
    _choice("data.duplicates", d.duplicates, ("report", "remove"))
    _choice("data.augment", d.augment, ("none", "reverse_complement"))
    _choice("data.eval_strands", d.eval_strands, ("given", "both"))
    _at_least("data.crop", d.crop, 0, "(bases dropped at most from each end of a training sequence; 0 reads them as given)")
    if not d.task.strip():
        raise ConfigError("data.task is empty; give a benchmark name (python -m lingo_core list-benchmarks) or a data path")
    if not d.label_columns or not all(c.strip() for c in d.label_columns):
        raise ConfigError(f"data.label_columns must name at least one column, got {d.label_columns!r}")
    for key in ("max_train", "max_eval"):
        if getattr(d, key) is not None:
            _at_least(f"data.{key}", getattr(d, key), 1, "(null keeps every sequence)")
    for key in ("dev_fraction", "test_fraction"):
        _range(f"data.split.{key}", getattr(d.split, key), 0.0, 1.0, high_open=True)
    if d.split.dev_fraction + d.split.test_fraction >= 1:
        raise ConfigError(
            f"data.split.dev_fraction + data.split.test_fraction must be < 1 (some data must train), "
            f"got {d.split.dev_fraction} + {d.split.test_fraction}"
        )
    for key, seed in (("train.seed", t.seed), ("data.split.seed", d.split.seed), ("data.subsample_seed", d.subsample_seed)):
        _range(key, seed, 0, 2**32 - 1)

    _range("train.epochs", t.epochs, 0.0, 100_000.0, low_open=True)
    for key in ("batch_size", "eval_batch_size", "grad_accum"):
        _at_least(f"train.{key}", getattr(t, key), 1)
    _at_least("train.lr", t.lr, 0, open_=True)
    _at_least("train.weight_decay", t.weight_decay, 0)
    _range("train.warmup_ratio", t.warmup_ratio, 0.0, 1.0, high_open=True)
    _at_least("train.max_grad_norm", t.max_grad_norm, 0, "(0 switches clipping off)")
    for key in ("max_steps", "eval_every", "checkpoint_every"):
        if getattr(t, key) is not None:
            _at_least(f"train.{key}", getattr(t, key), 1, "(or null for the default)")
    if t.early_stopping_patience is not None:
        _at_least("train.early_stopping_patience", t.early_stopping_patience, 0, "(null or 0 switch early stopping off)")
    _choice("train.metric_for_best", t.metric_for_best, ("mcc", "f1", "accuracy", "auroc", "auprc", "loss"))

    if not cfg.output_dir.strip():
        raise ConfigError("output_dir is empty; give the folder that holds run directories, e.g. runs")
    if cfg.run_name is not None:
        problem = run_name_problem(cfg.run_name)
        if problem:
            raise ConfigError(f"run_name {cfg.run_name!r} {problem}")


_DEVICE = re.compile(r"^(auto|cpu|mps|(cuda|xpu|npu)(:\d+)?)$")
TEMPLATE_FIELDS = ("domain", "species", "task", "sequence")


def run_name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot name a run directory inside ``output_dir`` (None when it can).

    A run name is one folder name: no path separators, not ``.``/``..``, not hidden (temporary files
    start with a dot), so a run is never written outside ``output_dir``.
    """
    if not name.strip():
        return "is empty; leave run_name out for a generated name"
    if "/" in name or "\\" in name or "\x00" in name:
        return "must be a folder name, not a path (no '/' or '\\'); it is created inside output_dir"
    if name.startswith("."):
        return "must not start with '.' ('..' leaves output_dir; other dot names are hidden temporary files)"
    if len(name) > 200:
        return f"is {len(name)} characters long; use at most 200"
    return None


def template_problem(template: str) -> Optional[str]:
    """Why a custom prefix template is unusable, or None: only ``{domain}``, ``{species}``, ``{task}`` and
    exactly one ``{sequence}``; literal braces are written ``{{`` and ``}}``."""
    import string

    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"the template is not valid ({exc}); write literal braces as {{{{ and }}}}"
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            return f"unknown field {{{name}}}; use only {{domain}}, {{species}}, {{task}} and {{sequence}}"
        names.append(name)
    if names.count("sequence") != 1:
        return f"it must contain {{sequence}} exactly once, got {template!r}"
    return None


def _finite(key: str, value: Any) -> None:
    """Refuse NaN and infinities anywhere in a config (``value`` is its nested dict form)."""
    if isinstance(value, dict):
        for name, child in value.items():
            _finite(f"{key}.{name}" if key else str(name), child)
    elif isinstance(value, (list, tuple)):
        for i, child in enumerate(value):
            _finite(f"{key}[{i}]", child)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")


def _at_least(key: str, value: float, low: float, note: str = "", open_: bool = False) -> None:
    if value < low or (open_ and value == low):
        relation = ">" if open_ else ">="
        raise ConfigError(f"{key} must be {relation} {low}, got {value}" + (f" {note}" if note else ""))


def _range(key: str, value: float, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    below = value < low or (low_open and value == low)
    above = value > high or (high_open and value == high)
    if below or above:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(f"{key} must be in {interval}, got {value}")


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
