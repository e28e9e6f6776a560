"""The shipped models (``pretrained/digits_score``, ``digits_classifier``, ``photos_score``) meet their claims.

Each test skips only when its model folder does not exist under ``pretrained_root()``. The default run checks
fast versions; ``-m slow`` the full settings of ``python -m invsgm.evaluate_pretrained`` (256 samples by 500 PC
steps, all 80 test patches at rtol 1e-5). Fast digits: 128 samples by 75 PC steps, with the same 80 % / 0.9 bar
and class-share bounds widened to what a uniform sampler meets at n = 128 (``class_share_bounds``). Measured on
the shipped model (clean judge, seeds 0/1/2): 75 PC steps 86.7/89.1/86.7 % confident, 50 steps 80.5/85.9/83.6 %,
the probability-flow ODE (RK45, rtol 1e-3) only 74–76 %; 500 steps, 256 samples: 94.5 %. Fast photos: the
first 16 test patches at rtol 1e-3 (within 0.01 bpd of rtol 1e-5 there, at ~1/8 of the score evaluations).
"""
from __future__ import annotations

import time

import pytest
import torch

from invsgm.data import digits
from invsgm.evaluate_pretrained import (CLASS_SHARE, CLASSIFIER_TIMES, MIN_ACCURACY_T0, MIN_CLEAN_ACCURACY,
                                        MONOTONE_SLACK, accuracy_over_time, best_ridge, class_share_bounds,
                                        gaussian_baseline_bpd, held_out_patches, is_monotone, judge, judge_samples,
                                        model_bpd, sample_digits, train_clean_classifier)
from invsgm.pretrained import Pretrained, load_pretrained, pretrained_root

FAST_DIGITS = dict(n=128, sampler="pc", steps=75)
FULL_DIGITS = dict(n=256, sampler="pc", steps=500)
FAST_PHOTOS = dict(n=16, rtol=1e-3)
FULL_PHOTOS = dict(n=80, rtol=1e-5)


def shipped(name: str) -> Pretrained:
    """The shipped model ``name``; skip (only) when its folder does not exist."""
    folder = pretrained_root() / name
    if not folder.exists():
        pytest.skip(f"{folder} does not exist yet: train it (configs/{name}.yaml) and copy OUTPUT/pretrained there")
    return load_pretrained(name)


@pytest.fixture(scope="module")
def clean_judge() -> torch.nn.Module:
    start = time.perf_counter()
    net, acc = train_clean_classifier()
    print(f"\n[clean judge] DigitCNN test accuracy {acc:.3f} ({time.perf_counter() - start:.1f} s)")
    assert acc >= MIN_CLEAN_ACCURACY
    return net


def test_class_share_bounds_are_the_stated_ones_for_256_samples() -> None:
    assert class_share_bounds(256) == CLASS_SHARE
    lo, hi = class_share_bounds(128)
    assert lo < CLASS_SHARE[0] and hi > CLASS_SHARE[1]


def test_clean_judge_passes_real_digits_and_fails_noise(clean_judge) -> None:
    """Controls of the judge itself: held-out digits pass, uniform-noise images do not."""
    test = digits(16, "test")
    noise = torch.rand(256, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        real, fake = judge(clean_judge(test.images).softmax(1)), judge(clean_judge(noise).softmax(1))
    print(f"\n[clean judge] test digits: {real}\n[clean judge] uniform noise: {fake}")
    assert real.passed and not fake.passed


def check_samples(clean: torch.nn.Module, n: int, **sampler) -> None:
    score = shipped("digits_score")
    classifier = load_pretrained("digits_classifier") if (pretrained_root() / "digits_classifier").exists() else None
    start = time.perf_counter()
    images = sample_digits(score, n, **sampler)
    print(f"\n[digits_score] {n} samples {sampler} in {time.perf_counter() - start:.1f} s")
    verdicts = judge_samples(images, clean, classifier)
    for name, verdict in verdicts.items():
        print(f"  {name}: {verdict}")
    assert verdicts["clean CNN"].passed, str(verdicts["clean CNN"])


def test_digit_samples_are_digits_fast(clean_judge) -> None:
    check_samples(clean_judge, **FAST_DIGITS)


@pytest.mark.slow
def test_digit_samples_are_digits(clean_judge) -> None:
    check_samples(clean_judge, **FULL_DIGITS)


def test_classifier_accuracy_falls_with_noise() -> None:
    classifier = shipped("digits_classifier")
    start = time.perf_counter()
    accs = accuracy_over_time(classifier)
    print("\n[digits_classifier] test accuracy " + ", ".join(f"t={t:g}: {a:.3f}" for t, a in zip(CLASSIFIER_TIMES, accs))
          + f" ({time.perf_counter() - start:.1f} s)")
    assert accs[0] >= MIN_ACCURACY_T0, f"accuracy {accs[0]:.3f} at t=0"
    assert is_monotone(accs), f"accuracy rises by more than {MONOTONE_SLACK} between consecutive times"


def check_photos_bpd(n: int, rtol: float) -> None:
    photo = shipped("photos_score")
    levels = held_out_patches(n, photo.card["data"]["image_size"])
    start = time.perf_counter()
    gaussian = gaussian_baseline_bpd(levels, photo.card["data"]["image_size"])
    ridge = best_ridge(gaussian)
    ours = model_bpd(photo, levels, rtol=rtol)
    print(f"\n[photos_score] bits/dim on {n} test patches: model {ours.mean():.4f} (rtol {rtol:g}), Gaussian "
          f"{gaussian[ridge].mean():.4f} (ridge {ridge:g}) ({time.perf_counter() - start:.1f} s)")
    assert ours.mean() < gaussian[ridge].mean(), "the model is no better than a Gaussian"


def test_photos_bpd_below_gaussian_fast() -> None:
    check_photos_bpd(**FAST_PHOTOS)


@pytest.mark.slow
def test_photos_bpd_below_gaussian() -> None:
    check_photos_bpd(**FULL_PHOTOS)
