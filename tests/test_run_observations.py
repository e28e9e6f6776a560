"""``invsgm run`` on observed images (``--observation``, ``--mask``, ``--truth``; ``inputs.observations``): super-
resolution, inpainting and deblurring from files, the round trip (an observation written by a simulated run and read
back gives the same samples), sizes (``--resize`` / ``--crop``), bad observations (exit status 2, nothing written),
the steps' progress bar, the titled panel, and the operators' and measurements' file forms behind them."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from invsgm.cli import main
from invsgm.data import photos_test_images
from invsgm.measurement import ClassLabel, Joint, LinearMeasurement
from invsgm.operators import AvgPool, GaussianBlur, Grey, Identity, Mask, box_mask

REPO = Path(__file__).resolve().parents[1]
Q = 1 / 255 + 1e-6  # PNG quantisation
FAST = ["--set", "sampler.steps=2", "--set", "sampler.n_samples=1"]


def _u8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] → (H, W[, C]) uint8."""
    a = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return a[..., 0] if a.shape[2] == 1 else a


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64) / 255


def _patch(i: int = 0) -> torch.Tensor:
    """A held-out photo patch (3, 32, 32), quantised to 8 bits."""
    return torch.from_numpy(_u8(photos_test_images(i + 1)[i])).permute(2, 0, 1).float() / 255


def _run(task: str, out: Path, *args: str, capsys=None) -> tuple[int, str]:
    code = main(["run", str(REPO / "tasks" / f"{task}.yaml"), "--out", str(out), *FAST, *args])
    return code, (capsys.readouterr().err if capsys is not None else "")


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


# --- the three tasks from files ------------------------------------------------------------------------------

def test_super_resolution_of_a_low_resolution_file(tmp_path, capsys):
    low = torch.nn.functional.avg_pool2d(_patch()[None], 2)[0]  # 16×16
    Image.fromarray(_u8(low)).save(tmp_path / "low.png")
    code, err = _run("super_resolution", tmp_path / "out", "--observation", str(tmp_path / "low.png"), capsys=capsys)
    assert code == 0, err
    d = tmp_path / "out" / "low"
    names = {p.name for p in d.iterdir()}
    assert names == {"observation.png", "baseline.png", "samples", "mean.png", "std.png", "panel.png"}, names
    assert np.array_equal(_png(d / "observation.png"), _png(tmp_path / "low.png"))  # the file as it was read
    assert _png(d / "samples" / "000.png").shape == (32, 32, 3) and _png(d / "baseline.png").shape == (32, 32, 3)
    metrics = _metrics(tmp_path / "out")
    rec = metrics["inputs"][0]
    assert metrics["mode"] == "observations" and metrics["summary"] == {}
    assert rec["files"] == {"observation": str(tmp_path / "low.png")} and not {"mean", "samples", "baseline"} & set(rec)
    # the bicubic baseline of the observed 16×16 image
    from invsgm.baselines import upsample_bicubic

    expected = upsample_bicubic(torch.from_numpy(_png(d / "observation.png")).permute(2, 0, 1).float(), 2)
    assert np.abs(_png(d / "baseline.png") - expected.permute(1, 2, 0).numpy()).max() <= Q


