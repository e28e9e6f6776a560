"""Image metrics (PSNR, SSIM, offline-only LPIPS) and ``invsgm eval`` on synthetic results folders."""
from __future__ import annotations

import csv
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from invsgm import metrics
from invsgm.cli import main
from invsgm.evaluate import evaluate_folder
from invsgm.imageio import write_png
from invsgm.metrics import LPIPS, LPIPSUnavailable, psnr, ssim


def _rand(shape, seed=0, low=0.2, high=0.8) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape)


# --------------------------------------------------------------------------- PSNR

def test_psnr_is_10_log10_of_one_over_mse():
    ref = _rand((16, 16, 3))
    signs = np.where(np.random.default_rng(1).random(ref.shape) < 0.5, -1.0, 1.0)
    x = ref + 0.05 * signs  # MSE = 0.0025 exactly (up to rounding)
    mse = np.mean((x - ref) ** 2)
    assert psnr(x, ref) == pytest.approx(10 * math.log10(1 / mse), rel=1e-12)
    assert psnr(x, ref) == pytest.approx(10 * math.log10(400), rel=1e-9)
    assert psnr(255 * x, 255 * ref, data_range=255) == pytest.approx(psnr(x, ref), rel=1e-9)
    # a (C, H, W) tensor and the (H, W, C) array of the same image agree
    assert psnr(torch.from_numpy(x).permute(2, 0, 1), torch.from_numpy(ref).permute(2, 0, 1)) == pytest.approx(
        psnr(x, ref), rel=1e-12)


def test_psnr_of_identical_images_is_infinite():
    ref = torch.rand(3, 16, 16)
    assert psnr(ref, ref.clone()) == math.inf
    assert psnr(ref, ref + 1e-3) < math.inf


# --------------------------------------------------------------------------- SSIM

@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32), (16, 16)])
def test_ssim_is_one_for_identical_and_below_one_for_noisy_images(shape):
    g = torch.Generator().manual_seed(0)
    ref = 0.2 + 0.6 * torch.rand(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    assert ssim(ref, ref.clone()) == pytest.approx(1.0, abs=1e-12)
    values = [ssim((ref + s * noise).clamp(0, 1), ref) for s in (0.02, 0.1, 0.3)]
    assert 0 < values[2] < values[1] < values[0] < 1  # more noise: lower SSIM
    noisy = (ref + 0.1 * noise).clamp(0, 1)
    assert ssim(noisy, ref) == pytest.approx(ssim(ref, noisy), abs=1e-9)  # symmetric


def test_ssim_needs_seven_pixels():
    x = torch.rand(3, 6, 6)
    with pytest.raises(ValueError, match="at least 7"):
        ssim(x, x)


def test_shape_mismatch_names_both_shapes():
    a, b = torch.rand(3, 16, 16), torch.rand(3, 32, 32)
    for metric in (psnr, ssim):
        with pytest.raises(ValueError, match=r"x is \(3, 16, 16\) and ref is \(3, 32, 32\)"):
            metric(a, b)
    with pytest.raises(ValueError, match="NaN"):
        psnr(a * float("nan"), a)


# --------------------------------------------------------------------------- LPIPS

class _FailingImport:
    """A meta-path finder that makes ``import lpips`` fail like a torchvision built for another torch."""

    def find_spec(self, name, path=None, target=None):
        if name == "lpips":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


def test_lpips_unavailable_when_the_package_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips -> ImportError, on any machine
    with pytest.raises(LPIPSUnavailable, match=r"'lpips' package.*pip install -e \"\.\[vision\]\"") as err:
        LPIPS().load()
    assert "ImportError" in str(err.value) or "ModuleNotFoundError" in str(err.value)
    monkeypatch.delitem(sys.modules, "lpips")
    monkeypatch.setattr(sys, "meta_path", [_FailingImport(), *sys.meta_path])
    with pytest.raises(LPIPSUnavailable, match=r"RuntimeError: operator torchvision::nms does not exist"):
        metrics.lpips_distance(torch.rand(3, 32, 32), torch.rand(3, 32, 32))


def test_lpips_unavailable_on_this_machine_without_the_package():
    try:
        import lpips  # noqa: F401
    except Exception:
        with pytest.raises(LPIPSUnavailable, match=r"pip install -e \"\.\[vision\]\""):
            metrics.lpips_distance(torch.rand(3, 32, 32), torch.rand(3, 32, 32))
    else:
        pytest.skip("lpips imports here")


@pytest.fixture
def fake_lpips(tmp_path, monkeypatch):
    """An importable stand-in for the lpips package (its linear weights present) and an empty torch hub."""
    package = tmp_path / "site" / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "weights" / "v0.1" / "alex.pth").write_bytes(b"stub")
    module = types.ModuleType("lpips")
    module.__file__ = str(package / "__init__.py")
    module.built, module.inputs = [], []

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            module.built.append(kwargs)

        def forward(self, a, b):
            module.inputs.append((a, b))
            return ((a - b) ** 2).mean((1, 2, 3), keepdim=True)

    module.LPIPS = FakeLPIPS
    monkeypatch.setitem(sys.modules, "lpips", module)
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return module, hub


