"""``invsgm run tasks/mri.yaml`` and ``tasks/ct.yaml``: simulated runs from held-out phantoms, observation mode from a
user's k-space / sinogram ``.npy`` file (round trip: the file a simulated run writes, read back, gives the same
samples), and bad inputs (wrong shapes, k-space off the mask, image files, repeated or out-of-range angles: exit
status 2, the file or value named, nothing written)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from invsgm.cli import main
from invsgm.operators import MRI, Radon
from invsgm.phantoms import phantoms

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--set", "sampler.steps=2", "--set", "sampler.n_samples=2", "--set", "sampler.batch_size=2",
          "--seed", "5"]


def _run(task: str, out: Path, *args: str) -> int:
    return main(["run", str(REPO / "tasks" / f"{task}.yaml"), "--out", str(out), *COMMON, *args])


@pytest.mark.parametrize("task", ["mri", "ct"])
def test_simulated_run_writes_the_array_and_reads_it_back(tmp_path, task):
    simulated = tmp_path / "simulated"
    assert _run(task, simulated, "--set", "inputs.count=2") == 0
    d = simulated / "000"
    assert {"observation.npy", "observation.png", "truth.png", "baseline.png", "mean.png", "std.png",
            "panel.png"} <= {p.name for p in d.iterdir()}
    a = np.load(d / "observation.npy")
    if task == "mri":
        op = MRI((1, 64, 64), acceleration=4, seed=0)
        assert a.dtype == np.complex64 and a.shape == (64, 64)
        assert not a[:, ~op.mask[0].numpy()].any()  # zeros off the sampled columns
    else:
        op = Radon((1, 64, 64), 23)
        assert a.dtype == np.float32 and a.shape == op.out_shape[1:]
    rec = json.loads((simulated / "metrics.json").read_text())["inputs"][0]
    assert rec["observation_npy"] and np.isfinite(rec["mean"]["psnr"]) and np.isfinite(rec["baseline"]["psnr"])
    # the noiseless observation of the truth is A·truth in image units
    from PIL import Image

    img = torch.from_numpy(np.asarray(Image.open(d / "truth.png"), dtype=np.float32) / 255)[None, None]
    y = op(img.double())[0].float()
    expected = op.write_array(y)
    assert np.abs(a - expected).max() < 2e-2 * np.abs(expected).max()  # 8-bit truth vs the exact phantom

    observations = tmp_path / "observations"
    observations.mkdir()
    for k in ("000", "001"):
        (observations / f"{k}.npy").write_bytes((simulated / k / "observation.npy").read_bytes())
    observed = tmp_path / "observed"
    assert _run(task, observed, "--observation", str(observations)) == 0
    for k in ("000", "001"):
        for name in ("samples/000.png", "samples/001.png", "mean.png", "std.png", "observation.png", "baseline.png",
                     "observation.npy"):
            assert (simulated / k / name).read_bytes() == (observed / k / name).read_bytes(), (k, name)
    metrics = json.loads((observed / "metrics.json").read_text())
    assert metrics["mode"] == "observations" and metrics["summary"] == {}


def _kspace(tmp_path: Path, name: str, a: np.ndarray) -> Path:
    path = tmp_path / name
    np.save(path, a)
    return path


def _bad_cases(tmp_path: Path) -> dict[str, tuple[str, list[str], str]]:
    op = MRI((1, 64, 64), acceleration=4, seed=0)
    x = phantoms(1, 64, split="test").images.double()
    k = op.write_array(op(x)[0].float())
    off = k.copy()
    off[:, int(torch.nonzero(~op.mask[0])[0])] = 1.0
    sino = Radon((1, 64, 64), 23)(x)[0, 0].float().numpy()
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "image.png")
    (tmp_path / "broken.npy").write_bytes(b"not an array")
    return {
        "k-space of another size": ("mri", ["--observation", str(_kspace(tmp_path, "small.npy", k[:32, :32]))],
                                    "complex (64, 64)"),
        "k-space as a real image": ("mri", ["--observation", str(_kspace(tmp_path, "real.npy", k.real))],
                                    "float32 array of shape (64, 64)"),
        "k-space off the task's mask": ("mri", ["--observation", str(_kspace(tmp_path, "off.npy", off))],
                                        "columns that the task's mask does not"),
        "k-space for a mask of another seed": ("mri", ["--observation", str(_kspace(tmp_path, "k.npy", k)),
                                                       "--set", "task.seed=1"], "columns that the task's mask"),
        "an image file for MRI": ("mri", ["--observation", str(tmp_path / "image.png")], "not an image file"),
        "an unreadable array": ("mri", ["--observation", str(tmp_path / "broken.npy")], "cannot be read"),
        "a transposed sinogram": ("ct", ["--observation", str(_kspace(tmp_path, "sino_t.npy", sino.T.copy()))],
                                  "transposed?"),
        "a sinogram of other views": ("ct", ["--observation", str(_kspace(tmp_path, "sino.npy", sino)),
                                             "--set", "task.views=45"], "(45, "),
        "NaN in a sinogram": ("ct", ["--observation", str(_kspace(tmp_path, "nan.npy", np.full_like(sino, np.nan)))],
                              "NaN"),
        "a mask with k-space": ("mri", ["--observation", str(_kspace(tmp_path, "k2.npy", k)), "--mask",
                                        str(tmp_path / "image.png")], "inputs.masks"),
    }


CASES = ["k-space of another size", "k-space as a real image", "k-space off the task's mask",
         "k-space for a mask of another seed", "an image file for MRI", "an unreadable array", "a transposed sinogram",
         "a sinogram of other views", "NaN in a sinogram", "a mask with k-space"]


@pytest.mark.parametrize("case", CASES)
def test_bad_array_observations_exit_2_naming_the_file(tmp_path, capsys, case):
    task, args, message = _bad_cases(tmp_path)[case]
    out = tmp_path / "out"
    assert _run(task, out, *args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    if case != "a mask with k-space":
        assert args[1] in err, err  # the file is named
    assert not out.exists()


@pytest.mark.parametrize("views, message", [
    ("[0, 30, 30, 90]", "30° appears more than once"),
    ("[0, 45, 180]", "180° is outside [0°, 180°)"),
    ("[-10, 45]", "-10° is outside"),
])
def test_bad_angle_lists_exit_2(tmp_path, capsys, views, message):
    out = tmp_path / "out"
    assert _run("ct", out, "--set", f"task.views={views}", "--set", "inputs.count=1") == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()


def test_angle_lists_off_the_full_grid_run(tmp_path):
    """Angles not on the 1° grid have no decomposition A = P(Λ) T: the consistency sampler refuses them, ΠGDM runs."""
    out = tmp_path / "out"
    args = ["--set", "task.views=[0.5, 30.25, 60, 90, 120, 150]", "--set", "inputs.count=1"]
    assert _run("ct", out, *args, "--set", "sampler={name: consistency, steps: 2, n_samples: 1}") == 2
    assert not out.exists()
    assert _run("ct", out, *args, "--set", "sampler={name: pc, predictor: ancestral_sampling, corrector: none, "
                                           "guidance: {name: pigdm, scale: 1.0, power: 2.0}, steps: 2, n_samples: 1}") == 0
    assert np.load(out / "000" / "observation.npy").shape == (6, Radon((1, 64, 64), 6).detectors)
