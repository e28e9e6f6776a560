"""``--set KEY.SUB=VALUE`` items: parsed (the value read as YAML) and applied to a config, for every command.

A dotted key walks into nested mappings (created where missing or null) and, by integer index, into lists:
``task.0.scale=3`` sets ``config['task'][0]['scale']``. The value is read by ``parse_value``.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from .yaml_io import parse_value

SET_FORM = "KEY.SUB=VALUE, e.g. --set sampler.steps=100"


def parse_set(item: str, form: str = SET_FORM) -> tuple[list[str], Any]:
    """``'sampler.steps=3'`` → (['sampler', 'steps'], 3); ``form`` (what a good item looks like) goes into errors."""
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not key.strip() or any(not p for p in parts):
        raise ValueError(f"--set {item!r}: expected {form}")
    try:
        return parts, parse_value(text)
    except ValueError as err:
        raise ValueError(f"--set {item!r}: {err}") from None


def apply_set(config: dict[str, Any], parts: Sequence[str], value: Any, item: str = "") -> None:
    """Set ``config[parts[0]][parts[1]]... = value`` in place; lists are indexed by integers (``task.0.scale``)."""
    if not parts or any(not p for p in parts):
        raise ValueError(f"--set {item or '.'.join(parts)}: expected {SET_FORM}")
    node: Any = config
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[:i + 1])
        if isinstance(node, list):
            if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                raise ValueError(f"--set {item or where}: {'.'.join(parts[:i]) or 'the config'} is a list of "
                                 f"{len(node)}; {part!r} is not an index into it")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ValueError(f"--set {item or where}: {'.'.join(parts[:i])} = {node!r} is not a mapping or a list")


def apply_sets(config: dict[str, Any], items: Iterable[str], form: str = SET_FORM) -> dict[str, Any]:
    """Parse and apply each ``--set`` item to ``config`` in place, in order; return ``config``."""
    for item in items:
        parts, value = parse_set(item, form)
        apply_set(config, parts, value, item)
    return config


def parse_sets(items: Iterable[str], form: str = SET_FORM) -> dict[str, Any]:
    """``['nf=16', 'model.ch_mult=[1, 2]']`` → ``{'nf': 16, 'model.ch_mult': [1, 2]}``: dotted keys kept flat."""
    out: dict[str, Any] = {}
    for item in items:
        parts, value = parse_set(item, form)
        out[".".join(parts)] = value
    return out


__all__ = ["SET_FORM", "apply_set", "apply_sets", "parse_set", "parse_sets"]
