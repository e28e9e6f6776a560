"""Value checks of config entries: each returns the plain value or raises
``ValueError(f"{key} = {value!r}: expected ...")``, naming the key, the value and what was expected."""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping, Sequence

from .._names import sde_key


def bad(key: str, value: Any, expected: str) -> ValueError:
    """The error for a bad config value: ``KEY = VALUE: expected EXPECTED``."""
    return ValueError(f"{key} = {value!r}: expected {expected}")


def is_int(v: Any) -> bool:
    """An integer, not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
    """A finite real number, not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def integer(key: str, v: Any, low: int = 0) -> int:
    """``v`` as an int, if it is an integer >= ``low``."""
    if not is_int(v) or v < low:
        raise bad(key, v, f"an integer >= {low}")
    return int(v)


def number(key: str, v: Any, low: float = 0.0, *, strict: bool = True, high: float | None = None,
           optional: bool = False) -> float | None:
    """``v`` as a float, if it is a finite number > ``low`` (>= ``low`` unless ``strict``) and < ``high`` (when
    given); ``None`` passes when ``optional``."""
    if high is None:
        expected = f"a number {'>' if strict else '>='} {low:g}"
    else:
        expected = f"a number in {'(' if strict else '['}{low:g}, {high:g})"
    if optional:
        expected += " or null"
    if v is None and optional:
        return None
    if not is_real(v) or not (v > low if strict else v >= low) or (high is not None and not v < high):
        raise bad(key, v, expected)
    return float(v)


def boolean(key: str, v: Any) -> bool:
    """``v`` if it is true or false."""
    if not isinstance(v, bool):
        raise bad(key, v, "true or false")
    return v


def string(key: str, v: Any) -> str:
    """``v`` if it is a non-empty string."""
    if not isinstance(v, str) or not v:
        raise bad(key, v, "a non-empty string")
    return v


def choice(key: str, v: Any, options: Sequence[str]) -> str:
    """``v`` if it is one of ``options`` (exactly)."""
    if not isinstance(v, str) or v not in options:
        raise bad(key, v, f"one of {list(options)}")
    return v


def mapping(key: str, v: Any, allowed: Sequence[str]) -> dict[str, Any]:
    """A copy of ``v`` if it is a mapping whose keys are all in ``allowed``."""
    if not isinstance(v, dict):
        raise bad(key, v, f"a mapping with keys from {list(allowed)}")
    for k in v:
        if k not in allowed:
            raise ValueError(f"unknown key {key}.{k} = {v[k]!r}; expected one of {list(allowed)}")
    return dict(v)


def sde_name(key: str, v: Any) -> str:
    """The key of ``invsgm.sde.SDES`` that ``v`` names, normalised like ``sde_from_config`` ('sub-VP' → 'subvp')."""
    from ..sde import SDES

    if not isinstance(v, str) or sde_key(v) not in SDES:
        raise bad(key, v, f"one of {sorted(SDES)}")
    return sde_key(v)


def type_of(default: Any) -> tuple[Callable[[Any], bool], str] | None:
    """A check and its description for values replacing a parameter's ``default``: the same kind of value (bool,
    integer, number, string, list, mapping); None for other defaults (None, objects), which are not checked."""
    if isinstance(default, bool):
        return (lambda v: isinstance(v, bool)), "true or false"
    if is_int(default):
        return is_int, "an integer"
    if isinstance(default, numbers.Real):
        return is_real, "a number"
    if isinstance(default, str):
        return (lambda v: isinstance(v, str)), "a string"
    if isinstance(default, (list, tuple)):
        return (lambda v: isinstance(v, (list, tuple))), "a list"
    if isinstance(default, Mapping):
        return (lambda v: isinstance(v, Mapping)), "a mapping"
    return None


__all__ = ["bad", "boolean", "choice", "integer", "is_int", "is_real", "mapping", "number", "sde_name", "string",
           "type_of"]
