"""The one table from model names to classes, used by configs and model cards.

``model_config(kind, **kwargs)`` resolves every constructor argument (defaults filled in) to plain
JSON/YAML values, and ``build_model(**model_config(kind, **kwargs))`` builds the same network as
``build_model(kind, **kwargs)``.
"""
from __future__ import annotations

import inspect
import numbers
from typing import Any

from torch import nn

from .adm import ADMClassifier, ADMUNet
from .classifier import NoiseConditionalClassifier
from .mlp import MLPScoreNet
from .unet import UNet

MODELS: dict[str, type[nn.Module]] = {"unet": UNet, "mlp": MLPScoreNet, "classifier": NoiseConditionalClassifier,
                                      "adm_unet": ADMUNet, "adm_classifier": ADMClassifier}


def _model_class(kind: str) -> type[nn.Module]:
    if not isinstance(kind, str) or kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODELS)}")
    return MODELS[kind]


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _plain(kind: str, name: str, value: Any, default: Any) -> Any:
    """``value`` as a plain JSON/YAML value (tuples → lists, numpy scalars → Python), typed like ``default``."""
    if isinstance(default, bool):
        ok, plain, expected = isinstance(value, bool), value, "a bool"
    elif _is_int(default):
        ok, expected = _is_int(value), "an integer"
        plain = int(value) if ok else value
    elif _is_real(default):
        ok, expected = _is_real(value), "a number"
        plain = float(value) if ok else value
    elif isinstance(default, str):
        ok, plain, expected = isinstance(value, str), value, "a string"
    elif isinstance(default, (tuple, list)):
        ok = isinstance(value, (tuple, list)) and all(_is_real(v) for v in value)
        plain, expected = ([int(v) if _is_int(v) else float(v) for v in value] if ok else value), "a list of numbers"
    else:  # no default, or None: any plain scalar, checked by the constructor
        ok = value is None or isinstance(value, (bool, str)) or _is_real(value)
        plain = int(value) if _is_int(value) else float(value) if _is_real(value) else value
        expected = "a number, string, bool or None"
    if not ok:
        raise ValueError(f"{kind!r} model argument {name!r} must be {expected}, got {value!r}")
    return plain


def model_config(kind: str, **kwargs: Any) -> dict[str, Any]:
    """{'kind': kind, every constructor argument} with defaults filled in, as plain JSON/YAML values.

    Raises a ``ValueError`` naming an unknown argument, a missing required one, or one of the wrong type.
    """
    cls = _model_class(kind)
    params = inspect.signature(cls).parameters
    for key in kwargs:
        if key not in params:
            raise ValueError(f"{kind!r} model ({cls.__name__}) has no argument {key!r}; arguments: {list(params)}")
    config: dict[str, Any] = {"kind": kind}
    for name, param in params.items():
        if name not in kwargs and param.default is inspect.Parameter.empty:
            raise ValueError(f"{kind!r} model ({cls.__name__}) needs the argument {name!r}")
        default = None if param.default is inspect.Parameter.empty else param.default
        config[name] = _plain(kind, name, kwargs.get(name, default), default)
    return config


def build_model(kind: str, **kwargs: Any) -> nn.Module:
    """The network ``MODELS[kind](**kwargs)``; every bad argument raises a ``ValueError`` that names it."""
    config = model_config(kind, **kwargs)
    cls = MODELS[config.pop("kind")]
    try:
        return cls(**config)
    except TypeError as err:  # a value of the right kind the constructor still cannot use
        raise ValueError(f"{kind!r} model ({cls.__name__}): invalid value among the arguments "
                         f"{sorted(kwargs)}: {err}") from err


__all__ = ["MODELS", "build_model", "model_config"]
