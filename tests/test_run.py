"""``invsgm run``: every shipped task YAML end to end (few steps), the results layout, data consistency of the
written samples, YAML and input errors, nothing half-written, seeds, ``--input``, official checkpoints and
task plugins through entry points."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from invsgm.cli import main
from invsgm.data import digits, load_image, photos_test_images
from invsgm.sde import VPSDE
from invsgm.tasks import Composite, LinearGaussian, Replacement
from invsgm.tasks.registry import TaskContext, available_tasks, build_task

REPO = Path(__file__).resolve().parents[1]
TASKS = sorted((REPO / "tasks").glob("*.yaml"))
INTEROP = Path(os.environ.get("INVSGM_INTEROP", REPO.parent / "shared" / "interop"))
OFFICIAL = INTEROP / "ve_cifar10_ncsnpp_continuous" / "checkpoint.pth"
Q = 1 / 255 + 1e-6  # PNG quantisation


def _small(path: Path) -> list[str]:
    """--set items making a run of ``path`` tiny: 3 steps, 2 samples, 2 inputs."""
    spec = yaml.safe_load(path.read_text())
    sets = ["sampler.steps=3", "sampler.n_samples=2"]
    sets += ["inputs.labels=[0,3]"] if "labels" in spec["inputs"] else ["inputs.count=2"]
    return [a for s in sets for a in ("--set", s)]


def _run(args: list[str], capsys=None) -> tuple[int, str]:
    code = main(["run", *args])
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Each shipped YAML run once (small), by file stem → its output folder (or the reason it was skipped)."""
    root = tmp_path_factory.mktemp("runs")
    cwd = os.getcwd()
    os.chdir(REPO)  # relative paths in the YAML files are resolved against the current directory
    out = {}
    try:
        for path in TASKS:
            if path.stem == "official_inpaint" and not OFFICIAL.is_file():
                out[path.stem] = f"reference checkpoint {OFFICIAL} is absent (set INVSGM_INTEROP)"
                continue
            folder = root / path.stem
            assert main(["run", str(path), "--out", str(folder), *_small(path)]) == 0, path
            out[path.stem] = folder
    finally:
        os.chdir(cwd)
    return out


def _folder(results, stem) -> Path:
    folder = results[stem]
    if isinstance(folder, str):
        pytest.skip(folder)
    return folder


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64) / 255