def test_lpips_checks_the_alexnet_weights_before_building(fake_lpips):
    module, hub = fake_lpips
    weights = hub / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert metrics.alexnet_weights_path() == weights
    with pytest.raises(LPIPSUnavailable, match="AlexNet") as err:
        LPIPS().load()
    assert str(weights) in str(err.value) and "nothing is downloaded" in str(err.value)
    assert module.built == []  # lpips.LPIPS was never constructed, so nothing could try a download

    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"stub")
    metric = LPIPS()
    x, ref = torch.full((1, 16, 16), 0.75), torch.full((1, 16, 16), 0.25)
    assert metric(x, ref) == pytest.approx(1.0)  # [0, 1] -> [-1, 1]: (0.5 - (-0.5))² = 1
    assert module.built == [{"net": "alex", "version": "0.1", "verbose": False}]
    a, b = module.inputs[-1]
    assert a.shape == b.shape == (1, 3, 64, 64)  # grey -> 3 channels, 16 px -> 64 px
    metric(x, ref)
    assert len(module.built) == 1  # built once


def test_lpips_checks_its_linear_weights(fake_lpips):
    module, hub = fake_lpips
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "checkpoints" / "alexnet-owt-7be5be79.pth").write_bytes(b"stub")
    linear = Path(module.__file__).parent / "weights" / "v0.1" / "alex.pth"
    linear.unlink()
    with pytest.raises(LPIPSUnavailable, match="alex.pth"):
        LPIPS().load()
    assert module.built == []


# --------------------------------------------------------------------------- invsgm eval

OFFSETS = {"mean": 10, "baseline": 20}  # grey levels added to the truth (out of 255)


def _level_psnr(offset: int) -> float:
    return 20 * math.log10(255 / offset)


