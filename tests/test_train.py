"""Training loop: exact resume, atomic checkpoints, DDP = one process, config errors, outputs and export."""
from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from invsgm.cli import main
from invsgm.data import TensorImages
from invsgm.train import load_config, train_classifier, train_score
from invsgm.train.checkpoint import load_checkpoint, save_checkpoint
from invsgm.train.config import TrainConfig
from invsgm.train.distributed import EpochOrder, Layout

TINY_UNET = {"kind": "unet", "nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [],
             "dropout": 0.0, "resblock_type": "ddpm", "embedding_type": "positional", "fir": False}
TINY_CLASSIFIER = {"kind": "classifier", "width": 8, "ch_mult": [1, 2], "blocks_per_level": 1,
                   "embedding_type": "positional"}
FAST = {"batch_size": 8, "lr": 1e-3, "warmup": 2, "log_every": 2, "n_samples": 4, "sample_steps": 4,
        "sample_corrector": "none"}



def tiny_dataset(n: int = 20, channels: int = 1, size: int = 8) -> TensorImages:
    g = torch.Generator().manual_seed(123)
    images = torch.rand(n, channels, size, size, generator=g)
    return TensorImages(images, torch.arange(n) % 3, num_classes=3)


def config(out: Path, task: str = "score", **training) -> dict:
    model = dict(TINY_UNET) if task == "score" else dict(TINY_CLASSIFIER)
    return {"data": {"name": "digits", "image_size": 8}, "sde": {"kind": "vp"}, "model": model,
            "training": {**FAST, **training}, "output": str(out)}


def state_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint's model, EMA and optimizer state, by a flat key."""
    ckpt = torch.load(path, weights_only=True)
    flat = {f"model.{k}": v for k, v in ckpt["model"].items()}
    flat.update({f"ema.{k}": v for k, v in ckpt["ema"].items()})
    for i, s in ckpt["optimizer"]["state"].items():
        flat.update({f"optimizer.{i}.{k}": v for k, v in s.items()})
    return flat


def assert_identical(a: Path, b: Path) -> int:
    ta, tb = state_tensors(a), state_tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"tensors differ after resume: {different[:5]}"
    return len(ta)


class Kill(Exception):
    pass


# --- exact resume ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["score", "classifier"])
def test_resume_after_kill_is_exact(tmp_path, task):
    """N steps straight = N/2 steps, a kill right after the checkpoint, and the same call again."""
    n = 8  # 20 samples / batch 8 → 2 steps per epoch: the resume crosses epochs and skips a consumed batch
    train = train_score if task == "score" else train_classifier
    model = dict(TINY_UNET if task == "score" else TINY_CLASSIFIER, dropout=0.1)  # dropout must replay too
    data = tiny_dataset()
    straight = config(tmp_path / "straight", task, steps=n, checkpoint_every=3)
    straight["model"] = model
    t0 = time.perf_counter()
    train(straight, dataset=data)
    t_straight = time.perf_counter() - t0

    resumed = dict(straight, output=str(tmp_path / "resumed"))

    def kill(step, state):
        if step == 3:  # right after the checkpoint of step 3 (mid-epoch: batch 1 of epoch 1)
            raise Kill

    with pytest.raises(Kill):
        train(resumed, dataset=data, callback=kill)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 3
    result = train(resumed, dataset=data)
    assert result.start_step == 3 and result.steps == n
    count = assert_identical(tmp_path / "straight" / "checkpoint.pt", tmp_path / "resumed" / "checkpoint.pt")
    rows_a = list(csv.reader(open(tmp_path / "straight" / "log.csv")))
    rows_b = list(csv.reader(open(tmp_path / "resumed" / "log.csv")))
    assert [r[:2] for r in rows_a] == [r[:2] for r in rows_b]  # same steps and losses, no duplicate rows
    print(f"\n[resume {task}] {n} steps straight ({t_straight:.2f} s) vs kill at 3 + resume: "
          f"{count} tensors identical (model, EMA, Adam)")


