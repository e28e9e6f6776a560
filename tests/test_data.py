"""Data sets: built-in digits and photographs, image folders and their errors, torchvision, grids."""
from __future__ import annotations

import importlib
import struct
import subprocess
import sys
import types
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from invsgm import data
from invsgm.data import (ImageFolder, PhotoCrops, digits, image_grid, load_dataset, load_image, photos,
                         photos_test_images)


def _save(path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _check_items(ds, channels: int, size: int) -> None:
    for i in (0, len(ds) - 1):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (channels, size, size)
        assert 0 <= x.min() and x.max() <= 1 and isinstance(y, int)


# --------------------------------------------------------------------------- digits

@pytest.mark.parametrize("size", [16, 32])
def test_digits_shapes_range_classes(size):
    train, test = digits(size, "train"), digits(size, "test")
    per_class = test.labels.bincount().tolist()
    print(f"\ndigits {size}×{size}: {len(train)} train, {len(test)} test; test per class {per_class}")
    assert (len(train), len(test)) == (1442, 355)
    for ds in (train, test):
        assert ds.images.shape[1:] == (1, size, size) and ds.images.dtype == torch.float32
        assert ds.images.min() == 0 and ds.images.max() == 1
        assert (ds.num_classes, ds.channels, ds.image_size) == (10, 1, size)
        assert set(ds.labels.tolist()) == set(range(10))
        _check_items(ds, 1, size)
    assert test.labels.bincount().min() >= 34  # stratified: ~20 % of every class


def test_digits_split_is_a_deterministic_partition():
    key = lambda ds: Counter((int(y), x.numpy().tobytes()) for x, y in ds)  # noqa: E731
    train, test, full = digits(8, "train"), digits(8, "test"), digits(8, "all")
    assert key(train) + key(test) == key(full) and len(full) == 1797
    assert not set(key(train)) & set(key(test))  # no image of one split appears in the other
    assert torch.equal(digits(16, "test").images, digits(16, "test").images)
    with pytest.raises(ValueError, match="split"):
        digits(16, "val")


# --------------------------------------------------------------------------- photographs

def test_photos_split_by_photograph_and_deterministic():
    train, test = photos(32, "train"), photos(32, "test")
    print(f"\nphotos 32×32: {len(train)} train patches {dict(Counter(train.sources))}, "
          f"{len(test)} test patches {dict(Counter(test.sources))}")
    assert set(train.photo_names) == set(data.TRAIN_PHOTOS) and set(test.photo_names) == set(data.TEST_PHOTOS)
    assert not set(train.sources) & set(test.sources) and set(test.sources) == set(data.TEST_PHOTOS)
    assert (len(train), len(test)) == (1335, 80)
    for ds in (train, test):
        assert ds.images.shape[1:] == (3, 32, 32) and (ds.num_classes, ds.channels, ds.image_size) == (0, 3, 32)
        assert ds.images.min() >= 0 and ds.images.max() <= 1 and (ds.labels == -1).all()
        assert len(ds.sources) == len(ds.positions) == len(ds)
        _check_items(ds, 3, 32)
    # default strides: 16 for train (overlapping), 32 for test; positions locate the patches
    assert train.positions[:2] == [(0, 0), (0, 16)] and test.positions[:2] == [(0, 0), (0, 32)]
    i = len(test) - 1
    top, left = test.positions[i]
    assert torch.equal(test.images[i], data._photo(test.sources[i], 256)[:, top:top + 32, left:left + 32])
    data._photo.cache_clear()
    assert torch.equal(photos(32, "test").images, test.images)


def test_photos_options_and_held_out_images():
    big = photos(64, "train", stride=64, max_side=512)
    print(f"\nphotos 64×64, stride 64, max_side 512: {len(big)} train patches")
    assert big.images.shape[1:] == (3, 64, 64) and len(big) > 100
    with pytest.raises(ValueError, match="chelsea"):
        photos(200, "test")
    held = photos_test_images(8)
    assert held.shape == (8, 3, 32, 32) and torch.equal(held[:4], photos_test_images(4))
    test, train = photos(32, "test"), photos(32, "train")
    assert all((test.images == h).flatten(1).all(1).any() for h in held)
    assert not any((train.images == h).flatten(1).all(1).any() for h in held)
    with pytest.raises(ValueError, match="80 test patches"):
        photos_test_images(81)


def test_photo_crops_shapes_ranges_and_determinism():
    """Items are (3, 32, 32) float32 in [0, 1] with label −1, a fixed function of (seed, index): each is the
    stated crop of a downscaled training photograph, resized; crop sides are log-uniform in [32, 128]."""
    ds = load_dataset("photo_crops")
    assert (len(ds), ds.channels, ds.image_size, ds.num_classes) == (2**20, 3, 32, 0)
    assert ds.photo_names == tuple(data.CROP_PHOTOS) and ds.weights == {n: 0.25 for n in data.CROP_PHOTOS}
    _check_items(ds, 3, 32)
    idx = list(range(0, 2**20, 2**20 // 400))[:400]
    batch = torch.stack([ds[i][0] for i in idx])
    assert batch.dtype == torch.float32 and batch.shape == (400, 3, 32, 32)
    assert batch.min() >= 0 and batch.max() <= 1 and batch.std() > 0.1
    again = PhotoCrops()  # a new instance, same seed: the same crops
    assert torch.equal(torch.stack([again[i][0] for i in idx]), batch)
    other = PhotoCrops(seed=1)
    assert not torch.equal(torch.stack([other[i][0] for i in idx[:20]]), batch[:20])
    crops = [ds.crop(i) for i in range(4000)]
    names, sides = Counter(c[0] for c in crops), np.array([c[3] for c in crops])
    flips = np.mean([c[4] for c in crops])
    print(f"\nphoto_crops: photographs {dict(names)}, sides {sides.min()}..{sides.max()} "
          f"(median {np.median(sides):.0f}), flipped {flips:.1%}")
    assert set(names) == set(data.CROP_PHOTOS) and min(names.values()) > 850  # 1000 expected each
    assert sides.min() == 32 and sides.max() == 128 and 0.45 < flips < 0.55
    assert abs(np.median(sides) - 64) <= 3  # log-uniform on [32, 128]: median √(32·128) = 64
    assert abs(np.mean(np.log(sides) < np.log(45.25)) - 0.25) < 0.03  # a quarter below 32·√2
    for i, (name, top, left, side, flipped) in enumerate(crops[:50]):
        photo = data._photo(name, 256)
        assert 0 <= top <= photo.shape[1] - side and 0 <= left <= photo.shape[2] - side
        expected = data._resize(photo[:, top:top + side, left:left + side], (32, 32))
        assert torch.equal(ds[i][0], expected.flip(-1) if flipped else expected)
    small = PhotoCrops(image_size=8, min_crop=8, max_crop=8, flip=False, length=5)
    name, top, left, side, flipped = small.crop(3)
    assert side == 8 and not flipped and torch.equal(small[3][0], data._photo(name, 256)[:, top:top + 8, left:left + 8])
    with pytest.raises(IndexError):
        small[5]


def test_photo_crops_hold_out_test_photographs_and_check_weights():
    ds = PhotoCrops()
    assert not set(ds.photo_names) & {*data.TEST_PHOTOS, "cat"}
    assert not {"colorwheel", "hubble_deep_field", "retina"} & set(ds.photo_names)  # left out by default
    for name in ("chelsea", "coffee", "cat"):
        with pytest.raises(ValueError, match="held-out test photograph"):
            PhotoCrops(photos={"astronaut": 1, name: 1})
    with pytest.raises(ValueError, match="unknown photograph 'camera'"):
        PhotoCrops(photos={"camera": 1})
    with pytest.raises(ValueError, match="weight of 'rocket'"):
        PhotoCrops(photos={"rocket": -1})
    with pytest.raises(ValueError, match="at least one"):
        PhotoCrops(photos={"rocket": 0})
    with pytest.raises(ValueError, match="max_crop"):
        PhotoCrops(min_crop=64, max_crop=32)
    with pytest.raises(ValueError, match="mapping"):
        PhotoCrops(photos=["rocket"])
    weighted = PhotoCrops(photos={"rocket": 3, "retina": 1, "astronaut": 0})
    assert weighted.photo_names == ("rocket", "retina") and weighted.weights == {"rocket": 0.75, "retina": 0.25}
    share = np.mean([weighted.crop(i)[0] == "retina" for i in range(2000)])
    assert 0.2 < share < 0.3
    big = PhotoCrops(min_crop=100, max_crop=1000)  # sides are capped by the smallest side of each photograph
    assert all(100 <= big.crop(i)[3] <= 256 for i in range(200))
    from invsgm.train import load_config
    from pathlib import Path
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "photos_score.yaml")
    assert cfg.data["name"] == "photo_crops" and not set(cfg.data["photos"]) & {*data.TEST_PHOTOS, "cat"}


# --------------------------------------------------------------------------- image folders

def test_image_folder_unlabelled_nested_formats(tmp_path):
    _save(tmp_path / "a.png", _noise(24, 24, 1))
    _save(tmp_path / "sub" / "deeper" / "b.JPG", _noise(24, 24, 2), quality=95)
    _save(tmp_path / "sub" / "c.bmp", _noise(24, 24, 3))
    _save(tmp_path / "d.webp", _noise(24, 24, 4), lossless=True)
    _save(tmp_path / ".hidden" / "e.png", _noise(5, 5))  # skipped: hidden folder
    (tmp_path / "._a.png").write_bytes(b"AppleDouble junk")  # skipped: hidden file
    (tmp_path / "notes.txt").write_text("not an image")  # skipped: extension
    ds = ImageFolder(tmp_path, labels_from_subfolders=False)
    assert [f.name for f in ds.files] == ["a.png", "d.webp", "c.bmp", "b.JPG"]
    assert (ds.num_classes, ds.channels, ds.image_size) == (0, 3, 24) and len(ds) == 4
    assert [ds[i][1] for i in range(4)] == [-1] * 4
    x, _ = ds[0]
    assert torch.equal(x, torch.from_numpy(_noise(24, 24, 1)).permute(2, 0, 1).float() / 255)
    assert torch.equal(ds[2][0], load_image(tmp_path / "sub" / "c.bmp"))
    _check_items(ds, 3, 24)
    with pytest.raises(ValueError, match="a.png"):  # loose images beside class folders are ambiguous
        ImageFolder(tmp_path)


def test_image_folder_class_subfolders_become_labels(tmp_path):
    _save(tmp_path / "zebra" / "1.png", _noise(20, 30, 1))
    _save(tmp_path / "ant" / "x" / "2.PNG", _noise(30, 20, 2))
    _save(tmp_path / "ant" / "3.jpeg", _noise(16, 16, 3))
    (tmp_path / "empty_class").mkdir()
    ds = ImageFolder(tmp_path, image_size=16)
    assert ds.classes == ["ant", "zebra"] and ds.num_classes == 2 and ds.class_to_idx == {"ant": 0, "zebra": 1}
    assert {f.name: ds.labels[i] for i, f in enumerate(ds.files)} == {"3.jpeg": 0, "2.PNG": 0, "1.png": 1}
    _check_items(ds, 3, 16)
    print(f"\nImageFolder with classes: {len(ds)} images, classes {ds.classes}")


def test_image_folder_resize_crop_and_grayscale(tmp_path):
    bands = np.zeros((20, 60, 3), np.uint8)  # black | grey | white vertical bands
    bands[:, 20:40], bands[:, 40:] = 128, 255
    _save(tmp_path / "bands.png", bands)
    center = ImageFolder(tmp_path, image_size=20)[0][0]
    assert center.shape == (3, 20, 20) and torch.allclose(center, torch.full_like(center, 128 / 255))
    squash = ImageFolder(tmp_path, image_size=12, crop=None)[0][0]
    assert squash.shape == (3, 12, 12)
    assert squash[:, :, 0].max() < 0.05 and squash[:, :, -1].min() > 0.95 and abs(squash[0, 0, 6] - 0.5) < 0.05
    torch.manual_seed(0)
    crops = {ImageFolder(tmp_path, image_size=20, crop="random")[0][0].mean().item() for _ in range(20)}
    assert len(crops) > 1
    small = ImageFolder(tmp_path, image_size=10)  # shorter side 20 → 10, then a 10×10 centre crop
    assert small.image_size == 10 and small[0][0].shape == (3, 10, 10)
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    _save(tmp_path / "red" / "r.png", rgb)
    grey = load_image(tmp_path / "red" / "r.png", channels=1)
    assert grey.shape == (1, 8, 8) and torch.allclose(grey, torch.full_like(grey, 76 / 255))  # ITU-R 601 luma
    _save(tmp_path / "g16" / "g.png", np.full((6, 9), 65535, np.uint16))
    g16 = ImageFolder(tmp_path / "g16", channels=1)
    assert g16.image_size == (6, 9) and g16[0][0].shape == (1, 6, 9) and g16[0][0].min() == 1.0


def test_load_image_follows_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: the stored 30-wide, 40-high image is shown 40 wide, 30 high
    Image.fromarray(_noise(40, 30)).save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").shape == (3, 30, 40)
    assert ImageFolder(tmp_path).image_size == (30, 40)


# --------------------------------------------------------------------------- bad data

def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match=r"no images found in .*empty.*\.png.*\.jpg") as err:
        ImageFolder(tmp_path / "empty")
    print(f"\nempty folder: {err.value}")
    with pytest.raises(FileNotFoundError, match="absent.png"):
        load_image(tmp_path / "absent.png")


def _truncated(tmp_path, name: str, **kwargs):
    folder = tmp_path / name.replace(".", "_")
    _save(folder / name, _noise(48, 48), **kwargs)
    raw = (folder / name).read_bytes()
    (folder / name).write_bytes(raw[: len(raw) // 2])
    return folder


def test_truncated_png_fails_at_scan(tmp_path):
    folder = _truncated(tmp_path, "half.png")
    with pytest.raises(ValueError, match="half.png") as err:
        ImageFolder(folder)
    print(f"\ntruncated PNG: {err.value}")
    with pytest.raises(ValueError, match="half.png"):
        load_image(folder / "half.png")


def test_truncated_jpeg_fails_when_loaded(tmp_path):
    folder = _truncated(tmp_path, "half.jpg", quality=95)
    ds = ImageFolder(folder)  # PIL's verify() does not decode JPEG data; the full decode does
    with pytest.raises(ValueError, match="half.jpg") as err:
        ds[0]
    print(f"\ntruncated JPEG: {err.value}")
    with pytest.raises(ValueError, match="half.jpg"):
        load_image(folder / "half.jpg")


def test_text_file_named_png(tmp_path):
    _save(tmp_path / "good.png", _noise(8, 8))
    (tmp_path / "fake.png").write_text("this is not a PNG")
    with pytest.raises(ValueError, match="fake.png"):
        ImageFolder(tmp_path)
    with pytest.raises(ValueError, match="fake.png"):
        load_image(tmp_path / "fake.png")


def test_mixed_sizes_need_image_size(tmp_path):
    _save(tmp_path / "small.png", _noise(16, 16))
    _save(tmp_path / "wide.png", _noise(16, 24))
    with pytest.raises(ValueError, match=r"small.png is 16×16.*wide.png is 24×16.*image_size") as err:
        ImageFolder(tmp_path)
    print(f"\nmixed sizes: {err.value}")
    assert ImageFolder(tmp_path, image_size=16)[1][0].shape == (3, 16, 16)


def test_bad_arguments(tmp_path):
    _save(tmp_path / "a.png", _noise(8, 8))
    for key, value in [("crop", "middle"), ("channels", 2), ("image_size", 0)]:
        with pytest.raises(ValueError, match=key):
            ImageFolder(tmp_path, **{key: value})


# --------------------------------------------------------------------------- torchvision

def test_data_module_does_not_import_torchvision():
    code = "import sys, invsgm.data; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_torchvision_missing_gives_clear_message(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    for name in ("cifar10", "mnist"):
        with pytest.raises(ImportError, match=r"torchvision is not importable.*pip install invsgm\[vision\]") as err:
            load_dataset(name, root=tmp_path)
    print(f"\nno torchvision: {err.value}")


class _FakeMNIST:
    """Stands in for torchvision.datasets.MNIST: 5 random 28×28 grey PIL images, or no data at all."""

    def __init__(self, root: str, train: bool, download: bool):
        assert download is False
        if "missing" in root:
            raise RuntimeError("Dataset not found. You can use download=True to download it")
        self.images = [Image.fromarray(_noise(28, 28, k)[..., 0]) for k in range(5)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], torch.tensor(i)


def test_torchvision_wrapper_with_a_stand_in(monkeypatch, tmp_path):
    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=_FakeMNIST, CIFAR10=_FakeMNIST)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    ds = load_dataset("mnist", root=tmp_path, split="test", image_size=32)
    assert (len(ds), ds.num_classes, ds.channels, ds.image_size) == (5, 10, 1, 32)
    _check_items(ds, 1, 32)
    assert ds[3][1] == 3
    native = load_dataset("mnist", root=tmp_path)
    assert native.image_size == 28 and torch.equal(native[0][0][0], torch.from_numpy(_noise(28, 28, 0)[..., 0]) / 255)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_dataset("mnist", root=tmp_path / "missing")


def test_real_torchvision_mnist_on_fake_files(tmp_path):
    try:
        importlib.import_module("torchvision")
    except Exception as err:  # not installed, or built for another torch
        print(f"\nskipping: torchvision is not importable ({type(err).__name__}: {err})")
        pytest.skip(f"torchvision is not importable ({type(err).__name__})")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    for prefix in ("train", "t10k"):  # the idx formats of LeCun's files
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 3, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 3) + bytes([7, 1, 4]))
    ds = data.torchvision_dataset("mnist", tmp_path, "train", image_size=16)
    assert len(ds) == 3 and [ds[i][1] for i in range(3)] == [7, 1, 4]
    _check_items(ds, 1, 16)