@pytest.mark.parametrize("how", ["mask file", "alpha channel"])
def test_inpainting_with_a_users_mask(tmp_path, how):
    image = _patch()
    missing = np.zeros((32, 32), dtype=bool)
    missing[4:20, 10:26] = True
    if how == "mask file":
        Image.fromarray(_u8(image)).save(tmp_path / "photo.png")
        Image.fromarray(np.where(missing, 255, 0).astype(np.uint8)).save(tmp_path / "mask.png")  # white = missing
        extra = ["--mask", str(tmp_path / "mask.png")]
    else:
        rgba = np.concatenate([_u8(image), np.where(missing, 0, 255).astype(np.uint8)[..., None]], 2)
        Image.fromarray(rgba).save(tmp_path / "photo.png")  # alpha 0 = missing
        extra = []
    out = tmp_path / "out"
    # the task has no mask of its own: the observation's is the one
    assert main(["run", str(REPO / "tasks" / "inpaint.yaml"), "--out", str(out), *FAST, "--set", "task={name: inpaint}",
                 "--observation", str(tmp_path / "photo.png"), *extra]) == 0
    d = out / "photo"
    shown = Image.open(d / "observation.png")
    assert shown.mode == "RGBA" and np.array_equal(np.asarray(shown)[..., 3] == 0, missing)  # the mask, as alpha
    truth = image.permute(1, 2, 0).numpy()
    sample = _png(d / "samples" / "000.png")
    assert np.abs(sample - truth)[~missing].max() <= Q  # observed pixels kept
    assert np.abs(sample - truth)[missing].max() > 0.05  # the missing ones sampled
    assert np.abs(_png(d / "baseline.png") - truth)[~missing].max() <= Q
    assert _metrics(out)["inputs"][0]["files"]["mask"] == (str(tmp_path / "mask.png") if how == "mask file"
                                                           else "alpha channel")


def test_deblurring_of_a_blurred_image_with_its_truth(tmp_path):
    truth = _patch(1)
    blurred = GaussianBlur(1.5, 9, (3, 32, 32))(truth[None])[0]
    Image.fromarray(_u8(blurred)).save(tmp_path / "blurred.png")
    Image.fromarray(_u8(truth)).save(tmp_path / "sharp.png")
    out = tmp_path / "out"
    assert main(["run", str(REPO / "tasks" / "deblur.yaml"), "--out", str(out), *FAST,
                 "--observation", str(tmp_path / "blurred.png"), "--truth", str(tmp_path / "sharp.png")]) == 0
    d = out / "blurred"
    assert {"truth.png", "observation.png", "baseline.png", "mean.png"} <= {p.name for p in d.iterdir()}
    assert np.array_equal(_png(d / "truth.png"), _png(tmp_path / "sharp.png"))
    rec = _metrics(out)["inputs"][0]
    assert rec["files"] == {"observation": str(tmp_path / "blurred.png"), "truth": str(tmp_path / "sharp.png")}
    assert rec["baseline"]["psnr"] > 25 and np.isfinite(rec["mean"]["psnr"])  # Wiener on the blurred file
    assert set(_metrics(out)["summary"]) == {"mean", "samples", "baseline"}


# --- the round trip -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task, sets", [
    ("super_resolution", []),                             # noisy low-resolution images: observation.npy
    ("inpaint", ["task={name: inpaint}"]),                # read back without the task's mask: the alpha channel
    ("colorize", []),                                     # grey images, samples projected onto them
])
def test_observation_written_and_read_back_gives_the_same_samples(tmp_path, task, sets):
    common = ["--set", "sampler.steps=2", "--set", "sampler.n_samples=2", "--set", "sampler.batch_size=2",
              "--seed", "3"]
    simulated = tmp_path / "simulated"
    assert main(["run", str(REPO / "tasks" / f"{task}.yaml"), "--out", str(simulated), *common,
                 "--set", "inputs.count=3"]) == 0
    observations, truths = tmp_path / "observations", tmp_path / "truths"
    observations.mkdir(), truths.mkdir()
    for d in sorted(p for p in simulated.iterdir() if p.is_dir()):
        exact = d / "observation.npy" if (d / "observation.npy").is_file() else d / "observation.png"
        shutil.copy(exact, observations / f"{d.name}{exact.suffix}")
        shutil.copy(d / "truth.png", truths / f"{d.name}.png")
    observed = tmp_path / "observed"
    sets = [a for s in sets for a in ("--set", s)]
    assert main(["run", str(REPO / "tasks" / f"{task}.yaml"), "--out", str(observed), *common, *sets,
                 "--observation", str(observations), "--truth", str(truths)]) == 0
    for d in sorted(p for p in simulated.iterdir() if p.is_dir()):
        for name in ("samples/000.png", "samples/001.png", "mean.png", "std.png", "observation.png", "baseline.png",
                     "truth.png"):
            assert (d / name).read_bytes() == (observed / d.name / name).read_bytes(), (d.name, name)
    a, b = _metrics(simulated), _metrics(observed)
    assert [r["mean"] for r in a["inputs"]] == [r["mean"] for r in b["inputs"]]
    assert a["mode"] == "simulated" and b["mode"] == "observations"


