"""The measurement seam: what was observed about x, independent of how a posterior is approximated.

- ``LinearMeasurement(A, σ_y)``: y = A x + σ_y ε, ε ~ N(0, I); exact log p(y | x₀) = log N(y; A x₀, σ_y² I);
- ``ClassLabel(classifier)``: a class label y whose likelihood p_t(y | x_t) is a noise-conditional classifier;
- ``Joint([m₁, m₂, ...])``: independent measurements of one x; y is the tuple (y₁, y₂, ...).

Every measurement checks an observation batch (B, ...), repeats and slices it; the batch of y always
has the batch size of x (``solve`` repeats it for every sample).

Observations as files (what ``invsgm run`` writes and reads): ``file_parts`` are the parts whose y is a
file: an image, or an array for measurements that are not pictures (MRI's k-space, CT's sinogram:
``LinearOperator.file_is_image``); ``simulate_file(images, generator, centered)`` draws the observation of
clean images as its file holds it (``LinearOperator.to_file``: the low-resolution image of super-resolution,
the grey image of colorization, the sampled k-space, ...) and ``observe(x, generator, images=...,
labels=..., centered=...)`` the y of a batch of inputs: such files read, class labels given, other parts simulated from clean x. ``centered`` says the
model works on [−1, 1] (y = A(2·img − 1) + noise), not on [0, 1] images.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from . import _checks
from .operators import LinearOperator, Matrix


class Measurement:
    """Base class: an observation model p(y | x₀)."""

    x_shape: tuple[int, ...] | None = None  # shape of one x, when the measurement determines it

    @property
    def has_density(self) -> bool:
        """Whether ``log_likelihood`` is a density of y (not None)."""
        return False

    def simulate(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Any:
        """A draw of y given clean x (B, ...)."""
        raise NotImplementedError(f"{type(self).__name__} cannot simulate observations")

    def log_likelihood(self, x0: torch.Tensor, y: Any) -> torch.Tensor | None:
        """log p(y | x₀) per sample (B,), or None when y is a deterministic function of x₀ (σ_y = 0)."""
        return None

    def check(self, y: Any) -> Any:
        """y after checking it is a tensor batch (B, ...); raise a ``ValueError`` naming the problem."""
        if not torch.is_tensor(y) or y.ndim < 1 or y.shape[0] < 1:
            raise ValueError(f"{type(self).__name__}: the observation must be a tensor of shape (B, ...), got "
                             f"{tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")
        return y

    def repeat(self, y: Any, n: int) -> Any:
        """Each observation repeated n times in a row: (B, ...) → (B·n, ...)."""
        return y.repeat_interleave(n, dim=0)

    def batch_size(self, y: Any) -> int:
        """Number of observations in y."""
        return y.shape[0]

    def select(self, y: Any, index: slice | torch.Tensor) -> Any:
        """A slice (or an index selection) of the observation batch."""
        return y[index]

    def to(self, y: Any, device: torch.device) -> Any:
        """The observation on ``device``."""
        return y.to(device)

    @property
    def parts(self) -> tuple["Measurement", ...]:
        """The independent measurements this one is made of (itself, unless ``Joint``)."""
        return (self,)

    @property
    def file_parts(self) -> tuple["LinearMeasurement", ...]:
        """The parts whose observation is a file in ``invsgm run`` (an image, or an array: ``file_is_image``)."""
        return ()

    @property
    def takes_labels(self) -> bool:
        """Whether a part of y is a class label given with each input (not measured from an image)."""
        return False

    def observe(self, x: torch.Tensor | None = None, generator: torch.Generator | None = None, *,
                images: Any = None, labels: torch.Tensor | None = None, centered: bool = False) -> Any:
        """y of one batch of inputs: image parts read from observation files' pixels ``images`` ((B, *file_shape)
        in image units; a tuple with one batch per image part when there are several), class labels given
        (``labels`` (B,)), every other part simulated from clean ``x`` (the model's space) with ``generator``."""
        if x is None:
            raise ValueError(f"{self!r}: no clean x to simulate the observation from")
        return self.simulate(x, generator)

    def picture(self, y: Any, centered: bool = False) -> torch.Tensor | None:
        """A picture (B, C, H, W) in [0, 1] of the observation, for display (the operator's ``to_image`` of the first
        part that has one), or None."""
        return None

    def baseline(self, y: Any, centered: bool = False) -> torch.Tensor | None:
        """The classical method's images (B, *x_shape) in [0, 1] (on the CPU) for the observation y (the first part
        that has one: ``invsgm.baselines.baseline_for``), or None."""
        return None

    def valid_images(self, x: torch.Tensor, y: Any, centered: bool = False) -> torch.Tensor:
        """Samples x as images (in [0, 1] units) made valid: clamped to [0, 1], and for noiseless observations kept
        consistent where the operator knows how (``LinearOperator.feasible_images``: colorization's grey)."""
        return x.clamp(0, 1)

    def with_mask(self, observed: torch.Tensor) -> "Measurement":
        """This measurement with its image part observing only the pixels ``observed`` ((1, h, w) bool, a mask
        read with an observation file; see ``LinearOperator.with_mask``); itself when nothing changes."""
        return self


class LinearMeasurement(Measurement):
    """y = A x + σ_y ε with A a ``LinearOperator`` (or an (m, d) matrix, then x are vectors (B, d))."""

    def __init__(self, operator: LinearOperator | torch.Tensor, sigma_y: float = 0.0):
        if torch.is_tensor(operator):
            operator = Matrix(operator)
        if not isinstance(operator, LinearOperator):
            raise ValueError(f"LinearMeasurement needs a LinearOperator or a matrix, got {type(operator).__name__}")
        self.operator = operator
        self.sigma_y = _checks.non_negative("sigma_y", sigma_y)
        self.x_shape = tuple(operator.in_shape)

    @property
    def has_density(self) -> bool:
        return self.sigma_y > 0

    def check(self, y: torch.Tensor) -> torch.Tensor:
        y = super().check(y)
        if tuple(y.shape[1:]) != tuple(self.operator.out_shape):
            raise ValueError(f"{type(self.operator).__name__} measurement: the observation must have shape (B, "
                             f"{', '.join(map(str, self.operator.out_shape))}), got {tuple(y.shape)}")
        return y

    def simulate(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """y = A x + σ_y z."""
        return self.operator.observe(x, self.sigma_y, generator)

    def log_likelihood(self, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """log N(y; A x₀, σ_y² I); None when σ_y = 0."""
        if self.sigma_y == 0:
            return None
        resid = (y - self.operator(x0)).flatten(1)
        m = resid.shape[1]
        return -0.5 * resid.pow(2).sum(1) / self.sigma_y ** 2 - 0.5 * m * math.log(2 * math.pi * self.sigma_y ** 2)

    def consistent(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x + A⁺(y − A x): the point nearest x with A x = y (for y in A's range)."""
        return x + self.operator.pinv(y - self.operator(x))

    # --- images and files --------------------------------------------------------------------------------

    @property
    def file_parts(self) -> tuple["LinearMeasurement", ...]:
        try:
            self.operator.file_shape
        except NotImplementedError:
            return ()
        return (self,)

    def _ones(self, like: torch.Tensor) -> torch.Tensor:
        """A·1 (the observation of a white image), on ``like``'s device and dtype."""
        return self.operator(torch.ones((1, *self.operator.in_shape), dtype=like.dtype, device=like.device))

    def image_units(self, y: torch.Tensor, centered: bool) -> torch.Tensor:
        """The observation of the image in [0, 1]: (y + A·1)/2 for centred models (A x = A(2 img − 1)), else y."""
        return (y + self._ones(y)) / 2 if centered else y

    def model_units(self, y_img: torch.Tensor, centered: bool) -> torch.Tensor:
        """The inverse of ``image_units``: 2 y_img − A·1 for centred models, else y_img."""
        return 2 * y_img - self._ones(y_img) if centered else y_img

    def simulate_file(self, images: torch.Tensor, generator: torch.Generator | None = None,
                      centered: bool = False) -> torch.Tensor:
        """A draw of the observation of clean ``images`` (in [0, 1]) as an image file holds it: A·img + σ z in image
        units (σ = σ_y / 2 for a centred model), (B, *operator.file_shape), unclamped."""
        sigma = self.sigma_y / (2.0 if centered else 1.0)
        return self.operator.to_file(self.operator.observe(images, sigma, generator))

    def observe(self, x=None, generator=None, *, images=None, labels=None, centered=False) -> torch.Tensor:
        if images is not None and self.file_parts:
            return self.model_units(self.operator.from_file(images), centered)
        return super().observe(x, generator, images=images, labels=labels, centered=centered)

    def picture(self, y: torch.Tensor, centered: bool = False) -> torch.Tensor | None:
        try:
            return self.operator.to_image(self.image_units(y, centered)).clamp(0, 1)
        except NotImplementedError:  # measurements that are not images
            return None

    def baseline(self, y: torch.Tensor, centered: bool = False) -> torch.Tensor | None:
        """The classical method for the operator (``invsgm.baselines.baseline_for``) on the image-space observation
        (``image_units``), with σ_y in image units."""
        from .baselines import baseline_for

        return baseline_for(self.operator, self.image_units(y, centered), self.sigma_y / (2.0 if centered else 1.0))

    def valid_images(self, x: torch.Tensor, y: torch.Tensor, centered: bool = False) -> torch.Tensor:
        if self.sigma_y > 0:
            return x.clamp(0, 1)
        return self.operator.feasible_images(x, self.image_units(y, centered))

    def with_mask(self, observed: torch.Tensor) -> "LinearMeasurement":
        operator = self.operator.with_mask(observed)
        return self if operator is self.operator else LinearMeasurement(operator, self.sigma_y)

    def __repr__(self) -> str:
        return f"LinearMeasurement({self.operator!r}, sigma_y={self.sigma_y})"


class ClassLabel(Measurement):
    """Integer class labels y (B,) of x, with p_t(y | x_t) given by a noise-conditional ``classifier``
    (an object with ``log_prob(x, t, y)``, e.g. ``TimeConditionalClassifier``); p(y | x₀) is it at t = 0."""

    def __init__(self, classifier: Any, x_shape: tuple[int, ...] | None = None):
        if not callable(getattr(classifier, "log_prob", None)):
            raise ValueError(f"ClassLabel needs a noise-conditional classifier with log_prob(x, t, y), got "
                             f"{type(classifier).__name__}")
        self.classifier = classifier
        self.x_shape = None if x_shape is None else tuple(x_shape)

    @property
    def has_density(self) -> bool:
        return True

    @property
    def takes_labels(self) -> bool:
        return True

    def observe(self, x=None, generator=None, *, images=None, labels=None, centered=False) -> torch.Tensor:
        if labels is None:
            raise ValueError("ClassLabel: the observation is a class label per input; none was given")
        return self.check(labels)

    @property
    def num_classes(self) -> int | None:
        """Number of classes of the classifier's network, when it says."""
        return getattr(getattr(self.classifier, "net", None), "num_classes", None)

    def check(self, y: torch.Tensor | int) -> torch.Tensor:
        y = torch.as_tensor(y)
        if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or y.numel() == 0:
            raise ValueError(f"ClassLabel: the observation must be a 1-D integer tensor of class labels, got "
                             f"{y.dtype} of shape {tuple(y.shape)}")
        k = self.num_classes
        if k is not None and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"ClassLabel: labels must lie in [0, {k - 1}], got values in "
                             f"[{y.min().item()}, {y.max().item()}]")
        return y.long()

    def log_likelihood(self, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p_0(y | x₀): the classifier at t = 0."""
        with torch.no_grad():
            return self.classifier.log_prob(x0, 0.0, y.to(x0.device))

    def log_likelihood_t(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p_t(y | x_t), differentiable in x."""
        return self.classifier.log_prob(x, t, y.to(x.device))

    def __repr__(self) -> str:
        return f"ClassLabel({type(self.classifier).__name__})"


class Joint(Measurement):
    """Independent measurements of the same x: log-likelihoods add; y is a tuple with one entry per part."""

    def __init__(self, measurements: Sequence[Measurement]):
        measurements = list(measurements)
        if len(measurements) < 2 or not all(isinstance(m, Measurement) for m in measurements):
            raise ValueError(f"Joint needs at least two Measurement objects, got {measurements!r}")
        self.measurements = tuple(p for m in measurements for p in m.parts)
        shapes = {m.x_shape for m in self.measurements if m.x_shape is not None}
        if len(shapes) > 1:
            raise ValueError(f"Joint: the measurements disagree on the shape of x: {sorted(shapes)}")
        self.x_shape = shapes.pop() if shapes else None

    @property
    def parts(self) -> tuple[Measurement, ...]:
        return self.measurements

    @property
    def file_parts(self) -> tuple[LinearMeasurement, ...]:
        return tuple(p for m in self.measurements for p in m.file_parts)

    @property
    def takes_labels(self) -> bool:
        return any(m.takes_labels for m in self.measurements)

    def observe(self, x=None, generator=None, *, images=None, labels=None, centered=False):
        images = list(images) if isinstance(images, (tuple, list)) else [] if images is None else [images]
        y = []
        for m in self.measurements:
            mine = images.pop(0) if m.file_parts and images else None
            y.append(m.observe(x, generator, images=mine, labels=labels, centered=centered))
        return tuple(y)

    def picture(self, y, centered=False):
        return next((p for p in (m.picture(yi, centered) for m, yi in zip(self.measurements, y)) if p is not None),
                    None)

    def baseline(self, y, centered=False):
        return next((b for b in (m.baseline(yi, centered) for m, yi in zip(self.measurements, y)) if b is not None),
                    None)

    def valid_images(self, x, y, centered=False):
        for m, yi in zip(self.measurements, y):
            x = m.valid_images(x, yi, centered)
        return x

    def with_mask(self, observed):
        parts = [m.with_mask(observed) for m in self.measurements]
        return self if all(a is b for a, b in zip(parts, self.measurements)) else Joint(parts)

    @property
    def has_density(self) -> bool:
        return all(m.has_density for m in self.measurements)

    def simulate(self, x, generator=None):
        return tuple(m.simulate(x, generator) for m in self.measurements)

    def log_likelihood(self, x0, y):
        terms = [m.log_likelihood(x0, yi) for m, yi in zip(self.measurements, y)]
        if any(term is None for term in terms):
            return None
        return torch.stack(terms).sum(0)

    def check(self, y):
        if not isinstance(y, (tuple, list)) or len(y) != len(self.measurements):
            raise ValueError(f"Joint of {len(self.measurements)} measurements needs a tuple of "
                             f"{len(self.measurements)} observations, got {type(y).__name__}")
        y = tuple(m.check(yi) for m, yi in zip(self.measurements, y))
        sizes = {m.batch_size(yi) for m, yi in zip(self.measurements, y)}
        if len(sizes) != 1:
            raise ValueError(f"Joint: the observations have different batch sizes {sorted(sizes)}")
        return y

    def repeat(self, y, n):
        return tuple(m.repeat(yi, n) for m, yi in zip(self.measurements, y))

    def batch_size(self, y):
        return self.measurements[0].batch_size(y[0])

    def select(self, y, index):
        return tuple(m.select(yi, index) for m, yi in zip(self.measurements, y))

    def to(self, y, device):
        return tuple(m.to(yi, device) for m, yi in zip(self.measurements, y))

    def __repr__(self) -> str:
        return f"Joint({list(self.measurements)!r})"


def linear_part(measurement: Measurement, solver: str) -> LinearMeasurement:
    """The measurement as a ``LinearMeasurement``, or a ``ValueError`` saying that ``solver`` needs one."""
    if not isinstance(measurement, LinearMeasurement):
        raise ValueError(f"{solver} needs a linear measurement y = A x + σ_y ε, got {measurement!r}")
    return measurement


__all__ = ["ClassLabel", "Joint", "LinearMeasurement", "Measurement", "linear_part"]
