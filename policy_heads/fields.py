"""Typed configuration fields without torch: string overrides converted to a dataclass's field types.

A head's ``Config`` is a flat dataclass; values from a command line (``--set key=value``) arrive as
strings and are converted here to each field's annotated type (int, float, bool, str, tuple[...]).
This module imports nothing heavy, so command-line parsers can use it without loading torch.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a head Config (tuples become lists)."""
    return {f.name: _to_json(getattr(config, f.name)) for f in dataclasses.fields(config)}


def convert_fields(config_cls: type, values: dict[str, Any], owner: str) -> dict[str, Any]:
    """``values`` (strings or typed) converted to the types of dataclass ``config_cls``'s fields.

    Raises ValueError naming ``owner`` and the field, for an unknown field or a value of the wrong type.
    """
    hints = typing.get_type_hints(config_cls)
    fields = [f.name for f in dataclasses.fields(config_cls)]
    converted = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(f"unknown config field '{key}' for {owner}; its fields: {', '.join(fields)}")
        try:
            converted[key] = convert_value(value, hints[key])
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{owner}: config field '{key}' expects {_type_name(hints[key])}, got {value!r} ({error})"
            ) from None
    return converted


def _to_json(value: Any) -> Any:
    return [_to_json(v) for v in value] if isinstance(value, tuple) else value


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) if typing.get_origin(kind) is None else str(kind).replace("typing.", "")


def convert_value(value: Any, kind: Any) -> Any:
    """Convert `value` (string or already typed) to the annotated type `kind`."""
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if isinstance(value, str):
            text = value.strip().strip("()[]").strip()
            value = [] if not text else [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise TypeError("not a sequence")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert_value(v, args[0]) for v in value)
        if len(args) != len(value):
            raise ValueError(f"needs {len(args)} items")
        return tuple(convert_value(v, a) for v, a in zip(value, args))
    if kind is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError("use true or false")
        if not isinstance(value, bool):
            raise TypeError("not a bool")
        return value
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError("not an int")
        return int(value.strip()) if isinstance(value, str) else int(value)
    if kind is float:
        if isinstance(value, bool):
            raise TypeError("not a float")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError("not a string")
        return value
    return value
