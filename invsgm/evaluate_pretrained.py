"""Figures of merit of the shipped models ``digits_score``, ``digits_classifier``, ``photos_score`` and
``photos_crops_score``.

1. Digit samples are digits: a clean CNN trained here on the digits train split labels ≥ 80 % of the samples
   with confidence > 0.9, and every class's share lies in [4 %, 18 %]; the shipped classifier at t = eps
   is reported beside it as a second judge.
2. The shipped classifier's accuracy on the digits test split at t = 0, 0.25, 0.5, 0.75 (x_t drawn from the
   card's SDE) is ≥ 0.9 at t = 0 and non-increasing in t within 0.02.
3. The photo models' dequantised bits/dim on the held-out test patches (probability-flow ODE), side by side,
   each below that of a full-covariance Gaussian fitted to the train patches (same dequantisation).

``python -m invsgm.evaluate_pretrained --grid out/digits_samples.png`` prints every figure (256 samples,
500 PC steps, all 80 test patches) and writes the digit samples as a PNG grid;
``python -m invsgm.evaluate_pretrained --only-photos --photos photos_crops_score runs/X/pretrained`` prints
figure 3 for the models named (same patches, dequantisation noise and probes; default: both shipped ones).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import binom
from torch import nn

from .data import digits, image_grid, photos, photos_test_images
from .imageio import write_png
from .likelihood import dequantized_bits_per_dim
from .pretrained import Pretrained, from_model_space, load_pretrained, to_model_space
from .sampling import default_timesteps, langevin, reverse_diffusion, sample_ode_adaptive, sample_pc

CONFIDENCE = 0.9            # a sample counts as a confident digit above this top-class probability
MIN_CONFIDENT = 0.8         # share of samples that must be confident digits
CLASS_SHARE = (0.04, 0.18)  # bounds on each class's share of the samples (10 classes: uniform is 0.1)
MIN_CLEAN_ACCURACY = 0.95   # the clean judge's accuracy on the digits test split
CLASSIFIER_TIMES = (0.0, 0.25, 0.5, 0.75)
MIN_ACCURACY_T0 = 0.9       # the shipped classifier's test accuracy at t = 0
MONOTONE_SLACK = 0.02       # accuracy may rise by at most this much from one time to the next
RIDGES = tuple(10.0 ** k for k in range(-6, 0))  # ridge grid of the Gaussian baseline's covariance


# --- 1. digit samples ------------------------------------------------------------------------------

class DigitCNN(nn.Module):
    """A plain conv net on H×H grey images in [0, 1] (H divisible by 4): two conv–conv–max-pool stages, dropout, linear."""

    def __init__(self, num_classes: int = 10, image_size: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * (image_size // 4) ** 2, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, 1, H, W) in [0, 1]."""
        return self.head(self.features(images))


