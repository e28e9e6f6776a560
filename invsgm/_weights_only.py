"""Reading third-party ``torch.save`` checkpoints safely: ``torch.load(weights_only=True)`` with every failure
turned into a ``ValueError`` that names the file (shared by ``invsgm.official`` and ``invsgm.adm``).

A pickle that asks for more than tensors, numbers and containers (an import or a call: what a pickle
that runs code needs) is refused and nothing in it is run.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch


def load_weights_only(path: Path, *, file_hint: str, holders: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, or a ValueError naming ``path``.

    ``file_hint`` says what the file should be when ``path`` is not a file (e.g. "an official checkpoint
    is one checkpoint_<n>.pth file"); ``holders`` names the checkpoints that hold only tensors, numbers and
    containers (e.g. "Official score_sde checkpoints"), for the message that refuses a code-running pickle.
    """
    if not path.exists():
        raise ValueError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file ({file_hint})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            glob = re.search(r"GLOBAL\s+([\w.]+)", str(err))
            if glob:  # an import or call: what a pickle that runs code asks for
                raise ValueError(f"{path}: refused to load: the pickle asks for the global {glob.group(1)!r}, "
                                 f"more than tensors, numbers and containers; nothing in it was run. {holders} "
                                 f"hold only those: this file is not one, or was altered") from None
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            detail = next((line for line in lines if "nsupported" in line), lines[0] if lines else "")
            raise ValueError(f"{path}: refused to load: not a weights-only pickle ({detail}); truncated or corrupt, "
                             f"or built to run code; nothing in it was run") from None
        raise ValueError(f"{path}: not a readable PyTorch checkpoint (corrupt pickle: {err})") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read the file ({err})") from None
    except Exception as err:  # truncated zip, EOF, garbage bytes: torch raises many kinds
        first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        raise ValueError(f"{path}: not a readable PyTorch checkpoint; truncated or corrupt? "
                         f"({type(err).__name__}{': ' + first if first else ''})") from None


__all__ = ["load_weights_only"]
