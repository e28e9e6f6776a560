"""Raw networks ``net(x, label)`` as denoisers, chosen by what the network predicts and what time label it reads.

Predictions (``PREDICTIONS``), with x_t = α x₀ + σ ε:

- ``sigma_score``: σ(t)·∇log p_t (NCSN++ on VE, before the official division by σ), s = raw/σ;
- ``eps``: ε, s = −raw/σ (DDPM/DDPM++, score_sde's VP and sub-VP networks);
- ``eps_learned_variance``: ε in the first C channels and a learned-variance output in the other C (ADM);
- ``x0``: the clean image, s = (α raw − x)/σ²;
- ``v``: v = α ε − σ x₀ (Salimans & Ho), so x̂₀ = (α x − σ v)/(α² + σ²) and ε = (σ x + α v)/(α² + σ²).

Time labels (``TIME_LABELS``): ``sigma`` (σ(t)), ``999t`` (score_sde's continuous VP label), ``t``,
``index`` (round(t·(num_steps − 1)), the step index of a discrete-time process, e.g. ADM's and diffusers')
and ``reversed_index`` (round((1 − t)·(num_steps − 1)), SMLD's noise-level index: 0 is the largest σ).
"""
from __future__ import annotations

import torch
from torch import nn

from ..sde import SDE, VESDE, _bcast
from .base import Denoiser, Evaluation, score_from_x0

PREDICTIONS = ("sigma_score", "eps", "eps_learned_variance", "x0", "v")
TIME_LABELS = ("sigma", "999t", "t", "index", "reversed_index")


def time_label(kind: str, t: torch.Tensor, sde: SDE, num_steps: int = 1000) -> torch.Tensor:
    """The conditioning a network trained with label ``kind`` expects at times t (B,)."""
    if kind == "sigma":
        return sde.marginal_coeffs(t)[1]
    if kind == "999t":
        return 999.0 * t
    if kind == "t":
        return t
    if kind == "index":
        return torch.round(t * (num_steps - 1))
    if kind == "reversed_index":
        return torch.round((1 - t) * (num_steps - 1))
    raise ValueError(f"time_label must be one of {list(TIME_LABELS)}, got {kind!r}")


def score_sde_parameterization(sde: SDE) -> dict[str, str]:
    """The convention of score_sde's continuous-time networks (and invsgm's own): NCSN++ on VE reads σ(t)
    and outputs σ·score; DDPM++/NCSN++ on VP and sub-VP read 999·t and output ε."""
    if isinstance(sde, VESDE):
        return {"prediction": "sigma_score", "time_label": "sigma"}
    return {"prediction": "eps", "time_label": "999t"}


def score_sde_denoiser(net: nn.Module, sde: SDE) -> "NetworkDenoiser":
    """A network that follows score_sde's continuous-time convention (``score_sde_parameterization``)."""
    return NetworkDenoiser(net, sde, **score_sde_parameterization(sde))


class NetworkDenoiser(Denoiser):
    """A raw network as s(x, t) and x̂₀(x, t) on ``sde``, by its ``prediction`` and ``time_label`` (see module)."""

    def __init__(self, net: nn.Module, sde: SDE, prediction: str, time_label: str, num_steps: int = 1000,
                 class_labels: int | torch.Tensor | None = None):
        super().__init__(sde)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {list(PREDICTIONS)}, got {prediction!r}")
        if time_label not in TIME_LABELS:
            raise ValueError(f"time_label must be one of {list(TIME_LABELS)}, got {time_label!r}")
        self.net, self.prediction, self.time_label, self.num_steps = net, prediction, time_label, int(num_steps)
        self.class_labels = class_labels

    @property
    def class_labels(self) -> torch.Tensor | None:
        """The class a class-conditional network (ADM's ``y``) is evaluated at: None, one label, or one per sample."""
        return self._class_labels

    @class_labels.setter
    def class_labels(self, y: int | torch.Tensor | None) -> None:
        if y is not None:
            y = torch.as_tensor(y)
            if y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim > 1:
                raise ValueError(f"class_labels must be an integer or a 1-D integer tensor, got {y.dtype} of "
                                 f"shape {tuple(y.shape)}")
        self._class_labels = y

    def _net(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self._class_labels is None:
            return self.net(x, label)
        y = self._class_labels.to(x.device).long()
        if y.ndim == 0 or y.numel() == 1:
            y = y.reshape(1).expand(x.shape[0])
        elif y.shape[0] != x.shape[0]:
            raise ValueError(f"class_labels holds {y.shape[0]} labels for a batch of {x.shape[0]}")
        return self.net(x, label, y)

    def label(self, t: torch.Tensor) -> torch.Tensor:
        """The network's time conditioning at t (B,)."""
        return time_label(self.time_label, t, self.sde, self.num_steps)

    def _evaluate(self, x: torch.Tensor, t: torch.Tensor) -> Evaluation:
        raw = self._net(x, self.label(t))
        alpha, std = self.sde.marginal_coeffs(t)
        variance = None
        if self.prediction == "eps_learned_variance":
            raw, variance = raw.split(x.shape[1], dim=1)
        if self.prediction == "x0":
            return Evaluation(score_from_x0(x, t, raw, self.sde), raw)
        if self.prediction == "v":  # ε and x̂₀ each straight from v: precise at either end of the process
            a, s, norm = _bcast(alpha, x), _bcast(std, x), _bcast(alpha.pow(2) + std.pow(2), x)
            return Evaluation(-(s * x + a * raw) / (norm * s), (a * x - s * raw) / norm)
        eps = raw if self.prediction != "sigma_score" else -raw
        score = -eps / _bcast(std, x)
        x0 = (x - _bcast(std, x) * eps) / _bcast(alpha, x)
        return Evaluation(score, x0, variance)

    def extra_repr(self) -> str:
        return f"prediction={self.prediction!r}, time_label={self.time_label!r}, sde={self.sde!r}"