def test_noisy_observation_png_reads_back_to_its_8_bits(tmp_path):
    """Without the .npy, observation.png is the observation to 8-bit precision (and clamped to [0, 1])."""
    simulated = tmp_path / "s"
    assert main(["run", str(REPO / "tasks" / "denoise.yaml"), "--out", str(simulated), *FAST,
                 "--set", "inputs.count=1"]) == 0
    d = simulated / "000"
    exact = np.load(d / "observation.npy")
    assert exact.shape == (32, 32, 3) and exact.dtype == np.float32
    assert not np.array_equal(np.round(np.clip(exact, 0, 1) * 255) / 255, exact)  # 8 bits cannot hold it
    assert np.abs(_png(d / "observation.png") - np.clip(exact, 0, 1)).max() <= 0.5 / 255 + 1e-6
    noise = exact - _png(d / "truth.png")
    assert 0.07 < noise.std() < 0.13  # σ_y = 0.1 in image units


# --- sizes ----------------------------------------------------------------------------------------------------

def test_fit_resizes_or_crops_and_says_so(tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    code, err = _run("denoise", tmp_path / "r", "--observation", str(tmp_path / "big.png"), "--resize", capsys=capsys)
    assert code == 0 and "input big: observation resized from 40x48 (its centre 40x40) to 32x32" in err, err
    rec = _metrics(tmp_path / "r")["inputs"][0]
    assert rec["fit"] == {"observation": "resized from 40x48 (its centre 40x40) to 32x32 (antialiased bicubic)"}
    assert Image.open(tmp_path / "r" / "big" / "observation.png").size == (32, 32)
    code, err = _run("denoise", tmp_path / "c", "--observation", str(tmp_path / "big.png"), "--crop", capsys=capsys)
    assert code == 0 and "centre-cropped from 40x48 to 32x32" in err
    crop = np.asarray(Image.open(tmp_path / "c" / "big" / "observation.png"))
    assert np.array_equal(crop, np.asarray(Image.open(tmp_path / "big.png"))[4:36, 8:40])
    assert yaml.safe_load((tmp_path / "c" / "run.yaml").read_text())["inputs"]["fit"] == "crop"
    # a low-resolution image for ×2 super-resolution: resized to 16×16, its mask follows; clean inputs too
    code, err = _run("super_resolution", tmp_path / "s", "--observation", str(tmp_path / "big.png"), "--resize",
                     capsys=capsys)
    assert code == 0 and "to 16x16" in err and Image.open(tmp_path / "s" / "big" / "observation.png").size == (16, 16)
    code, err = _run("inpaint", tmp_path / "i", "--input", str(tmp_path / "big.png"), "--crop", capsys=capsys)
    assert code == 0 and _metrics(tmp_path / "i")["inputs"][0]["fit"] == {"image": "centre-cropped from 40x48 to 32x32"}


def test_fitted_mask_follows_its_observation(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 0:32] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["run", str(REPO / "tasks" / "inpaint.yaml"), "--out", str(tmp_path / "o"), *FAST, "--resize",
                 "--observation", str(tmp_path / "big.png"), "--mask", str(tmp_path / "mask.png")]) == 0
    alpha = np.asarray(Image.open(tmp_path / "o" / "big" / "observation.png"))[..., 3]
    expected = np.ones((32, 32), bool)
    expected[8:24, 0:16] = False
    assert np.array_equal(alpha > 0, expected)


# --- bad observations -------------------------------------------------------------------------------------------

