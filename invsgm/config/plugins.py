"""Names → callables: built-in tables first, then the installed entry points of a group (read anew at every call)."""
from __future__ import annotations

import importlib.metadata
import inspect
from typing import Any, Callable, Mapping

from .checks import type_of


def entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The installed entry points of ``group`` by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def available(builtins: Mapping[str, Any], group: str) -> list[str]:
    """Every name: the built-ins and the installed plugins."""
    return sorted(set(builtins) | set(entry_points(group)))


def lookup(name: Any, builtins: Mapping[str, Any], group: str, what: str, where: str) -> Any:
    """The object called ``name``: a built-in, else the loaded entry point; an unknown name raises listing them."""
    if not isinstance(name, str):
        raise ValueError(f"{where} = {name!r}: expected a string, one of {available(builtins, group)}")
    if name in builtins:
        return builtins[name]
    plugins = entry_points(group)
    if name not in plugins:
        raise ValueError(f"{where} = {name!r}: unknown {what}; available: {available(builtins, group)} (plugins "
                         f"register more under the entry-point group {group!r})")
    ep = plugins[name]
    try:
        return ep.load()
    except ImportError as err:
        raise ImportError(f"{what} plugin {name!r} ({ep.value}) cannot be imported: {err}") from err


def check_arguments(where: str, what: str, fn: Callable, params: Mapping[str, Any], skip: int = 0) -> None:
    """Raise naming the key, its value and what was expected for an unknown, missing or ill-typed argument of
    ``fn``: a value must be of the kind of the parameter's default (``type_of``); the first ``skip``
    parameters are not the config's."""
    signature = inspect.signature(fn)
    accepted = {k: p for k, p in list(signature.parameters.items())[skip:]
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for key, value in params.items():
        if key not in accepted:
            if takes_any:
                continue
            raise ValueError(f"{where}.{key} = {value!r}: unknown parameter of {what}; expected one of "
                             f"{list(accepted) or 'no parameters'}")
        check = type_of(accepted[key].default)
        if check is not None and not check[0](value):
            raise ValueError(f"{where}.{key} = {value!r}: expected {check[1]} ({what})")
    missing = [k for k, p in accepted.items() if p.default is inspect.Parameter.empty and k not in params]
    if missing:
        raise ValueError(f"{where}: {what} needs the parameter(s) {missing}")
