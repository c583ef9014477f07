"""A config dataclass's fields checked as a user's YAML or JSON file gives them.

A file can hold a field of the wrong kind (``smooth_sigma: lots``, ``classes: scratch``)
or one the config does not have (a typo). Each is named in words before a range check
compares text with a number, or a tuple of the text ``"scratch"`` becomes six classes.
Torch-free: the edge runtime reads configs too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any

_KIND_NAMES = {
    int: ("a whole number", "whole numbers"),
    float: ("a finite number", "finite numbers"),
    bool: ("true or false", "true or false values"),
    str: ("text", "names"),
}


def unknown_fields(cls: type, data: Mapping[str, Any]) -> list[str]:
    """The keys of ``data`` that are not fields of the dataclass ``cls``, sorted."""
    return sorted(map(str, set(data) - {f.name for f in dataclasses.fields(cls)}))


def missing_fields(cls: type, data: Mapping[str, Any]) -> list[str]:
    """The fields of the dataclass ``cls`` without a default that ``data`` lacks."""
    missing = dataclasses.MISSING
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is missing and f.default_factory is missing and f.name not in data
    ]


def kind_problems(config: Any) -> list[str]:
    """The fields of the dataclass instance ``config`` whose value is not of the field's
    annotated kind: numbers (finite; a bool is not one), text, true/false, a list of
    one of those, a mapping, a nested config, or ``None`` where the annotation allows it."""
    hints = _hints(type(config))
    return [
        problem
        for f in dataclasses.fields(config)
        if (problem := _kind_problem(f.name, getattr(config, f.name), hints[f.name]))
    ]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # evaluates the string annotations: once a class


def _kind_problem(name: str, value: Any, hint: Any) -> str | None:
    if isinstance(hint, types.UnionType):  # ``str | None``
        if value is None:
            return None
        (hint,) = [h for h in typing.get_args(hint) if h is not type(None)]
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        listed = isinstance(value, (list, tuple))
        wrong = [v for v in value if not _is_kind(v, item)] if listed else [value]
        plural = _KIND_NAMES[item][1]
        return f"{name} must be a list of {plural}, not {wrong[0]!r}" if wrong else None
    if origin is not None:  # ``Mapping[str, Any]``
        return None if isinstance(value, origin) else f"{name} must be a mapping, not {value!r}"
    if _is_kind(value, hint):
        return None
    problem = f"{name} must be {_KIND_NAMES[hint][0] if hint in _KIND_NAMES else hint.__name__}"
    problem += f", not {value!r}"
    if hint is float and isinstance(value, str) and _parses_as_float(value):
        # YAML 1.1 reads 1e-3 as text: a float needs a dot in its mantissa
        problem += " (YAML reads it as text: write it with a dot, 1.0e-3 not 1e-3)"
    return problem


def _is_kind(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, not to a config
        return kind is bool
    if kind is int:  # numpy's integers too: a fit may set a field from an array
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    return isinstance(value, kind)


def _parses_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