def _shifted(images: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Each image translated by its own random offset in [−max_shift, max_shift]² (zero fill)."""
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``net`` (eval mode) on ``images``."""
    net.eval()
    return (net(images).argmax(1) == labels).float().mean().item()


def train_clean_classifier(image_size: int = 16, *, steps: int = 250, batch_size: int = 64, lr: float = 2e-3,
                           seed: int = 0) -> tuple[DigitCNN, float]:
    """A ``DigitCNN`` trained (Adam, ±1-pixel shifts) on the digits train split; returns (net, test accuracy).

    Seeded (initialisation and dropout inside ``fork_rng``: the global RNG is left as it was)."""
    g = torch.Generator().manual_seed(seed)
    train = digits(image_size, "train")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = DigitCNN(10, image_size)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        net.train()
        for _ in range(steps):
            idx = torch.randint(0, len(train), (batch_size,), generator=g)
            loss = F.cross_entropy(net(_shifted(train.images[idx], g)), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    test = digits(image_size, "test")
    return net.eval(), accuracy(net, test.images, test.labels)


def class_share_bounds(n: int) -> tuple[float, float]:
    """The wider of ``CLASS_SHARE`` and the central 99.9 % range of a uniform sampler's class share among
    n samples (Binomial(n, 0.1)/n): [4 %, 18 %] for n ≥ 256, wider for fewer samples."""
    lo, hi = float(binom.ppf(0.0005, n, 0.1)) / n, float(binom.isf(0.0005, n, 0.1)) / n
    return min(CLASS_SHARE[0], lo), max(CLASS_SHARE[1], hi)


@dataclass
class Judgement:
    """How one judge labels n samples: share confident (top probability > CONFIDENCE) and class histogram."""

    confident: float
    counts: list[int]
    max_deviation: float  # max_k |share_k − 0.1|
    kl_uniform: float     # KL(shares ‖ uniform) in nats
    bounds: tuple[float, float]

    @property
    def passed(self) -> bool:
        """Whether ≥ MIN_CONFIDENT of the samples are confident and every class share lies within ``bounds``."""
        n = sum(self.counts)
        return self.confident >= MIN_CONFIDENT and all(self.bounds[0] <= c / n <= self.bounds[1] for c in self.counts)

    def __str__(self) -> str:
        n = sum(self.counts)
        return (f"confident (p > {CONFIDENCE}) {self.confident:.1%} (need ≥ {MIN_CONFIDENT:.0%}); histogram "
                f"{self.counts}; shares {min(self.counts) / n:.1%}..{max(self.counts) / n:.1%} "
                f"(need {self.bounds[0]:.1%}..{self.bounds[1]:.1%}); max|share − 0.1| {self.max_deviation:.3f}; "
                f"KL to uniform {self.kl_uniform:.4f} nats → {'PASS' if self.passed else 'FAIL'}")


def judge(probs: torch.Tensor) -> Judgement:
    """The ``Judgement`` of class probabilities (n, 10) of n samples (histogram of the top class)."""
    n, k = probs.shape
    counts = torch.bincount(probs.argmax(1), minlength=k)
    shares = counts.double() / n
    kl = (shares[shares > 0] * (shares[shares > 0] * k).log()).sum().item()
    return Judgement((probs.max(1).values > CONFIDENCE).double().mean().item(), counts.tolist(),
                     (shares - 1 / k).abs().max().item(), kl, class_share_bounds(n))


@torch.no_grad()
def sample_digits(score: Pretrained, n: int, *, sampler: str = "pc", steps: int = 500, snr: float = 0.16,
                  rtol: float = 1e-3, seed: int = 0) -> torch.Tensor:
    """n samples of a score model as images in [0, 1] (clamped): sampler 'pc' (reverse diffusion + one Langevin
    step at ``snr``, ``steps`` steps) or 'ode' (probability flow, adaptive RK45 at rtol = atol = ``rtol``)."""
    data = score.card["data"]
    g = torch.Generator().manual_seed(seed)
    x = score.sde.prior_sampling((n, data["channels"], data["image_size"], data["image_size"]), generator=g)
    if sampler == "pc":
        x = sample_pc(score.model, score.sde, x, default_timesteps(score.sde, steps), predictor=reverse_diffusion,
                      corrector=langevin, snr=snr, generator=g)
    elif sampler == "ode":
        x = sample_ode_adaptive(score.model, score.sde, x, rtol=rtol, atol=rtol).x
    else:
        raise ValueError(f"sampler must be 'pc' or 'ode', got {sampler!r}")
    return from_model_space(x, score.card).clamp(0, 1)


@torch.no_grad()
def judge_samples(images: torch.Tensor, clean: nn.Module, classifier: Pretrained | None = None
                  ) -> dict[str, Judgement]:
    """Judgements of images in [0, 1] by the clean CNN and (if given) the shipped classifier at t = sde.eps."""
    clean.eval()
    verdicts = {"clean CNN": judge(clean(images).softmax(1))}
    if classifier is not None:
        x = to_model_space(images, classifier.card)
        verdicts[f"shipped classifier (t={classifier.sde.eps:g})"] = judge(
            classifier.model(x, classifier.sde.eps).softmax(1))
    return verdicts


# --- 2. the shipped classifier over time ---------------------------------------------------------

@torch.no_grad()
def accuracy_over_time(classifier: Pretrained, times: tuple[float, ...] = CLASSIFIER_TIMES, *, n_draws: int = 4,
                       seed: int = 0) -> list[float]:
    """Test-split accuracy of the classifier on x_t = α(t) x0 + σ(t) z (the card's SDE), for each t, averaged
    over ``n_draws`` seeded draws of z."""
    test = digits(classifier.card["data"]["image_size"], "test")
    x0 = to_model_space(test.images, classifier.card)
    g = torch.Generator().manual_seed(seed)
    result = []
    for t in times:
        mean, std = classifier.sde.marginal_prob(x0, t)
        hits = 0.0
        for _ in range(n_draws):
            x_t = mean + std[:, None, None, None] * torch.randn(x0.shape, generator=g)
            hits += (classifier.model(x_t, t).argmax(1) == test.labels).float().mean().item()
        result.append(hits / n_draws)
    return result


def is_monotone(values: list[float], slack: float = MONOTONE_SLACK) -> bool:
    """Whether each value exceeds the one before it by at most ``slack``."""
    return all(b <= a + slack for a, b in zip(values, values[1:]))


# --- 3. photo bits/dim -----------------------------------------------------------------------------

def quantize(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] → uint8 levels round(255 · img)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def dequantize(levels: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Centered dequantised data x = 2 (k + u)/256 − 1 in [−1, 1), as ``dequantized_bits_per_dim(centered=True)``."""
    return 2 * (levels.to(u.dtype) + u) / 256 - 1


@dataclass
class GaussianFit:
    """N(mean, C + ridge·I) of flattened data, with the sample covariance C = V diag(eigvals) Vᵀ (rank ≤ N − 1)."""

    mean: torch.Tensor
    eigvals: torch.Tensor
    eigvecs: torch.Tensor

    def bits_per_dim(self, x: torch.Tensor, ridge: float) -> torch.Tensor:
        """−log N(x; mean, C + ridge·I)/(D ln 2) per row of x (B, D), float64."""
        y = x.double() - self.mean
        d = y.shape[1]
        proj = y @ self.eigvecs
        maha = (proj.pow(2) / (self.eigvals + ridge)).sum(1) + (y.pow(2).sum(1) - proj.pow(2).sum(1)) / ridge
        logdet = (self.eigvals + ridge).log().sum() + (d - self.eigvals.numel()) * math.log(ridge)
        return 0.5 * (maha + logdet + d * math.log(2 * math.pi)) / (d * math.log(2))


def fit_gaussian(x: torch.Tensor) -> GaussianFit:
    """The mean and sample covariance (by a thin SVD, float64) of the rows of x (N, D)."""
    x = x.double()
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    keep = s > s[0] * 1e-10
    return GaussianFit(mean, s[keep].pow(2) / (x.shape[0] - 1), vh[keep].T)


def gaussian_baseline_bpd(test_levels: torch.Tensor, patch_size: int = 32, *, seed: int = 0
                          ) -> dict[float, torch.Tensor]:
    """Dequantised bits/dim per test patch (uint8, (B, 3, P, P)) of a full-covariance Gaussian fitted to the
    dequantised train patches in [−1, 1], for each ridge of ``RIDGES``; u ~ U[0, 1)^D drawn from seeded generators."""
    train = quantize(photos(patch_size, "train").images)
    u_train = torch.rand(train.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    fit = fit_gaussian(dequantize(train, u_train).flatten(1))
    u = torch.rand(test_levels.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = dequantize(test_levels, u).flatten(1)
    return {ridge: fit.bits_per_dim(x, ridge) + math.log2(128) for ridge in RIDGES}


def best_ridge(bpd: dict[float, torch.Tensor]) -> float:
    """The ridge with the lowest mean test bpd: chosen on the test patches, it favours the Gaussian baseline."""
    return min(bpd, key=lambda r: bpd[r].mean().item())


def model_bpd(score: Pretrained, test_levels: torch.Tensor, *, seed: int = 0, rtol: float = 1e-5,
              batch_size: int = 16) -> torch.Tensor:
    """Dequantised bits/dim per test patch by the probability-flow ODE (RK45, rtol = atol, one Rademacher
    probe), in batches of ``batch_size``; u and the probes come from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    centered = score.card["data"]["centered"]
    return torch.cat([dequantized_bits_per_dim(score.model, score.sde, chunk, centered=centered, generator=g,
                                               rtol=rtol, atol=rtol)
                      for chunk in test_levels.split(batch_size)])


def held_out_patches(n: int, patch_size: int = 32) -> torch.Tensor:
    """The first n of the fixed draw of held-out photo patches (``photos_test_images``), as uint8."""
    return quantize(photos_test_images(n, patch_size))


# --- the report ------------------------------------------------------------------------------------

def _mean_se(v: torch.Tensor) -> str:
    """'mean ± standard error' of a 1-D tensor (the mean alone for one value)."""
    if v.numel() == 1:
        return f"{v.item():.4f}"
    return f"{v.mean().item():.4f} ± {v.std().item() / math.sqrt(v.numel()):.4f}"


def main(argv: list[str] | None = None) -> None:
    """Print every figure of the shipped models with the full settings and write the digit sample grid."""
    parser = argparse.ArgumentParser(prog="python -m invsgm.evaluate_pretrained", description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=Path, default=Path("out/digits_samples.png"), help="PNG of the digit samples")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=500, help="PC steps of the digit sampler")
    parser.add_argument("--patches", type=int, default=80, help="held-out photo patches (at most 80)")
    parser.add_argument("--rtol", type=float, default=1e-5, help="rtol = atol of the likelihood ODE")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photos", nargs="+", default=["photos_score", "photos_crops_score"],
                        metavar="NAME_OR_FOLDER",
                        help="photo score models whose bits/dim to report side by side (shipped names or folders, "
                             "e.g. runs/photos_score_v2/pretrained); default both shipped ones")
    parser.add_argument("--only-photos", action="store_true", help="skip the digit figures (1 and 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    if not args.only_photos:
        _digit_figures(args)
    _photo_figures(args)
    print(f"total {time.perf_counter() - start:.0f} s")


def _digit_figures(args: argparse.Namespace) -> None:
    """Figures 1 and 2: digit samples judged by the clean CNN and the shipped classifier; its accuracy over t."""
    start = time.perf_counter()
    score, classifier = load_pretrained("digits_score"), load_pretrained("digits_classifier")
    size = score.card["data"]["image_size"]
    clean, clean_acc = train_clean_classifier(size, seed=args.seed)
    print(f"clean judge: DigitCNN test accuracy {clean_acc:.3f} (need ≥ {MIN_CLEAN_ACCURACY}) "
          f"[{time.perf_counter() - start:.0f} s]")
    test = digits(size, "test")
    with torch.no_grad():
        print(f"  on the {len(test)} test digits (reference): {judge(clean(test.images).softmax(1))}")
    t0 = time.perf_counter()
    images = sample_digits(score, args.samples, steps=args.steps, seed=args.seed)
    print(f"digits_score: {args.samples} samples, PC {args.steps} steps (reverse diffusion + Langevin) "
          f"[{time.perf_counter() - t0:.0f} s]; grid → {write_png(args.grid, image_grid(images, nrow=16))}")
    for name, verdict in judge_samples(images, clean, classifier).items():
        print(f"  {name}: {verdict}")

    t0 = time.perf_counter()
    accs = accuracy_over_time(classifier, seed=args.seed)
    print("digits_classifier test accuracy: " + ", ".join(f"t={t:g}: {a:.3f}" for t, a in zip(CLASSIFIER_TIMES, accs))
          + f" (need t=0 ≥ {MIN_ACCURACY_T0}, non-increasing within {MONOTONE_SLACK}) → "
          + ("PASS" if accs[0] >= MIN_ACCURACY_T0 and is_monotone(accs) else "FAIL")
          + f" [{time.perf_counter() - t0:.0f} s]")


def _photo_figures(args: argparse.Namespace) -> None:
    """Figure 3 for each model of ``args.photos``: bits/dim on the same held-out patches (same u and probes)."""
    gaussians: dict[int, tuple[dict[float, torch.Tensor], float]] = {}  # by image size
    for name in args.photos:
        t0 = time.perf_counter()
        photo = load_pretrained(name)
        size = photo.card["data"]["image_size"]
        levels = held_out_patches(args.patches, size)
        if size not in gaussians:
            gaussian = gaussian_baseline_bpd(levels, size, seed=args.seed)
            gaussians[size] = gaussian, best_ridge(gaussian)
            print(f"Gaussian mean bpd by ridge ({size}×{size}): "
                  + ", ".join(f"{r:g}: {b.mean().item():.3f}" for r, b in gaussian.items()))
        gaussian, ridge = gaussians[size]
        ours = model_bpd(photo, levels, seed=args.seed, rtol=args.rtol)
        steps = photo.card.get("training", {}).get("steps")
        print(f"{name} ({photo.card['data']['name']}, {steps} steps) bits/dim on {args.patches} test patches: "
              f"model {_mean_se(ours)} (ODE, rtol {args.rtol:g}), Gaussian {_mean_se(gaussian[ridge])} "
              f"(ridge {ridge:g}) → {'PASS' if ours.mean() < gaussian[ridge].mean() else 'FAIL'} "
              f"[{time.perf_counter() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
