"""Noise-conditional classifiers: shapes, noise conditioning, ∇ₓ log p_t(y | x), overfitting, sizes, checks."""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from invsgm.models import (NoiseConditionalClassifier, TimeConditionalClassifier, classifier_cpu_small,
                           classifier_gpu, parameter_count)
from invsgm.sde import VESDE, VPSDE

TINY = dict(width=8, blocks_per_level=1)



@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 28, 32])
def test_logits_shape(channels, size):
    net = NoiseConditionalClassifier(channels, size, num_classes=7, ch_mult=(1, 2, 2), **TINY).eval()
    with torch.no_grad():
        logits = net(torch.randn(3, channels, size, size), torch.tensor([0.01, 1.0, 50.0]))
        assert net(torch.randn(2, channels, size, size), torch.tensor(0.5)).shape == (2, 7)  # scalar label
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()


def _label(sde, t: torch.Tensor) -> torch.Tensor:
    """score_sde's network labels: σ(t) on VE, 999 t on VP."""
    return sde.sigma(t) if isinstance(sde, VESDE) else 999.0 * t


@pytest.mark.parametrize("sde, embedding", [(VESDE(0.01, 50.0), "fourier"), (VPSDE(), "positional")])
def test_noise_level_changes_logits(sde, embedding):
    torch.manual_seed(0)
    net = NoiseConditionalClassifier(1, 16, 4, ch_mult=(1, 2), embedding_type=embedding, init_scale=1.0, **TINY)
    clf = TimeConditionalClassifier(net, sde).eval()
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        a, b = clf(x, 0.2), clf(x, 0.8)
        torch.testing.assert_close(a, net(x, _label(sde, torch.full((4,), 0.2))))
    diff = (a - b).abs().max().item()
    print(f"\n{embedding}: max |logits(t=0.2) − logits(t=0.8)| = {diff:.3g}")
    assert diff > 1e-3


def test_log_prob_grad_is_gradient_of_log_softmax():
    torch.manual_seed(0)
    net = NoiseConditionalClassifier(1, 16, 3, ch_mult=(1, 2), init_scale=1.0, **TINY).double()
    sde = VESDE(0.01, 50.0)
    clf = TimeConditionalClassifier(net, sde).eval()
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    t, y = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=torch.float64), torch.tensor([0, 2, 1, 2])

    grad = clf.log_prob_grad(x, t, y)
    with torch.no_grad():
        grad_no_grad = clf.log_prob_grad(x, t, y)
        assert clf.log_prob_grad(x, t, 1).shape == x.shape  # one class for the whole batch
    # reference: each sample's own autograd gradient of log_softmax(logits)[y]
    reference = torch.empty_like(x)
    for i in range(4):
        xi = x[i:i + 1].clone().requires_grad_(True)
        logp = F.log_softmax(net(xi, _label(sde, t[i:i + 1])), dim=1)[0, y[i]]
        (reference[i:i + 1],) = torch.autograd.grad(logp, xi)
    torch.testing.assert_close(grad, reference)
    torch.testing.assert_close(grad_no_grad, reference)
    assert grad_no_grad.grad_fn is None and not x.requires_grad
    # and a central finite difference along a random direction
    v, h = torch.randn_like(x), 1e-5
    with torch.no_grad():
        fd = (clf.log_prob(x + h * v, t, y) - clf.log_prob(x - h * v, t, y)) / (2 * h)
    torch.testing.assert_close(fd, (grad * v).flatten(1).sum(1), rtol=1e-5, atol=1e-7)
    print(f"\n|∇ₓ log p_t(y|x)| per sample: {[round(g, 3) for g in grad.flatten(1).norm(dim=1).tolist()]}")


def test_tiny_classifier_overfits_at_fixed_t():
    """32 noise images with random labels (pure memorisation) at one noise level: accuracy reaches 1."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 1, 16, 16, generator=g)
    y = torch.randperm(32, generator=g) % 2
    clf = TimeConditionalClassifier(NoiseConditionalClassifier(1, 16, 2, ch_mult=(1, 2), **TINY), VESDE(0.01, 50.0))
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3)
    start = time.perf_counter()
    for step in range(1, 301):
        loss = F.cross_entropy(clf(x, 0.3), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            accuracy = (clf(x, 0.3).argmax(1) == y).float().mean().item()
        if accuracy == 1.0 and loss.item() < 0.1:
            break
    print(f"\noverfit 32 random-label images: accuracy {accuracy:.2f}, loss {loss.item():.3f} after {step} steps, "
          f"{time.perf_counter() - start:.2f} s")
    assert accuracy == 1.0


def test_preset_sizes_and_step_time():
    small = classifier_cpu_small(in_channels=1, image_size=16)
    with torch.device("meta"):  # shapes only
        big = classifier_gpu()
    n_small, n_big = parameter_count(small), parameter_count(big)
    x, y, labels = torch.randn(64, 1, 16, 16), torch.randint(0, 10, (64,)), torch.rand(64) * 10 + 0.01
    opt = torch.optim.Adam(small.parameters(), lr=1e-3)
    seconds = []
    for _ in range(4):  # the first is a warm-up
        start = time.perf_counter()
        loss = F.cross_entropy(small(x, labels), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seconds.append(time.perf_counter() - start)
    print(f"\nclassifier_cpu_small (16×16×1): {n_small:,} parameters, training step on batch 64: "
          f"{sorted(seconds[1:])[1]:.3f} s (1 thread); classifier_gpu (32×32×3): {n_big:,} parameters")
    assert 200_000 <= n_small <= 500_000
    assert n_big > 30_000_000


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_classes=1), "num_classes"), (dict(image_size=30), "image_size"),
    (dict(embedding_type="learned"), "embedding_type"), (dict(width=3), "width"), (dict(width=0), "width"),
    (dict(ch_mult=()), "ch_mult"), (dict(blocks_per_level=0), "blocks_per_level"), (dict(dropout=1.0), "dropout"),
    (dict(in_channels=0), "in_channels"), (dict(fourier_scale=-1.0), "fourier_scale"),
    (dict(init_scale=-1.0), "init_scale"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NoiseConditionalClassifier(**{"in_channels": 1, "image_size": 16, **kwargs})


def test_bad_inputs():
    clf = TimeConditionalClassifier(NoiseConditionalClassifier(1, 16, 3, ch_mult=(1, 2), **TINY), VPSDE())
    x = torch.randn(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 16, 16\)"):
        clf(torch.randn(2, 3, 16, 16), 0.5)
    with pytest.raises(ValueError, match="noise_label"):
        clf.net(x, torch.ones(3))
    with pytest.raises(ValueError, match="t must lie in"):
        clf(x, 1.5)
    with pytest.raises(ValueError, match="y must be an integer tensor"):
        clf.log_prob_grad(x, 0.5, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="y must be an integer tensor of shape"):
        clf.log_prob_grad(x, 0.5, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 2\]"):
        clf.log_prob_grad(x, 0.5, torch.tensor([0, 3]))