def _results(root, grey_input=True, truth_in_folders=True):
    """A results folder with two inputs (RGB 16×16 and grey 16×16) whose images are truth + known offsets."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "run.yaml").write_text("task: test\n")
    (root / "metrics.json").write_text("{}\n")
    shapes = {"rgb": (16, 16, 3), "grey": (16, 16)} if grey_input else {"rgb": (16, 16, 3)}
    for i, (name, shape) in enumerate(shapes.items()):
        truth = np.random.default_rng(i).integers(40, 200, shape, dtype=np.uint8)
        folder = root / name
        write_png(folder / "truth.png" if truth_in_folders else root.parent / "truths" / f"{name}.png", truth)
        write_png(folder / "observation.png", truth // 2)
        write_png(folder / "std.png", np.zeros(shape, np.uint8))
        write_png(folder / "panel.png", truth)
        for method, offset in OFFSETS.items():
            write_png(folder / f"{method}.png", truth + offset)
        for k, offset in enumerate((10, 20)):
            write_png(folder / "samples" / f"{k:03d}.png", truth + offset)
    return root


def test_evaluate_folder_gives_the_constructed_psnr(tmp_path):
    results = _results(tmp_path / "res")
    rows = evaluate_folder(results)
    expected = {"mean": _level_psnr(10), "baseline": _level_psnr(20),
                "samples": (_level_psnr(10) + _level_psnr(20)) / 2}
    assert [(r["input"], r["method"]) for r in rows] == [
        (name, m) for name in ("grey", "rgb") for m in ("mean", "samples", "baseline")]
    for r in rows:  # PNGs are read as float32 (invsgm.data.load_image): agreement to ~1e-8 relative
        assert r["psnr"] == pytest.approx(expected[r["method"]], rel=1e-6)
        assert 0 < r["ssim"] < 1 and r["lpips"] is None
        assert r["n"] == (2 if r["method"] == "samples" else 1)

    with open(results / "eval.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and {t["lpips"] for t in table} == {"n/a"}
    assert float(table[0]["psnr"]) == pytest.approx(expected["mean"], rel=1e-6)
    saved = json.loads((results / "eval.json").read_text())
    assert saved["rows"] == rows
    assert saved["summary"]["mean"]["psnr"]["mean"] == pytest.approx(expected["mean"], rel=1e-6)
    assert saved["summary"]["mean"]["psnr"]["std"] == pytest.approx(0, abs=1e-5)
    assert saved["summary"]["mean"]["inputs"] == 2 and saved["summary"]["mean"]["lpips"] is None
    assert not list(results.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_cli_eval_prints_the_table(tmp_path, capsys):
    results = _results(tmp_path / "res")
    assert main(["eval", str(results), "--out", "scores"]) == 0
    out = capsys.readouterr().out
    header, _, *lines = out.splitlines()
    assert [c.strip() for c in header.split("|")] == ["method", "inputs", "PSNR (dB)", "SSIM", "LPIPS"]
    mean_line = next(line for line in lines if line.startswith("mean "))
    assert f"{_level_psnr(10):.2f} ± 0.00" in mean_line and mean_line.rstrip().endswith("n/a")
    assert (results / "scores.csv").is_file() and (results / "scores.json").is_file()


def test_cli_eval_with_a_truth_folder(tmp_path, capsys):
    results = _results(tmp_path / "res", truth_in_folders=False)
    assert main(["eval", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invsgm eval: error: ") and str(results / "grey" / "truth.png") in err
    assert main(["eval", str(results), "--truth", str(tmp_path / "truths")]) == 0
    saved = json.loads((results / "eval.json").read_text())
    assert saved["summary"]["baseline"]["psnr"]["mean"] == pytest.approx(_level_psnr(20), rel=1e-6)


def test_cli_eval_lpips_unavailable_still_writes_the_rest(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)
    results = _results(tmp_path / "res")
    assert main(["eval", str(results), "--lpips"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("pip install -e \".[vision]\"") == 1  # the message, once
    assert "n/a" in captured.out
    saved = json.loads((results / "eval.json").read_text())
    assert all(r["lpips"] is None for r in saved["rows"]) and len(saved["rows"]) == 6


def test_identical_images_give_infinite_psnr_written_as_a_string(tmp_path):
    results = _results(tmp_path / "res", grey_input=False)
    (results / "rgb" / "truth.png").write_bytes((results / "rgb" / "mean.png").read_bytes())
    rows = evaluate_folder(results)
    assert rows[0]["method"] == "mean" and rows[0]["psnr"] == math.inf and rows[0]["ssim"] == pytest.approx(1.0)
    text = (results / "eval.json").read_text()
    assert "Infinity" not in text and json.loads(text)["rows"][0]["psnr"] == "inf"


def test_cli_eval_errors_name_the_file(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "absent")]) == 2
    assert str(tmp_path / "absent") in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "run.yaml").write_text("x: 1\n")
    assert main(["eval", str(empty)]) == 2
    assert "no input sub-folders" in capsys.readouterr().err

    results = _results(tmp_path / "res", grey_input=False)
    small = results / "rgb" / "baseline.png"
    write_png(small, np.zeros((12, 12, 3), np.uint8))
    assert main(["eval", str(results)]) == 2
    err = capsys.readouterr().err
    assert str(small) in err and "(3, 12, 12)" in err and "(3, 16, 16)" in err

    broken = results / "rgb" / "samples" / "001.png"
    write_png(small, np.zeros((16, 16, 3), np.uint8))
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert main(["eval", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invsgm eval: error: ") and str(broken) in err

    broken.unlink()
    (results / "rgb" / "mean.png").unlink()
    assert main(["eval", str(results)]) == 2
    assert "no mean.png" in capsys.readouterr().err
    assert main(["eval", str(results), "--out", "../x"]) == 2
    assert "plain file name" in capsys.readouterr().err
