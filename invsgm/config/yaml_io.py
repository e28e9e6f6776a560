"""YAML text and files → Python values, with one loader for every config of invsgm.

The loader is PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` is the float 0.001 (YAML 1.1, and so
``yaml.safe_load``, reads it as the string '1e-3').
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import yaml


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2 floats: ``1e-3`` is a float, not the string '1e-3'."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """A value as YAML: ``3`` → 3, ``1e-3`` → 0.001, ``true`` → True, ``[1, 2]`` → [1, 2], ``null`` or nothing
    → None, ``abc`` → 'abc'. Text that is not valid YAML raises a ``ValueError`` quoting it."""
    text = text.strip()
    if not text:
        return None
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as err:
        raise ValueError(f"the value {text!r} is not valid YAML ({err})".replace("\n", " ")) from None


def read_yaml(path: str | os.PathLike, what: str = "config", keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The mapping in a YAML file.

    A missing file raises ``FileNotFoundError('<what> file not found: PATH')``; text that is not UTF-8 or not
    YAML, or YAML that is not a mapping, a ``ValueError`` naming the file (and the expected ``keys``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(values, dict):
        expected = f"a mapping with keys {list(keys)}" if keys else "a mapping"
        raise ValueError(f"{path}: expected {expected}, got {type(values).__name__}")
    return values


__all__ = ["Loader", "parse_value", "read_yaml"]
