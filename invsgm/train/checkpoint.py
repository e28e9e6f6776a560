"""Atomic checkpoints: ``torch.save`` to a temporary file in the same folder, then ``os.replace``.

A crash (or a kill) while writing leaves the previous checkpoint intact and no temporary file behind.
Checkpoints hold only tensors, dicts, lists, numbers and strings, so ``torch.load(path, weights_only=True)``
reads them (no pickled code is executed on load).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_open

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The checkpoint at ``path`` (loaded with ``weights_only=True``), or None if there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a foreign or damaged file: say which, and what to do
        raise ValueError(f"cannot read the checkpoint {path} ({type(err).__name__}: {err}); "
                         f"remove it or choose another output folder") from None


__all__ = ["CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint"]