@pytest.mark.parametrize("stem", [p.stem for p in TASKS])
def test_every_task_yaml_runs_and_writes_the_layout(results, stem, capsys):
    folder = _folder(results, stem)
    config = yaml.safe_load((folder / "run.yaml").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    inputs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert [p.name for p in inputs] == [r["name"] for r in metrics["inputs"]] and len(inputs) == 2
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    labelled = "labels" in config["inputs"]
    for d in inputs:
        names = {p.name for p in d.iterdir()}
        assert {"mean.png", "std.png", "panel.png", "samples"} <= names, names
        assert sorted(p.name for p in (d / "samples").iterdir()) == ["000.png", "001.png"]
        samples = np.stack([_png(p) for p in sorted((d / "samples").iterdir())])
        spread = samples.std(0, ddof=1)
        spread = np.sqrt((spread ** 2).mean(2)) if spread.ndim == 3 else spread  # RMS over channels
        assert np.abs(_png(d / "std.png") - np.clip(2 * spread, 0, 1)).max() <= 2 * Q  # grey, 2·std
        if not labelled:
            assert {"truth.png", "observation.png", "baseline.png"} <= names, names
    rec = metrics["inputs"][0]
    if labelled:
        assert rec["label"] == 0 and len(rec["predicted"]) == 2 and "class_accuracy" in metrics["summary"]
    else:
        assert {"mean", "samples", "baseline"} <= set(rec) and np.isfinite(rec["mean"]["psnr"])
        assert main(["eval", str(folder)]) == 0
        table = capsys.readouterr().out
        assert "baseline" in table and (folder / "eval.json").is_file()
        ev = json.loads((folder / "eval.json").read_text())
        row = next(r for r in ev["rows"] if r["input"] == rec["name"] and r["method"] == "mean")
        assert row["psnr"] == pytest.approx(rec["mean"]["psnr"], rel=1e-9)  # metrics.json = eval of the PNGs
    assert config["sampler"]["steps"] == 3 and config["seed"] == 0


def test_noiseless_inpainting_keeps_the_observed_pixels(results):
    folder = _folder(results, "inpaint")
    config = yaml.safe_load((folder / "run.yaml").read_text())
    top, left, h, w = config["task"]["mask"]["box"]
    for d in (p for p in folder.iterdir() if p.is_dir()):
        truth = _png(d / "truth.png")
        observed = np.ones(truth.shape[:2], dtype=bool)
        observed[top:top + h, left:left + w] = False
        for s in sorted((d / "samples").glob("*.png")) + [d / "mean.png"]:
            diff = np.abs(_png(s) - truth)[observed]
            assert diff.max() <= Q, (s, diff.max())
        assert np.abs(_png(d / "samples" / "000.png") - truth)[~observed].max() > 0.05  # the box was sampled


def test_colorization_keeps_the_grey_channel(results):
    folder = _folder(results, "colorize")
    for d in (p for p in folder.iterdir() if p.is_dir()):
        grey = _png(d / "truth.png").mean(2)
        samples = [_png(s) for s in sorted((d / "samples").glob("*.png"))]
        for s in samples:
            assert np.abs(s.mean(2) - grey).max() <= Q
        assert np.abs(samples[0] - samples[0].mean(2, keepdims=True)).max() > 0.02  # colours were sampled


# --- errors -------------------------------------------------------------------------------------------

def _inpaint(tmp_path, *sets, out="out", extra=()):
    args = [str(REPO / "tasks" / "inpaint.yaml"), "--out", str(tmp_path / out), "--set", "sampler.steps=2",
            "--set", "sampler.n_samples=1", "--set", "inputs.count=1"]
    for s in sets:
        args += ["--set", s]
    return args + list(extra)


@pytest.mark.parametrize("sets, expected", [
    (["sampler.stpes=3"], "sampler.stpes = 3; expected one of ["),
    (["sampler.steps=abc"], "sampler.steps = 'abc': expected an integer >= 1"),
    (["sampler.name=ode"], "sampler.name = 'ode': expected one of ['pc', 'smc']"),
    (["modle.pretrained=x"], "unknown key 'modle'"),
    (["task.name=inpant"], "unknown task 'inpant'; available: ["),
    (["task.sigma=0.1"], "task.sigma = 0.1: unknown parameter of task 'inpaint'"),
    (["task.sigma_y=lots"], "task.sigma_y = 'lots': expected a number"),
    (["task.mask={box: [8, 8, 40, 4]}"], "mask.box = [8, 8, 40, 4]"),
    (["task.mask={circle: 3}"], "mask = {'circle': 3}: expected a mapping with one of"),
    (["task.guidance=dps", "task.sigma_y=0.1", "task.scale=-1"], "scale = -1: expected a number >= 0"),
    (["sde=ve"], "sde = 've' but the model 'photos_score' has a 'vp' SDE"),
    (["inputs.dataset=digits_test"], "'digits_test' holds square grey images but the model's samples have shape"),
    (["model.pretrained=no_such_model"], "no pretrained model 'no_such_model'"),
    (["inputs.labels=[1]"], "inputs.labels = [1]: the task has no class_conditional part"),
    (["inputs={count: 2}"], "inputs = {'count': 2}: expected {dataset: one of ['photos_test', 'digits_test']"),
    (["sampler.name=smc"], "sampler.name = 'smc': twisted SMC needs a task with a likelihood"),
    (["device=tpu"], "device = 'tpu': expected auto, cpu, cuda or cuda:N"),
    (["sampler.steps"], "--set 'sampler.steps': expected KEY.SUB=VALUE"),
    (["sampler.steps=[1,"], "--set 'sampler.steps=[1,': the value '[1,' is not valid YAML"),
    (["task.mask.box.9=1"], "is a list of 4; '9' is not an index into it"),
])
def test_yaml_errors_name_the_key_and_value(tmp_path, capsys, sets, expected):
    code, err = _run(_inpaint(tmp_path, *sets), capsys)
    assert code == 2 and err.startswith("invsgm run: error: ") and expected in err, err


def test_file_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "mask.png"
    bad.write_bytes(b"not a png")
    code, err = _run(_inpaint(tmp_path, f"task.mask={{file: {bad}}}"), capsys)
    assert code == 2 and str(bad) in err and "cannot be read as an image" in err, err
    small = tmp_path / "small.png"
    Image.new("L", (16, 8)).save(small)
    code, err = _run(_inpaint(tmp_path, f"task.mask={{file: {small}}}"), capsys)
    assert code == 2 and str(small) in err and "8x16" in err and "32x32" in err, err

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (24, 20)).save(images / "a.png")
    code, err = _run(_inpaint(tmp_path, out="o2", extra=["--input", str(images)]), capsys)
    assert code == 2 and f"input image {images / 'a.png'} is 20x24 (HxW)" in err and "32x32" in err, err
    code, err = _run(_inpaint(tmp_path, out="o3", extra=["--input", str(tmp_path / "none")]), capsys)
    assert code == 2 and str(tmp_path / "none") in err, err
    code, err = _run([str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "missing.yaml" in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    code, err = _run(_inpaint(tmp_path, out="notes"), capsys)
    assert code == 2 and "not empty and holds no run.yaml" in err and (tmp_path / "notes" / "keep.txt").is_file()


def _patch_folder(folder: Path, n: int) -> list[torch.Tensor]:
    folder.mkdir(parents=True, exist_ok=True)
    images = photos_test_images(n)
    for i, x in enumerate(images):
        a = (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(a).save(folder / f"patch_{i}.png")
    return [load_image(folder / f"patch_{i}.png") for i in range(n)]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_nothing_half_written_on_a_bad_input(tmp_path, capsys):
    images = tmp_path / "images"
    _patch_folder(images, 3)
    (images / "patch_1.png").write_bytes((images / "patch_1.png").read_bytes()[:60])  # truncated
    out = tmp_path / "out"
    code, err = _run(_inpaint(tmp_path, "sampler.batch_size=1", extra=["--input", str(images)]), capsys)
    assert code == 2 and str(images / "patch_1.png") in err, err
    assert _leftovers(out) == ["patch_0", "run.yaml"]  # no temporary folder, no metrics.json, no patch_1
    assert sorted(p.name for p in (out / "patch_0").iterdir())[:3] == ["baseline.png", "mean.png", "observation.png"]


def test_nothing_half_written_on_ctrl_c(tmp_path, capsys, monkeypatch):
    import invsgm.run as run_module

    images = tmp_path / "images"
    _patch_folder(images, 2)
    calls = {"n": 0}
    save = run_module._save_png

    def interrupted(path, image):  # the second input's folder is being written
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        save(path, image)

    monkeypatch.setattr(run_module, "_save_png", interrupted)
    code, err = _run(_inpaint(tmp_path, "sampler.batch_size=2", extra=["--input", str(images)]), capsys)
    assert code == 130 and "interrupted" in err
    assert calls["n"] == 9 and _leftovers(tmp_path / "out") == ["patch_0", "run.yaml"]


def test_inputs_are_read_one_batch_at_a_time(tmp_path, monkeypatch):
    import invsgm.data
    import invsgm.solve

    images = tmp_path / "images"
    _patch_folder(images, 5)
    loads, seen = [], []
    real_load, real_solve = invsgm.data.load_image, invsgm.solve.solve
    monkeypatch.setattr(invsgm.data, "load_image", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))

    def solve(task, y, *args, **kwargs):
        seen.append((len(loads), task.batch_size(y)))
        return real_solve(task, y, *args, **kwargs)

    monkeypatch.setattr(invsgm.solve, "solve", solve)
    assert main(["run", *_inpaint(tmp_path, "sampler.batch_size=2", extra=["--input", str(images)])]) == 0
    assert seen == [(2, 2), (4, 2), (5, 1)]


def test_seed_makes_runs_reproducible(tmp_path):
    def files(out):
        return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.png"))}

    for out, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert main(["run", *_inpaint(tmp_path, "sampler.n_samples=2", out=out, extra=["--seed", seed])]) == 0
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert a == b and len(a) == 8
    sample = Path("000/samples/000.png")
    assert a[sample] != c[sample] and a[Path("000/truth.png")] == c[Path("000/truth.png")]
    assert yaml.safe_load((tmp_path / "c" / "run.yaml").read_text())["seed"] == 6


def test_input_folder_of_pngs(tmp_path):
    images = tmp_path / "mine"
    truths = _patch_folder(images, 3)
    out = tmp_path / "out"
    assert main(["run", *_inpaint(tmp_path, extra=["--input", str(images)])]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["patch_0", "patch_1", "patch_2"]
    for i, truth in enumerate(truths):
        assert torch.equal(load_image(out / f"patch_{i}" / "truth.png"), truth)
    assert yaml.safe_load((out / "run.yaml").read_text())["inputs"] == {"path": str(images)}
    # a rerun into the same folder with fewer inputs leaves only its own input folders
    (images / "patch_2.png").unlink()
    assert main(["run", *_inpaint(tmp_path, extra=["--input", str(images)])]) == 0
    assert _leftovers(out) == ["metrics.json", "patch_0", "patch_1", "run.yaml"]


# --- official checkpoints -------------------------------------------------------------------------------

def test_official_checkpoint_in_the_official_layout(tmp_path):
    """A tiny NCSN++ (VE) written as score_sde_pytorch writes it: DataParallel keys, sigmas, EMA list, optimizer."""
    from invsgm.models.build import build_model
    from invsgm.official import preset_card

    preset = "ve/cifar10_ncsnpp_continuous"
    overrides = {"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "image_size": 16, "attn_resolutions": [8]}
    card = preset_card(preset, **overrides)
    torch.manual_seed(0)
    net = build_model(**card["model"])
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    state["module.sigmas"] = torch.exp(torch.linspace(np.log(50.0), np.log(0.01), 1000))
    ema = [p.detach() + 0.01 * torch.randn_like(p) for p in net.parameters() if p.requires_grad]
    ckpt = {"optimizer": {"state": {}, "param_groups": [{"lr": 2e-4, "params": list(range(len(ema)))}]},
            "model": state, "ema": {"decay": 0.999, "num_updates": 7, "shadow_params": ema}, "step": 7}
    torch.save(ckpt, tmp_path / "checkpoint_7.pth")
    config = {"model": {"score_sde_checkpoint": str(tmp_path / "checkpoint_7.pth"), "preset": preset,
                        "overrides": overrides},
              "sde": "ve", "task": {"name": "inpaint", "mask": {"box": [4, 4, 8, 8]}},
              "sampler": {"steps": 3, "n_samples": 2}, "inputs": {"dataset": "photos_test", "count": 2},
              "output": str(tmp_path / "out"), "device": "cpu"}
    (tmp_path / "official.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "official.yaml")]) == 0
    resolved = yaml.safe_load((tmp_path / "out" / "run.yaml").read_text())
    assert resolved["model"]["ema"] is True and resolved["model"]["overrides"] == overrides
    d = tmp_path / "out" / "000"
    truth, sample = _png(d / "truth.png"), _png(d / "samples" / "001.png")
    assert truth.shape == (16, 16, 3)
    observed = np.ones((16, 16), dtype=bool)
    observed[4:12, 4:12] = False
    assert np.abs(sample - truth)[observed].max() <= Q  # VE, uncentred data: the model space is the image space


# --- the registry and plugins -------------------------------------------------------------------------------

def test_registry_builds_the_documented_tasks():
    ctx = TaskContext(shape=(3, 32, 32), centered=True, sde=VPSDE())
    assert isinstance(build_task({"name": "inpaint", "mask": {"box": [0, 0, 4, 4]}}, ctx), Replacement)
    noisy = build_task({"name": "inpaint", "mask": {"random": 0.5, "seed": 1}, "sigma_y": 0.05}, ctx)
    assert isinstance(noisy, LinearGaussian) and noisy.sigma_y == pytest.approx(0.1)  # image units × 2
    uncentred = TaskContext(shape=(3, 32, 32), centered=False, sde=VPSDE())
    assert build_task({"name": "denoise", "sigma_y": 0.05}, uncentred).sigma_y == pytest.approx(0.05)
    assert build_task("colorize", ctx).operator.out_shape == (1, 32, 32)
    sr = build_task({"name": "super_resolution", "factor": 4, "guidance": "dps", "scale": 2}, ctx)
    assert sr.operator.out_shape == (3, 8, 8) and sr.guidance == "dps" and sr.scale == 2.0
    a = build_task({"name": "random_inpaint", "missing": 0.7, "seed": 3}, ctx).operator.mask
    b = build_task({"name": "inpaint", "mask": {"random": 0.7, "seed": 3}}, ctx).operator.mask
    assert torch.equal(a, b) and 0.6 < 1 - a.float().mean() < 0.8
    assert build_task({"name": "deblur", "sigma": 2.0, "kernel_size": 7}, ctx).operator.kernel_size == 7
    with pytest.raises(ValueError, match=r"task\[1\]\.factor = 2\.5: expected an integer"):
        build_task([{"name": "colorize"}, {"name": "super_resolution", "factor": 2.5}], ctx)
    with pytest.raises(ValueError, match=r"kernel_size = 4: expected an odd integer"):
        build_task({"name": "deblur", "kernel_size": 4}, ctx)


def test_class_conditional_checks_the_sde_and_composes():
    digits = TaskContext(shape=(1, 16, 16), centered=True, sde=VPSDE())
    spec = [{"name": "class_conditional", "scale": 2.0}, {"name": "inpaint", "mask": {"box": [0, 0, 8, 16]}}]
    task = build_task(spec, digits)
    assert isinstance(task, Composite) and task.tasks[0].scale == 2.0 and task.x_shape == (1, 16, 16)
    other = TaskContext(shape=(1, 16, 16), centered=True, sde=VPSDE(beta_max=10.0))
    with pytest.raises(ValueError, match=r"trained on VPSDE\(beta_min=0.1, beta_max=20.0.*score model's SDE is "
                                         r"VPSDE\(beta_min=0.1, beta_max=10.0"):
        build_task({"name": "class_conditional"}, other)


def test_class_guided_inpainting_of_digits(tmp_path):
    config = {"model": {"pretrained": "digits_score"}, "sde": "vp",
              "task": [{"name": "class_conditional", "scale": 1.0},
                       {"name": "inpaint", "mask": {"box": [0, 0, 8, 16]}}],
              "sampler": {"steps": 3, "n_samples": 2, "batch_size": 3},
              "inputs": {"dataset": "digits_test", "count": 3},
              "output": str(tmp_path / "out")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [r["label"] for r in metrics["inputs"]] == digits(split="test").labels[:3].tolist()
    assert all(len(r["predicted"]) == 2 and "mean" in r and "baseline" in r for r in metrics["inputs"])
    truth, sample = _png(tmp_path / "out" / "000" / "truth.png"), _png(tmp_path / "out" / "000" / "samples" / "000.png")
    assert np.abs(sample - truth)[8:].max() <= Q  # the observed bottom half


PLUGIN = '''
from invsgm.operators import box_mask
from invsgm.tasks import Replacement


def top_half(ctx, rows: int = 8):
    """Inpaint the top ``rows`` rows."""
    return Replacement(box_mask(ctx.shape, 0, 0, rows, ctx.shape[2]))
'''


def test_task_plugin_through_an_entry_point(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    (site / "invsgm_test_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "invsgm_test_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: invsgm-test-plugin\nVersion: 0.1\n")
    (site / "invsgm_test_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[invsgm.tasks]\ntop_half = invsgm_test_plugin:top_half\nbroken = invsgm_no_such_module:factory\n")
    (site / "invsgm_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    assert "top_half" in available_tasks()
    spec = yaml.safe_load((REPO / "tasks" / "inpaint.yaml").read_text())
    spec.update(task={"name": "top_half", "rows": 12}, output=str(tmp_path / "out"),
                sampler={"steps": 2, "n_samples": 1}, inputs={"dataset": "photos_test", "count": 1})
    (tmp_path / "plugin.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", str(tmp_path / "plugin.yaml")]) == 0
    d = tmp_path / "out" / "000"
    assert np.abs(_png(d / "samples" / "000.png") - _png(d / "truth.png"))[12:].max() <= Q
    code, err = _run([str(tmp_path / "plugin.yaml"), "--set", "task.rows=many"], capsys)
    assert code == 2 and "task.rows = 'many': expected an integer (task 'top_half')" in err
    code, err = _run([str(tmp_path / "plugin.yaml"), "--set", "task={name: broken}"], capsys)
    assert code == 2 and "a module is missing: task plugin 'broken' (invsgm_no_such_module:factory)" in err, err
    shutil.rmtree(site)
    code, err = _run([str(tmp_path / "plugin.yaml")], capsys)
    assert code == 2 and "unknown task 'top_half'" in err


def test_set_paths_reach_nested_keys_and_list_entries():
    from invsgm.run import apply_set, parse_set

    config = {"task": [{"name": "class_conditional"}, {"name": "inpaint", "mask": {"box": [0, 0, 4, 4]}}]}
    for item in ("task.0.scale=3", "task.1.mask.box=[1, 2, 3, 4]", "sampler.steps=1e3", "output=out/x"):
        apply_set(config, *parse_set(item), item)
    assert config["task"][0]["scale"] == 3 and config["task"][1]["mask"]["box"] == [1, 2, 3, 4]
    assert config["sampler"] == {"steps": 1000.0} and config["output"] == "out/x"
    with pytest.raises(ValueError, match=r"--set task.name=x: task is a list of 2; 'name' is not an index"):
        apply_set(config, *parse_set("task.name=x"), "task.name=x")


def test_labels_outside_the_classifier_classes(tmp_path, capsys):
    code, err = _run([str(REPO / "tasks" / "class_conditional.yaml"), "--out", str(tmp_path / "o"),
                      "--set", "inputs.labels=[3, 12]"], capsys)
    assert code == 2 and "inputs.labels: label 12 is not a class of the classifier (0 to 9)" in err, err