def test_resume_photo_crops_is_exact(tmp_path):
    """The 'photo_crops' source (read through a DataLoader): a kill after step 3 and a resume draw the crops of
    the uninterrupted run (40 crops, batch 8: 5 steps per epoch, so the resume skips consumed batches and
    crosses into the next epoch)."""
    cfg = config(tmp_path / "straight", steps=8, checkpoint_every=3)
    cfg["data"] = {"name": "photo_crops", "image_size": 8, "min_crop": 8, "max_crop": 32, "length": 40, "seed": 3}
    train_score(cfg)
    resumed = dict(cfg, output=str(tmp_path / "resumed"))

    def kill(step, state):
        if step == 3:
            raise Kill

    with pytest.raises(Kill):
        train_score(resumed, callback=kill)
    result = train_score(resumed)
    assert result.start_step == 3 and result.steps == 8
    count = assert_identical(tmp_path / "straight" / "checkpoint.pt", tmp_path / "resumed" / "checkpoint.pt")
    rows_a = list(csv.reader(open(tmp_path / "straight" / "log.csv")))
    rows_b = list(csv.reader(open(tmp_path / "resumed" / "log.csv")))
    assert [r[:2] for r in rows_a] == [r[:2] for r in rows_b]
    card = yaml.safe_load(open(tmp_path / "resumed" / "pretrained" / "card.yaml"))
    assert card["data"]["name"] == "photo_crops" and card["data"]["kwargs"]["seed"] == 3
    assert card["data"]["channels"] == 3 and card["data"]["image_size"] == 8
    print(f"\n[resume photo_crops] 8 steps vs kill at 3 + resume: {count} tensors identical")


def test_resume_with_more_steps_via_cli(tmp_path):
    """`invsgm train` with steps=N/2, then the same command with steps=N = N straight (digits 8×8)."""
    path = tmp_path / "cfg.yaml"
    cfg = config(tmp_path / "unused", steps=6, checkpoint_every=100)
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "score", str(path), "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "score", str(path), "--set", "training.steps=3", "--out", str(tmp_path / "b")]) == 0
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 3
    assert main(["train", "score", str(path), "--out", str(tmp_path / "b")]) == 0
    count = assert_identical(tmp_path / "a" / "checkpoint.pt", tmp_path / "b" / "checkpoint.pt")
    print(f"\n[resume cli] 6 steps vs 3 + 3: {count} tensors identical")


def test_resume_refuses_another_config(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path / "run", steps=2)))
    assert main(["train", "score", str(path)]) == 0
    capsys.readouterr()
    assert main(["train", "score", str(path), "--set", "model.nf=16", "--set", "training.steps=4"]) == 2
    err = capsys.readouterr().err
    assert "invsgm train: error:" in err and "model.nf" in err and "checkpoint" in err
    assert main(["train", "classifier", str(path), "--set", "model={kind: classifier}"]) == 2  # not a sub-key
    assert "--set model" in capsys.readouterr().err


# --- atomic checkpoints ---------------------------------------------------------------------------------