def _digits_yaml(tmp_path: Path) -> Path:
    spec = {"model": {"pretrained": "digits_score"}, "task": {"name": "denoise", "sigma_y": 0.1},
            "sampler": {"steps": 2, "n_samples": 1}, "inputs": {"dataset": "digits_test", "count": 1}}
    (tmp_path / "digits.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "digits.yaml"


def _files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    photo = _u8(_patch())
    paths = {name: tmp_path / f"{name}.png" for name in
             ("photo", "small_mask", "black_mask", "white_mask", "low20", "colour16", "truncated")}
    Image.fromarray(photo).save(paths["photo"])
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(paths["small_mask"])
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(paths["black_mask"])
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(paths["white_mask"])
    Image.fromarray(photo[:20, :20]).save(paths["low20"])
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(paths["colour16"])
    paths["truncated"].write_bytes(paths["photo"].read_bytes()[:80])
    return paths


BAD = {  # case: (YAML, observation, extra arguments, the file named, what the message says)
    "mask of another size": ("inpaint", "photo", ["--mask", "small_mask"], "small_mask",
                             "is 16x16 (HxW) but its observation {photo} is 32x32"),
    "low-resolution size x factor is not the model's": (
        "super_resolution", "low20", [], "low20",
        "is 20x20 (HxW) but the task needs a 16x16 (HxW) image (x2 super-resolution: the size times 2 must be the "
        "model's 32x32); give an image of that size, or let the run fit it: --resize or --crop"),
    "RGB image for a grey model": ("digits", "colour16", [], "colour16",
                                   "is an RGB image in colour (its channels differ by up to"),
    "mask with no missing pixel": ("inpaint", "photo", ["--mask", "black_mask"], "black_mask",
                                   "marks no pixel missing (white = missing, black = observed)"),
    "mask with no observed pixel": ("inpaint", "photo", ["--mask", "white_mask"], "white_mask",
                                    "marks every pixel missing"),
    "unreadable file": ("inpaint", "truncated", [], "truncated", "cannot be read as an image"),
    "inpainting without any mask": ("inpaint", "photo", ["--set", "task={name: inpaint}"], "photo",
                                    "the inpainting task has no mask (task.mask), so each observation needs one"),
    "crop of a smaller image": ("denoise", "low20", ["--crop"], "low20", "smaller than 32x32: it cannot be cropped"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_observation_exits_2_naming_the_file_and_writes_nothing(tmp_path, capsys, case):
    task, obs, extra, named, message = BAD[case]
    files = _files(tmp_path)
    config = _digits_yaml(tmp_path) if task == "digits" else REPO / "tasks" / f"{task}.yaml"
    extra = [str(files[a]) if a in files else a for a in extra]
    out = tmp_path / "out" / "run"
    code = main(["run", str(config), "--out", str(out), *FAST, "--observation", str(files[obs]), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("invsgm run: error: "), err
    assert str(files[named]) in err and message.format(**{k: str(v) for k, v in files.items()}) in err, err
    assert not (tmp_path / "out").exists()  # no output folder left behind


def test_mask_for_a_task_without_masks(tmp_path, capsys):
    files = _files(tmp_path)
    missing = np.zeros((32, 32), np.uint8)
    missing[:4] = 255
    Image.fromarray(missing).save(tmp_path / "top.png")
    code = main(["run", str(REPO / "tasks" / "deblur.yaml"), "--out", str(tmp_path / "o"), *FAST,
                 "--observation", str(files["photo"]), "--mask", str(tmp_path / "top.png")])
    err = capsys.readouterr().err
    assert code == 2 and f"mask {tmp_path / 'top.png'}: a GaussianBlur measurement observes every pixel" in err, err
    assert not (tmp_path / "o").exists()


def test_a_bad_file_in_a_folder_stops_the_run_before_anything_is_written(tmp_path, capsys):
    folder = tmp_path / "observations"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(_u8(_patch(i))).save(folder / f"{i}.png")
    (folder / "2.png").write_bytes((folder / "2.png").read_bytes()[:70])
    code = main(["run", str(REPO / "tasks" / "denoise.yaml"), "--out", str(tmp_path / "o"), *FAST,
                 "--observation", str(folder)])
    assert code == 2 and str(folder / "2.png") in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--mask", "m.png"], "--mask m.png: goes with --observation (or inputs.observations in the YAML)"),
    (["--truth", "t.png"], "--truth t.png: goes with --observation"),
    (["--set", "inputs.truth=t.png"], "inputs.truth = 't.png': goes with inputs.observations (--observation)"),
    (["--set", "inputs.fit=stretch"], "inputs.fit = 'stretch': expected one of ['resize', 'crop']"),
    (["--resize"], "inputs.fit = 'resize': the photos_test images have the model's size"),
    (["--set", "inputs.observations=x"], "inputs = {'dataset': 'photos_test', 'count': 4, 'observations': 'x'}: "
                                         "expected one of dataset, path, observations, not dataset and observations"),
    (["--observation", "nowhere"], "inputs.observations = 'nowhere': no such file or folder"),
])
def test_observation_options_are_checked(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code = main(["run", str(REPO / "tasks" / "inpaint.yaml"), "--out", str(tmp_path / "o"), *FAST, *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "o").exists()


def test_input_and_observation_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(REPO / "tasks" / "inpaint.yaml"), "--input", "a.png", "--observation", "b.png"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_folders_of_observations_masks_and_truths_match_by_name(tmp_path):
    obs, masks, truths = (tmp_path / n for n in ("obs", "masks", "truths"))
    for folder in (obs / "a", masks / "a", truths / "a"):
        folder.mkdir(parents=True)
    for i, name in enumerate(("a/x", "y")):
        Image.fromarray(_u8(_patch(i))).save(obs / f"{name}.png")
        Image.fromarray(_u8(_patch(i))).save(truths / f"{name}.jpg", quality=95)
        mask = np.zeros((32, 32), np.uint8)
        mask[i * 8:i * 8 + 8] = 255
        Image.fromarray(mask).save(masks / f"{name}.png")
    out = tmp_path / "out"
    assert main(["run", str(REPO / "tasks" / "inpaint.yaml"), "--out", str(out), *FAST, "--set",
                 "sampler.batch_size=4", "--observation", str(obs), "--mask", str(masks), "--truth", str(truths)]) == 0
    records = {r["name"]: r for r in _metrics(out)["inputs"]}
    assert sorted(records) == ["a__x", "y"]
    assert records["a__x"]["files"]["mask"] == str(masks / "a" / "x.png") and "mean" in records["y"]
    alpha = np.asarray(Image.open(out / "y" / "observation.png"))[..., 3]
    assert (alpha[8:16] == 0).all() and (alpha[:8] == 255).all()
    (truths / "y.jpg").unlink()
    assert main(["run", str(REPO / "tasks" / "inpaint.yaml"), "--out", str(tmp_path / "o2"), *FAST,
                 "--observation", str(obs), "--truth", str(truths)]) == 2


# --- what a person sees --------------------------------------------------------------------------------------------

def test_progress_counts_the_samplers_steps(tmp_path, capsys):
    code, err = _run("inpaint", tmp_path / "o", "--set", "inputs.count=3", "--set", "sampler.batch_size=2",
                     capsys=capsys)
    assert code == 0 and "4/4" in err and "step" in err and "3/3 inputs" in err, err  # 2 batches × 2 steps


def test_panel_has_titled_columns(tmp_path):
    from invsgm.runner.outputs import PANEL_TILE, panel

    images = [("truth", torch.rand(3, 32, 32)), ("observation", torch.rand(3, 32, 32)),
              ("std x2", torch.rand(1, 32, 32))]
    im = panel(images)
    a = np.asarray(im)
    tile = math.ceil(PANEL_TILE / 32) * 32
    assert im.mode == "RGB" and im.width >= 3 * tile and im.height > tile
    title_band = a[: im.height - tile - 4]
    assert (title_band < 100).any() and (title_band == 255).mean() > 0.7  # dark text on white
    # runs: the columns of an observed input without truth, and of a simulated one with its truth
    assert main(["run", str(REPO / "tasks" / "super_resolution.yaml"), "--out", str(tmp_path / "s"), *FAST,
                 "--set", "inputs.count=1"]) == 0
    Image.open(tmp_path / "s" / "000" / "observation.png").save(tmp_path / "low.png")
    assert main(["run", str(REPO / "tasks" / "super_resolution.yaml"), "--out", str(tmp_path / "o"), *FAST,
                 "--observation", str(tmp_path / "low.png")]) == 0
    with_truth = Image.open(tmp_path / "s" / "000" / "panel.png")
    without = Image.open(tmp_path / "o" / "low" / "panel.png")
    assert with_truth.height == without.height and with_truth.width - without.width == tile + 4  # the truth column


# --- the measurement's file forms ---------------------------------------------------------------------------------

SHAPE = (3, 32, 32)


@pytest.mark.parametrize("operator, file_shape", [
    (box_mask(SHAPE, 8, 8, 16, 16), (3, 32, 32)),
    (AvgPool(4, SHAPE), (3, 8, 8)),
    (GaussianBlur(1.0, 5, SHAPE), (3, 32, 32)),
    (Grey(SHAPE), (1, 32, 32)),
    (Identity(SHAPE), (3, 32, 32)),
])
def test_operator_file_forms_invert_each_other(operator, file_shape):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, *SHAPE, generator=g)
    y = operator(images)
    pixels = operator.to_file(y)
    assert tuple(pixels.shape[1:]) == file_shape == operator.file_shape
    torch.testing.assert_close(operator.from_file(pixels), y)
    if isinstance(operator, Grey):
        torch.testing.assert_close(pixels[:, 0], images.mean(1))  # the grey image
    with pytest.raises(ValueError, match="observation image must have shape"):
        operator.from_file(torch.rand(2, 3, 5, 5))
    for meas in (LinearMeasurement(operator, 0.0), LinearMeasurement(operator, 0.2)):
        simulated = meas.simulate_file(images, torch.Generator().manual_seed(1), centered=True)
        direct = meas.simulate(2 * images - 1, torch.Generator().manual_seed(1))
        read = meas.observe(images=simulated, centered=True)  # a mask's file holds no missing pixel
        torch.testing.assert_close(operator.adjoint(read), operator.adjoint(direct))


def test_masks_as_alpha_and_replaced_by_an_observations_mask():
    op = box_mask(SHAPE, 0, 0, 8, 8)
    assert torch.equal(op.observed_pixels(), op.mask) and op.with_mask(op.mask) is op
    other = torch.ones(1, 32, 32, dtype=torch.bool)
    other[:, 30:] = False
    new = op.with_mask(other)
    assert isinstance(new, Mask) and torch.equal(new.mask, other) and new.in_shape == SHAPE
    assert AvgPool(2, SHAPE).observed_pixels() is None
    assert AvgPool(2, SHAPE).with_mask(torch.ones(1, 16, 16, dtype=torch.bool)).factor == 2
    with pytest.raises(ValueError, match="observes every pixel"):
        GaussianBlur(1.0, 5, SHAPE).with_mask(other)
    meas = LinearMeasurement(op, 0.1)
    masked = meas.with_mask(other)
    assert masked.sigma_y == 0.1 and torch.equal(masked.operator.mask, other) and meas.with_mask(op.mask) is meas


def test_joint_observations_from_files_and_labels():
    from invsgm.pretrained import load_pretrained

    clf = load_pretrained("digits_classifier").model
    inpaint = LinearMeasurement(box_mask((1, 16, 16), 0, 0, 8, 16))
    joint = Joint([ClassLabel(clf, x_shape=(1, 16, 16)), inpaint])
    assert joint.file_parts == (inpaint,) and joint.takes_labels and not inpaint.takes_labels
    pixels = torch.rand(2, 1, 16, 16)
    labels, y = joint.observe(images=pixels, labels=torch.tensor([3, 4]), centered=True)
    assert labels.tolist() == [3, 4]
    torch.testing.assert_close(y, inpaint.operator(2 * pixels - 1))
    masked = joint.with_mask(torch.ones(1, 16, 16, dtype=torch.bool))
    assert isinstance(masked, Joint) and masked.parts[0] is joint.parts[0]
    assert torch.equal(masked.file_parts[0].operator.mask, torch.ones(1, 16, 16, dtype=torch.bool))


def test_baselines_are_a_table_keyed_by_operator():
    from invsgm import baselines

    y = torch.rand(1, 3, 16, 16)
    up = baselines.baseline_for(AvgPool(2, SHAPE), y)
    torch.testing.assert_close(up, baselines.upsample_bicubic(y, 2))

    class MyPool(AvgPool):
        pass

    assert baselines.baseline_for(MyPool(2, SHAPE), y).shape == (1, *SHAPE)  # inherited
    calls = []
    baselines.register_baseline(MyPool, lambda op, y_img, sigma: calls.append(sigma) or torch.zeros(1, *SHAPE))
    try:
        assert baselines.baseline_for(MyPool(2, SHAPE), y, 0.25).abs().sum() == 0 and calls == [0.25]
    finally:
        del baselines.BASELINES[MyPool]
    from invsgm.operators import Matrix

    assert baselines.baseline_for(Matrix(torch.eye(3)), torch.rand(1, 3)) is None


def test_grey_files_read_as_one_channel_or_equal_rgb(tmp_path):
    from invsgm.runner.inputs import read_pixels, to_channels

    grey = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(np.stack([grey] * 3, 2)).save(tmp_path / "rgb.png")
    Image.fromarray(grey).save(tmp_path / "l.png")
    np.save(tmp_path / "g.npy", grey.astype(np.float32)[..., None] / 255)
    for name in ("rgb.png", "l.png", "g.npy"):
        a, alpha = read_pixels(tmp_path / name, "observation")
        x = to_channels(torch.from_numpy(a).permute(2, 0, 1), 1, tmp_path / name, "observation")
        assert alpha is None and torch.allclose(x[0], torch.from_numpy(grey / 255).float()), name
    Image.fromarray(np.stack([grey] * 3 + [np.full((8, 8), 255, np.uint8)], 2)).save(tmp_path / "rgba.png")
    assert read_pixels(tmp_path / "rgba.png", "observation")[1].min() == 1.0  # opaque alpha


NOT_A_FILE = '''
from invsgm.measurement import LinearMeasurement
from invsgm.operators import Mask, box_mask


class KSpaceLike(Mask):
    """A mask whose observation is not an image file (as k-space or a sinogram is not)."""

    @property
    def file_shape(self):
        raise NotImplementedError("not an image file")


def hidden_top(ctx):
    return LinearMeasurement(KSpaceLike(box_mask(ctx.shape, 0, 0, 8, ctx.shape[2]).mask, channels=ctx.shape[0]))
'''


def test_observations_that_are_not_image_files_are_simulated_and_pictured(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    info = site / "invsgm_test_kspace-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: invsgm-test-kspace\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[invsgm.tasks]\nhidden_top = invsgm_test_kspace:hidden_top\n")
    (site / "invsgm_test_kspace.py").write_text(NOT_A_FILE)
    monkeypatch.syspath_prepend(str(site))
    out = tmp_path / "out"
    assert main(["run", str(REPO / "tasks" / "inpaint.yaml"), "--out", str(out), *FAST, "--set", "inputs.count=1",
                 "--set", "task={name: hidden_top}"]) == 0
    d = out / "000"
    assert {"observation.png", "truth.png", "mean.png"} <= {p.name for p in d.iterdir()}
    assert not (d / "observation.npy").exists() and Image.open(d / "observation.png").mode == "RGB"  # a picture
    assert np.abs(_png(d / "observation.png") - _png(d / "truth.png"))[8:].max() <= Q
    capsys.readouterr()
    Image.fromarray(_u8(_patch())).save(tmp_path / "photo.png")
    assert main(["run", str(REPO / "tasks" / "inpaint.yaml"), "--out", str(tmp_path / "o"), *FAST,
                 "--set", "task={name: hidden_top}", "--observation", str(tmp_path / "photo.png")]) == 2
    assert "the task observes 0 images per input" in capsys.readouterr().err
