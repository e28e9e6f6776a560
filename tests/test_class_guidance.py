"""Class-conditional generation: the shipped digits score model guided by the shipped noise-conditional classifier."""
from __future__ import annotations

import time

import pytest
import torch

from invsgm.evaluate_pretrained import train_clean_classifier
from invsgm.guidance import Classifier
from invsgm.measurement import ClassLabel
from invsgm.pretrained import from_model_space, load_pretrained
from invsgm.solve import solve
from invsgm.solvers import PC

SCALE = 2.0  # guidance scale of tasks/class_conditional.yaml; scale 1 hits the class in ≈80 % of samples


def _hit_rate(per_class: int, steps: int) -> float:
    score, classifier = load_pretrained("digits_score"), load_pretrained("digits_classifier")
    clean, accuracy = train_clean_classifier()  # judged by a separately trained classifier of clean digits
    labels = torch.arange(10).repeat_interleave(per_class)
    start = time.time()
    measurement = ClassLabel(classifier.model, x_shape=(1, 16, 16))
    solver = PC(guidance=Classifier(SCALE))  # the paper's PC: reverse diffusion + one Langevin step, snr 0.16
    solution = solve(measurement, labels, score, solver, steps=steps, seed=0)
    images = from_model_space(solution.samples[:, 0], score.card).clamp(0, 1)
    with torch.no_grad():
        predicted = clean(images).argmax(1)
    hits = (predicted == labels).float()
    per = [round(hits[labels == k].mean().item(), 2) for k in range(10)]
    print(f"\nclass guidance (scale {SCALE}, {steps} PC steps, {len(labels)} samples in {time.time() - start:.0f} s): "
          f"target class hit in {hits.mean().item():.1%} of samples by the clean CNN (test accuracy "
          f"{accuracy:.3f}); per class {per}")
    return hits.mean().item()


def test_class_guidance_hits_the_target_class_fast():
    assert _hit_rate(per_class=10, steps=75) >= 0.9


@pytest.mark.slow
def test_class_guidance_hits_the_target_class():
    assert _hit_rate(per_class=50, steps=300) >= 0.9