def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.arange(5.0)})

    def partial_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", partial_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(5)})
    monkeypatch.undo()
    kept = torch.load(path, weights_only=True)
    assert kept["step"] == 1 and torch.equal(kept["w"], torch.arange(5.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_crash_during_training_checkpoint(tmp_path, monkeypatch):
    """The second checkpoint of a run fails half-way: the first stays loadable, no temporary files remain."""
    real_save, calls = torch.save, []

    def flaky_save(obj, f, *args, **kwargs):
        calls.append(obj["step"])
        if len(calls) == 2:
            f.write(b"garbage")
            raise KeyboardInterrupt  # a kill while writing
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        train_score(config(tmp_path, steps=4, checkpoint_every=2), dataset=tiny_dataset())
    monkeypatch.undo()
    assert calls == [2, 4]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- outputs and export ---------------------------------------------------------------------------------

def test_outputs_log_grid_checkpoint_and_export(tmp_path):
    out = tmp_path / "run"
    result = train_score(config(out, steps=4, checkpoint_every=2, sample_every=2), dataset=tiny_dataset(),
                         command="invsgm train score tiny.yaml")
    names = {p.name for p in out.iterdir()}
    assert {"checkpoint.pt", "log.csv", "config.yaml", "samples.png", "samples", "pretrained"} <= names
    assert (out / "samples" / "step_0000002.png").is_file()
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(float(r["loss"]) > 0 and float(r["grad_norm"]) > 0 and float(r["seconds"]) > 0 for r in rows)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"step", "model", "ema", "optimizer", "config"} <= ckpt.keys() and ckpt["step"] == 4
    assert TrainConfig.from_dict(ckpt["config"]).to_dict() == ckpt["config"]
    from PIL import Image
    assert Image.open(out / "samples.png").size[0] > 8

    card = yaml.safe_load(open(out / "pretrained" / "card.yaml"))
    assert card["task"] == "score" and card["data"]["centered"] is True and card["data"]["channels"] == 1
    assert card["command"] == "invsgm train score tiny.yaml" and card["samples"] == "samples.png"
    assert card["training"]["steps"] == 4 and card["training"]["final_loss"] == pytest.approx(result.final_loss)
    assert (out / "pretrained" / "samples.png").is_file()
    try:
        from invsgm.pretrained import load_pretrained
    except ImportError:
        pytest.skip("invsgm.pretrained.load_pretrained does not exist yet")
    loaded = load_pretrained(out / "pretrained")
    for k, v in result.net.state_dict().items():  # the EMA weights were exported
        assert torch.equal(loaded.net.state_dict()[k], v)
    assert torch.equal(result.net.state_dict()["all_modules.0.weight"], ckpt["ema"]["all_modules.0.weight"])
    print(f"\n[outputs] final loss {result.final_loss:.4g}; files {sorted(names)}")


def test_classifier_export_and_accuracy_log(tmp_path):
    result = train_classifier(config(tmp_path, "classifier", steps=4), dataset=tiny_dataset())
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert "accuracy" in rows[0] and all(0 <= float(r["accuracy"]) <= 1 for r in rows)
    from invsgm.pretrained import load_pretrained
    loaded = load_pretrained(result.pretrained)
    assert loaded.card["task"] == "classifier" and loaded.card["data"]["num_classes"] == 3
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    assert loaded.model(x, torch.full((2,), 0.5)).shape == (2, 3)
    print(f"\n[classifier] final loss {result.final_loss:.4g}, accuracy {float(rows[-1]['accuracy']):.2f}")


# --- config errors (exit code 2, message naming the key/value/file) --------------------------------------

@pytest.mark.parametrize("sets, expected", [
    (["training.stepz=3"], ["'stepz'", "'training'"]),
    (["training.lr=-1"], ["training.lr", "-1", "expected a number"]),
    (["training.weighting=fisher"], ["training.weighting", "'fisher'", "'likelihood'"]),
    (["training.steps=1.5"], ["training.steps", "1.5", "integer"]),
    (["model.nff=8"], ["'nff'", "'model'"]),
    (["model.nf=eight"], ["nf", "'eight'"]),
    (["sde.kind=ou"], ["sde.kind", "'ou'"]),
    (["sde.beta_max=-3"], ["sde", "beta_max"]),
    (["data.colour=1"], ["'colour'", "'data'"]),
    (["data.image_size=abc"], ["data.image_size", "'abc'", "integer"]),
    (["data.name=imagenet"], ["data.name", "'imagenet'"]),
    (["optimizer.lr=1"], ["'optimizer'"]),
])
def test_config_errors_exit_2(tmp_path, capsys, sets, expected):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path / "run", steps=1)))
    argv = ["train", "score", str(path)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("invsgm train: error:") and "Traceback" not in err
    for word in expected:
        assert word in err, (word, err)
    assert not (tmp_path / "run").exists()


def test_config_file_errors_exit_2(tmp_path, capsys):
    assert main(["train", "score", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**config(tmp_path / "run"), "extras": {"a": 1}}))
    assert main(["train", "score", str(bad)]) == 2
    assert "'extras'" in capsys.readouterr().err
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(config(tmp_path / "run", steps=1)))
    assert main(["train", "classifier", str(wrong)]) == 2  # a U-Net is not a classifier
    assert "model.kind" in capsys.readouterr().err


