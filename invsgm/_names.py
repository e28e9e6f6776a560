"""Names written in configs and on command lines, normalised in one place.

Kept free of YAML and torch: ``invsgm.sde`` imports it, and so do the config checks of ``invsgm.config``.
"""
from __future__ import annotations


def sde_key(kind: str) -> str:
    """An SDE name as a key of ``invsgm.sde.SDES``: lower case, no '-' or '_' ('VP' → 'vp', 'sub-VP' → 'subvp')."""
    return kind.lower().replace("-", "").replace("_", "")


__all__ = ["sde_key"]
