"""The edge of invsgm's configs: YAML files and ``--set`` strings become Python values here, and only here.

- ``yaml_io``: one YAML loader (YAML 1.2 floats: ``1e-3`` is a float), ``read_yaml``, ``parse_value``;
- ``overrides``: ``--set KEY.SUB=VALUE`` (``parse_set``, ``apply_set``, ``apply_sets``, ``parse_sets``);
- ``checks``: value checks raising ``ValueError("KEY = VALUE: expected ...")``, SDE names included.

``invsgm run``, ``invsgm train`` and ``python -m invsgm.official`` read files and ``--set`` items with these,
so the same text gives the same value in all three.
"""
from .._names import sde_key
from .checks import (bad, boolean, choice, integer, is_int, is_real, mapping, number, sde_name, string,
                     type_of)
from .overrides import SET_FORM, apply_set, apply_sets, parse_set, parse_sets
from .yaml_io import Loader, parse_value, read_yaml

__all__ = ["Loader", "SET_FORM", "apply_set", "apply_sets", "bad", "boolean", "choice", "integer", "is_int",
           "is_real", "mapping", "number", "parse_set", "parse_sets", "parse_value", "read_yaml", "sde_key",
           "sde_name", "string", "type_of"]
