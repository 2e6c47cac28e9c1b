"""Flat configuration dataclasses: field docstrings for ``--help``, typed ``key=value`` overrides.

A configuration is a flat ``@dataclass`` with a string literal under each field (its docstring):

    @dataclass
    class EncoderConfig:
        feature_dim: int = 256
        \"\"\"Width of the feature vector handed to the head.\"\"\"

`field_docs` reads those strings from the source; `apply_overrides` builds an instance from
strings (as given on the command line) converted to each field's type.
"""
from __future__ import annotations

import ast
import json
import dataclasses
import inspect
import textwrap
import typing
from typing import Any

from imitate.errors import ConfigError
from policy_heads.fields import convert_fields


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal under it in the class body ('' when there is none)."""
    docs = {f.name: "" for f in dataclasses.fields(cls)}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return docs
    body = tree.body[0].body
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _type_name(kind: Any) -> str:
    return kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")


def describe(cls: type, indent: str = "  ") -> str:
    """One line per field: ``name (type, default): docstring``, for help texts."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
        lines.append(f"{indent}{f.name} ({_type_name(hints[f.name])}, default {default!r}): {docs[f.name]}")
    return "\n".join(lines)


def apply_overrides(config: Any, values: dict[str, Any], what: str) -> Any:
    """A copy of dataclass instance ``config`` with ``values`` (strings or typed) set.

    Raises:
        ConfigError: naming ``what`` and the field, for an unknown field or a value of the wrong type.
    """
    try:
        return dataclasses.replace(config, **convert_fields(type(config), values, what))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a dataclass instance (tuples as lists)."""
    def conv(v):
        return [conv(x) for x in v] if isinstance(v, (tuple, list)) else v
    return {f.name: conv(getattr(config, f.name)) for f in dataclasses.fields(config)}


def parse_key_values(pairs: list[str] | None, flag: str = "--set", as_json: bool = False) -> dict[str, Any]:
    """``key=value`` command-line arguments as a dict.

    Values stay strings (converted later to a config field's type), or with ``as_json`` are read as
    JSON where they parse (numbers, true, lists) and kept as strings otherwise.
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects key=value, got {pair!r}")
        value = value.strip()
        if as_json:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key.strip()] = value
    return out


def split_sets(pairs: list[str] | None, owners: tuple[str, ...], bare: str | None = "head",
               flag: str = "--set") -> dict[str, dict[str, Any]]:
    """``OWNER.KEY=VALUE`` arguments -> {owner: {key: value}} for every owner in ``owners`` (values stay
    strings). A ``KEY=VALUE`` without a prefix belongs to ``bare`` (``head``: the spelling of earlier
    versions); with ``bare`` None it is an error, as is an unknown prefix."""
    out: dict[str, dict[str, Any]] = {o: {} for o in owners}
    for key, value in parse_key_values(pairs, flag).items():
        owner, dot, field = key.partition(".")
        if dot and owner in owners and field:
            out[owner][field] = value
        elif not dot and bare is not None:
            out[bare][key] = value
        else:
            spelled = ", ".join(f"{o}.KEY=VALUE" for o in owners)
            raise ConfigError(f"{flag} {key}={value}: expected {spelled}")
    return out