def test_yaml_numbers_and_round_trip(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("data: {name: digits, image_size: 8}\nsde: {kind: ve, sigma_max: 5}\n"
                    "model: {kind: unet, nf: 8}\ntraining: {lr: 3e-4, grad_clip: null}\n")
    cfg = load_config(path, ["training.ema_decay=0.99", "model.ch_mult=[1, 2]"])
    assert cfg.training.lr == 3e-4 and cfg.training.grad_clip is None and cfg.training.ema_decay == 0.99
    assert cfg.model["ch_mult"] == [1, 2] and cfg.output == "runs/cfg"
    assert cfg.sde == {"kind": "ve", "sigma_min": 0.01, "sigma_max": 5.0, "N": 1000}
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


# --- data order shared by all layouts --------------------------------------------------------------------

def test_ranks_batches_union_is_the_single_process_batch():
    data = tiny_dataset(23)
    single = EpochOrder(data, Layout(), 8, seed=5)
    ranks = [EpochOrder(data, Layout(rank=r, world_size=2), 4, seed=5) for r in range(2)]
    assert single.steps_per_epoch == ranks[0].steps_per_epoch == 2
    for epoch in range(3):
        full = single.indices(epoch)
        parts = [o.indices(epoch) for o in ranks]
        for k in range(2):
            batch = full[8 * k: 8 * k + 8]
            assert parts[0][4 * k: 4 * k + 4] == batch[0::2] and parts[1][4 * k: 4 * k + 4] == batch[1::2]
    assert ranks[1].indices(1, skip=1) == ranks[1].indices(1)[4:]


# --- DDP: two gloo processes = one process with the same global batch -----------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("task", ["score", "classifier"])
def test_ddp_two_processes_match_one(tmp_path, task):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path / "unused", task, steps=3, checkpoint_every=100,
                                          log_every=1)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "-m", "invsgm.cli", "train", task, str(path),
         "--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True, timeout=240)
    t_ddp = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    t0 = time.perf_counter()
    assert main(["train", task, str(path), "--out", str(tmp_path / "one")]) == 0
    t_one = time.perf_counter() - t0
    a, b = state_tensors(tmp_path / "ddp" / "checkpoint.pt"), state_tensors(tmp_path / "one" / "checkpoint.pt")
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")
    loss_ddp = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "ddp" / "log.csv"))]
    loss_one = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "one" / "log.csv"))]
    assert loss_ddp == pytest.approx(loss_one, rel=1e-5)
    card = yaml.safe_load(open(tmp_path / "ddp" / "pretrained" / "card.yaml"))
    assert card["training"]["world_size"] == 2 and card["command"].startswith("torchrun --nproc_per_node 2")
    print(f"\n[ddp {task}] 2 gloo processes ({t_ddp:.1f} s incl. start-up) vs 1 process ({t_one:.1f} s): "
          f"max |Δ| over {len(a)} tensors = {worst:.2e}; losses {loss_ddp}")


# --- shipped configs and data paths ----------------------------------------------------------------------

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name, task, shape, low, high", [
    ("digits_score", "score", (1, 16, None), 0.5e6, 1.6e6),
    ("digits_classifier", "classifier", (1, 16, 10), 0.2e6, 1.6e6),
    ("photos_score", "score", (3, 32, None), 1.0e6, 2.0e6),
    ("folder_example", "score", (3, 32, None), 1.0e6, 2.0e6),
])
def test_shipped_configs(name, task, shape, low, high):
    from invsgm.models import parameter_count
    from invsgm.models.build import build_model
    from invsgm.train.loop import resolve_model

    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.output == f"runs/{'my_images' if name == 'folder_example' else name}"
    args = resolve_model(cfg, task, *shape)
    with torch.device("meta"):
        net = build_model(**args)
    count = parameter_count(net)
    assert low <= count <= high, count
    if name.startswith("digits"):
        assert cfg.sde == load_config(CONFIGS / "digits_score.yaml").sde  # the classifier guides that model
    print(f"\n[config {name}] {args['kind']}: {count / 1e6:.2f} M parameters")


