"""Denoiser adapters: networks and exact priors as s(x, t) and x̂₀(x, t) (Tweedie written once, in ``base``)."""
from __future__ import annotations

from typing import Any

from ..sde import SDE
from .base import Denoiser, Evaluation, ScoreFunctionDenoiser, score_from_x0, tweedie_x0
from .network import (PREDICTIONS, TIME_LABELS, NetworkDenoiser, score_sde_denoiser, score_sde_parameterization,
                      time_label)


def as_denoiser(model: Any, sde: SDE | None = None) -> Denoiser:
    """A ``Denoiser`` from a denoiser, an object with ``as_denoiser(sde)`` (an exact prior, a pretrained model)
    or a score function s(x, t) (then ``sde`` is required)."""
    if isinstance(model, Denoiser):
        return model
    if hasattr(model, "as_denoiser"):
        return model.as_denoiser(sde)
    if callable(model):
        if not isinstance(sde, SDE):
            raise ValueError(f"a score function needs its SDE (sde=VPSDE(...)), got {sde!r}")
        return ScoreFunctionDenoiser(model, sde)
    raise ValueError(f"model must be a Denoiser, a pretrained model, a GaussianMixture or a score function, got "
                     f"{type(model).__name__}")


__all__ = ["Denoiser", "Evaluation", "NetworkDenoiser", "PREDICTIONS", "ScoreFunctionDenoiser", "TIME_LABELS",
           "as_denoiser", "score_from_x0", "score_sde_denoiser", "score_sde_parameterization", "time_label", "tweedie_x0"]
