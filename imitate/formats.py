"""Versioned JSON files: every description imitate writes carries a ``format`` tag, read here once.

    config.json   "imitate-run/2"      (also reads "imitate-run/1")   a run directory (`imitate.checkpoint`)
    reward.json   "imitate-reward/1"                                  AIRL's state reward (`imitate.algos.adversarial`)
    export.json   "imitate-export/1"                                  an exported policy (`imitate.export`)

Imports nothing heavy (no torch, no NumPy), so the torch-free runtime uses it too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from imitate.errors import ImitateError


def read_tagged_json(path: str | os.PathLike, formats: tuple[str, ...], what: str) -> dict[str, Any]:
    """The JSON object in ``path`` whose ``format`` is one of ``formats``.

    Raises:
        ImitateError: naming the file, for a missing or unreadable file, invalid JSON, or another format.
    """
    path = Path(path)
    if not path.is_file():
        raise ImitateError(f"{path}: missing (expected {what})")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImitateError(f"{path}: not valid JSON ({e})") from None
    found = data.get("format") if isinstance(data, dict) else type(data).__name__
    if not isinstance(data, dict) or found not in formats:
        raise ImitateError(f"{path}: not {what} (expected format {' or '.join(map(repr, formats))}, found {found!r})")
    return data


def require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``data[key]``, checked to be of ``kind``; an ImitateError naming ``where`` and the key otherwise."""
    if key not in data:
        raise ImitateError(f"{where}: missing {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ImitateError(f"{where}: {key!r} must be {names}, found {type(value).__name__} {value!r:.60}")
    return value