class _Items(torch.utils.data.Dataset):
    """A data set without in-memory tensors, read through a DataLoader."""

    def __init__(self, base):
        self.base, self.channels, self.image_size, self.num_classes = base, base.channels, base.image_size, 3

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.base[i]


def test_dataloader_path_matches_in_memory_path(tmp_path):
    data = tiny_dataset()
    train_score(config(tmp_path / "memory", steps=5), dataset=data)
    train_score(config(tmp_path / "loader", steps=5), dataset=_Items(data))
    assert_identical(tmp_path / "memory" / "checkpoint.pt", tmp_path / "loader" / "checkpoint.pt")


def test_image_folder_through_cli(tmp_path, capsys):
    """configs/folder_example.yaml on a folder of 12 PNGs (one sub-folder per class for the classifier)."""
    from invsgm.imageio import write_png

    g = torch.Generator().manual_seed(0)
    for i in range(12):
        image = (torch.rand(10, 12, 3, generator=g) * 255).to(torch.uint8).numpy()
        write_png(tmp_path / "images" / f"class{i % 2}" / f"{i}.png", image)
    common = ["--set", f"data.root={tmp_path / 'images'}", "--set", "data.image_size=8", "--set",
              "training.num_workers=0", "--set", "training.steps=2", "--set", "training.batch_size=4",
              "--set", "training.sample_every=0", "--set", "training.n_samples=2", "--set", "training.sample_steps=2"]
    tiny = ["--set", "model.nf=8", "--set", "model.ch_mult=[1, 2]", "--set", "model.num_res_blocks=1"]
    assert main(["train", "score", str(CONFIGS / "folder_example.yaml"), *common, *tiny,
                 "--out", str(tmp_path / "score")]) == 0
    assert (tmp_path / "score" / "pretrained" / "samples.png").is_file()
    clf = ["--set", "model={kind: classifier}"]  # not a dotted key: refused, see test_resume_refuses_another_config
    assert main(["train", "classifier", str(CONFIGS / "folder_example.yaml"), *common, *clf]) == 2
    capsys.readouterr()
    path = tmp_path / "clf.yaml"
    cfg = yaml.safe_load((CONFIGS / "folder_example.yaml").read_text())
    cfg["model"] = dict(TINY_CLASSIFIER)
    cfg["data"]["labels_from_subfolders"] = True
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "classifier", str(path), *common, "--out", str(tmp_path / "clf")]) == 0
    card = yaml.safe_load((tmp_path / "clf" / "pretrained" / "card.yaml").read_text())
    assert card["data"]["num_classes"] == 2 and card["model"]["num_classes"] == 2


def test_gpu_training_script_tiny(tmp_path):
    """benchmarks/train_photos_gpu.py --tiny on the CPU: the probe (4 steps) and its resume (to 8 steps) give the
    weights of the single command the card records, run straight."""
    import importlib
    import shlex

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        script = importlib.import_module("train_photos_gpu")
    finally:
        sys.path.pop(0)
    summary = script.main(["--tiny", "--device", "cpu", "--out", str(tmp_path / "two_phases")])
    assert summary["steps"] == 8 and summary["seconds_per_step"] > 0
    card = yaml.safe_load(open(tmp_path / "two_phases" / "pretrained" / "card.yaml"))
    assert card["data"]["name"] == "photo_crops" and card["training"]["steps"] == 8
    argv = shlex.split(card["command"])
    assert argv[:4] == ["invsgm", "train", "score", "configs/photos_score.yaml"] and "training.steps=8" in argv
    argv[3] = str(CONFIGS / "photos_score.yaml")
    argv[argv.index("--out") + 1] = str(tmp_path / "straight")
    assert main(argv[1:]) == 0
    count = assert_identical(tmp_path / "two_phases" / "checkpoint.pt", tmp_path / "straight" / "checkpoint.pt")
    print(f"\n[train_photos_gpu --tiny] probe 4 + resume to 8 steps = the card's command straight: {count} tensors")