# --------------------------------------------------------------------------- the name table

def test_load_dataset_table(tmp_path):
    ds = load_dataset("digits", image_size=32, split="test")
    assert ds.image_size == 32 and len(ds) == 355
    assert len(load_dataset("photos", split="test")) == 80
    _save(tmp_path / "a.png", _noise(8, 8))
    assert load_dataset("folder", root=tmp_path, channels=1).channels == 1
    assert len(load_dataset("photo_crops", length=10)) == 10
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*digits, photos, folder, cifar10, mnist, "
                                         "photo_crops"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="'size'"):
        load_dataset("digits", size=16)
    with pytest.raises(ValueError, match="root"):
        load_dataset("folder")


# --------------------------------------------------------------------------- grids

def test_image_grid_shape_and_values():
    x = torch.linspace(-0.5, 1.5, 10 * 3 * 8 * 8).reshape(10, 3, 8, 8)
    grid = image_grid(x, nrow=4)
    assert grid.shape == (3 * 10 + 2, 4 * 10 + 2, 3) and grid.dtype == np.uint8
    assert grid.min() == 0 and grid.max() == 255
    assert np.array_equal(grid[2:10, 2:10], (x[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy())
    assert (grid[0] == 255).all()  # white padding
    grey = image_grid(torch.rand(5, 1, 6, 6), padding=0)
    assert grey.shape == (12, 18, 1)  # ⌈√5⌉ = 3 per row, 2 rows
    with pytest.raises(ValueError, match="NaN"):
        image_grid(torch.full((1, 3, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        image_grid(torch.rand(2, 2, 4, 4))
