"""Controls for a method's settings, drawn from its settings dataclass (the adapter registry).

Not a page. Each field of a settings dataclass (``lingo_core.adapters.<method>.config``) becomes
one widget, chosen by its type and its ``field(metadata=...)`` hints: ``label``, ``help``,
``min``, ``max``, ``step``, ``choices`` (a radio), ``advanced`` (folded into "More ...
settings"), ``ui=False`` (not shown), ``inherited=False`` (shown only for the method that owns the
section, not for methods that extend it: AdaLoRA reads LoRA's alpha but not its ``r``).
A method registered from outside the package gets its controls the same way.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Optional, Union

import streamlit as st

from lingo_core.adapters import get_method, settings_fields

COLUMNS = 3  # controls per row; advanced ones use one more


def method_title(name: str) -> str:
    """``"AdaLoRA"`` from the summary ``"AdaLoRA: SVD adapters, ..."``; the name when there is no prefix."""
    summary = get_method(name).summary
    head, sep, _ = summary.partition(":")
    return head.strip() if sep and head.strip() else name


def field_kind(hint: Any, metadata: typing.Mapping[str, Any]) -> Optional[str]:
    """Which control a field gets: ``choice``, ``bool``, ``int``, ``float``, ``steps_or_fraction``
    (``Union[int, float]``: a fraction < 1 or a step count), ``number_or_text`` (``Union[float, str]``,
    e.g. a temperature or ``'uniform'``), ``text``; None for types no control can edit."""
    if metadata.get("choices"):
        return "choice"
    if typing.get_origin(hint) is Union:
        args = set(typing.get_args(hint)) - {type(None)}
        if args == {int, float}:
            return "steps_or_fraction"
        if str in args and args & {int, float}:
            return "number_or_text"
        return None
    return {bool: "bool", int: "int", float: "float", str: "text"}.get(hint)


def number_or_text(text: str) -> Union[float, str]:
    """A typed number as a float, anything else as the text itself (config validation judges it)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return text


def steps_or_fraction(value: float) -> Union[int, float]:
    """A value in (0, 1) stays a fraction of all steps; anything else is a whole number of steps."""
    return value if 0 < value < 1 else int(round(value))


def _decimals(step: Any) -> int:
    text = f"{float(step):.10f}".rstrip("0")
    return max(2, len(text.split(".")[1]))


def widget_value(kind: str, value: Any, meta: typing.Mapping[str, Any]) -> Any:
    """A setting's value as its control holds it (an option, a bool, an int, a float or text)."""
    if kind == "choice":
        options = list(meta["choices"])
        return value if value in options else options[0]
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind in ("float", "steps_or_fraction"):
        return float(value)
    return "" if value is None else str(value)


def _control(container: Any, kind: str, label: str, value: Any, meta: typing.Mapping[str, Any], key: str) -> Any:
    """One widget; returns the value in the field's type."""
    help_ = meta.get("help")
    value = widget_value(kind, value, meta)
    if kind == "choice":
        options = list(meta["choices"])
        return container.radio(label, options, index=options.index(value), key=key, horizontal=True, help=help_)
    if kind == "bool":
        return bool(container.checkbox(label, value, key=key, help=help_))
    if kind == "int":
        low, high = meta.get("min"), meta.get("max")
        return int(
            container.number_input(
                label, None if low is None else int(low), None if high is None else int(high), value,
                step=int(meta.get("step", 1)), key=key, help=help_,
            )
        )
    if kind in ("float", "steps_or_fraction"):
        low, high = meta.get("min"), meta.get("max")
        step = meta.get("step")
        number = float(
            container.number_input(
                label, None if low is None else float(low), None if high is None else float(high), value,
                step=None if step is None else float(step), format=f"%.{_decimals(step) if step else 3}f", key=key, help=help_,
            )
        )
        return steps_or_fraction(number) if kind == "steps_or_fraction" else number
    if kind == "number_or_text":
        return number_or_text(container.text_input(label, value, key=key, help=help_))
    return container.text_input(label, value, key=key, help=help_)


def section_state(section: str, values: Optional[typing.Mapping[str, Any]] = None, key_prefix: str = "train") -> dict[str, Any]:
    """Widget key -> the value its control shows, for every field of ``adapter.<section>`` that can have
    one, from ``values`` (fields missing there take the dataclass defaults): what
    :func:`settings_controls` would draw first, for a page that sets its controls to a config.
    """
    cls = get_method(section).settings
    if cls is None:
        return {}
    hints = typing.get_type_hints(cls)
    initial = {**dataclasses.asdict(cls()), **dict(values or {})}
    state = {}
    for f in dataclasses.fields(cls):
        kind = field_kind(hints.get(f.name), f.metadata)
        if kind is not None and f.metadata.get("ui") is not False:
            state[f"{key_prefix}_{section}_{f.name}"] = widget_value(kind, initial.get(f.name), f.metadata)
    return state


def settings_controls(method: str, section: str, defaults: Optional[typing.Mapping[str, Any]] = None, key_prefix: str = "train") -> dict[str, Any]:
    """Draw the controls of the section ``adapter.<section>`` as read by ``method``; return its values.

    ``defaults`` (e.g. the quickstart config's section) sets the initial values; fields missing
    there take the dataclass defaults. Widget keys are ``<key_prefix>_<section>_<field>``. Fields
    without a control keep their default value, so the section is always complete.
    """
    cls = get_method(section).settings
    if cls is None:
        return {}
    hints = typing.get_type_hints(cls)
    initial = {**dataclasses.asdict(cls()), **dict(defaults or {})}
    values: dict[str, Any] = {}
    shown: list[tuple[dataclasses.Field, str]] = []
    read_by_method = {(s, f.name) for s, f in settings_fields(method)}
    for f in dataclasses.fields(cls):
        values[f.name] = initial.get(f.name)
        kind = field_kind(hints.get(f.name), f.metadata)
        hidden = f.metadata.get("ui") is False or (section, f.name) not in read_by_method
        if kind is not None and not hidden:
            shown.append((f, kind))
    if not shown:
        return values
    title = method_title(section)
    st.markdown(f"**{title}** · `adapter.{section}`")
    basic = [(f, kind) for f, kind in shown if not f.metadata.get("advanced")]
    advanced = [(f, kind) for f, kind in shown if f.metadata.get("advanced")]
    _rows(basic, COLUMNS, values, section, key_prefix)
    if advanced:
        with st.expander(f"More {title} settings"):
            _rows(advanced, COLUMNS + 1, values, section, key_prefix)
    return values


def _rows(fields: list[tuple[dataclasses.Field, str]], width: int, values: dict[str, Any], section: str, key_prefix: str) -> None:
    for start in range(0, len(fields), width):
        columns = st.columns(width)
        for column, (f, kind) in zip(columns, fields[start : start + width]):
            label = f.metadata.get("label") or f.name
            values[f.name] = _control(column, kind, label, values[f.name], f.metadata, f"{key_prefix}_{section}_{f.name}")
