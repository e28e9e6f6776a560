"""Procedural ellipse phantoms: shape, range, determinism (per image, whatever n), seeds, the fixed test split
(disjoint from train), the ellipse counts, speed, and the Shepp–Logan image."""
import time

import numpy as np
import pytest
import torch

from invsgm import phantoms as ph
from invsgm.data import TensorImages


def test_shape_range_and_determinism():
    t0 = time.perf_counter()
    data = ph.phantoms(200, size=64, seed=0)
    elapsed = time.perf_counter() - t0
    x = data.images
    print(f"\nphantoms: 200 images of 64x64 in {elapsed:.2f} s; values in [{x.min():.3f}, {x.max():.3f}], "
          f"mean {x.mean():.3f}")
    assert isinstance(data, TensorImages) and x.shape == (200, 1, 64, 64) and x.dtype == torch.float32
    assert data.channels == 1 and data.image_size == 64 and len(data) == 200
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert float(x.amax((1, 2, 3)).min()) > 0.9                 # every image has its bright skull
    assert float(x[:, :, 0].abs().max()) == 0 and float(x[:, :, :, 0].abs().max()) == 0   # background at borders
    assert torch.equal(x, ph.phantoms(200, size=64, seed=0).images)
    assert torch.equal(x[:20], ph.phantoms(20, size=64, seed=0).images)     # image i does not depend on n
    assert not torch.equal(x[:20], ph.phantoms(20, size=64, seed=1).images)
    assert len({float(img.sum()) for img in x}) == 200                      # all different
    assert elapsed < 5


def test_sizes():
    assert ph.phantoms(3, size=32).images.shape == (3, 1, 32, 32)
    assert ph.phantoms(2, size=128).images.shape == (2, 1, 128, 128)


def test_ellipse_counts():
    counts = [len(ph._ellipses(np.random.default_rng([0, 0, i]))) - 2 for i in range(300)]
    assert min(counts) == 5 and max(counts) == 12


def test_test_split_is_fixed_and_disjoint_from_train():
    test = ph.phantoms(split="test").images
    assert test.shape == (ph.TEST_SIZE, 1, 64, 64) == (100, 1, 64, 64)
    assert torch.equal(test, ph.phantoms(split="test").images)
    assert torch.equal(test[:10], ph.phantoms(10, split="test").images)
    for seed in (0, 1):
        train = ph.phantoms(1000, seed=seed).images
        distance = torch.cdist(test.flatten(1), train.flatten(1)).min()
        print(f"\nphantoms: smallest distance between a test image and a train image (seed {seed}): {distance:.2f}")
        assert float(distance) > 1.0
    with pytest.raises(ValueError, match="test split is fixed"):
        ph.phantoms(split="test", seed=3)
    with pytest.raises(ValueError, match="split"):
        ph.phantoms(5, split="val")
    with pytest.raises(ValueError, match="n"):
        ph.phantoms(0)


def test_shepp_logan():
    img = ph.shepp_logan(64)
    assert img.shape == (1, 64, 64) and img.dtype == torch.float32
    assert 0 <= float(img.min()) and 0.9 < float(img.max()) <= 1
    assert ph.shepp_logan(32).shape == (1, 32, 32)
