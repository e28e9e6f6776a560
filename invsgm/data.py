"""Image data sets: built-in ones that need no download (scikit-learn digits, scikit-image photographs),
folders of users' images, torchvision's CIFAR-10/MNIST when available, and sample grids.

Every data set yields ``(image, label)``: a float32 (C, H, W) tensor in [0, 1] and an int (−1 when
unlabelled), and exposes ``num_classes`` (0 if unlabelled), ``channels`` and ``image_size``.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import inspect
import itertools
import math
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ._checks import positive_int

__all__ = [
    "IMAGE_EXTENSIONS", "TRAIN_PHOTOS", "TEST_PHOTOS", "CROP_PHOTOS", "TensorImages", "PhotoPatches", "PhotoCrops",
    "ImageFolder", "digits", "photos", "photos_test_images", "torchvision_dataset", "load_dataset", "load_image",
    "image_grid",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
                    ".ppm", ".pgm", ".pbm", ".pnm", ".tga")
# Colour photographs bundled with scikit-image (no download). Left out: 'cat' (the same picture as
# 'chelsea'), the right image of 'stereo_motorcycle' (a near-copy of the left), 'logo' (an RGBA graphic)
# and the grey images (camera, coins, moon, brick, grass, gravel, ...).
TRAIN_PHOTOS = ("astronaut", "rocket", "stereo_motorcycle", "immunohistochemistry", "hubble_deep_field",
                "retina", "colorwheel")
TEST_PHOTOS = ("chelsea", "coffee")
# Default weights of ``PhotoCrops`` (the 'photo_crops' training source): the natural colour photographs of
# TRAIN_PHOTOS, one weight each. Left out (weight 0; give them a small weight to add them): the synthetic
# colour wheel 'colorwheel' and the mostly black 'hubble_deep_field' and 'retina'.
CROP_PHOTOS = {"astronaut": 1.0, "rocket": 1.0, "stereo_motorcycle": 1.0, "immunohistochemistry": 1.0}

_EXIF_FORMATS = {"JPEG", "MPO", "WEBP", "TIFF"}  # formats whose EXIF orientation is read without decoding
_EXIF_ORIENTATION = 0x0112
_SPLITS = ("train", "test", "all")


class TensorImages(Dataset):
    """An in-memory data set: ``images`` (N, C, H, W) float32 in [0, 1] and int64 ``labels`` (−1: none)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, num_classes: int = 0):
        if images.ndim != 4 or images.shape[2] != images.shape[3] or not images.is_floating_point():
            raise ValueError(f"images must be a float tensor (N, C, S, S), got {images.dtype} {tuple(images.shape)}")
        self.images = images.to(torch.float32).contiguous()
        self.labels = (torch.full((len(images),), -1, dtype=torch.int64) if labels is None
                       else torch.as_tensor(labels, dtype=torch.int64))
        if self.labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {tuple(self.labels.shape)}")
        self.num_classes = num_classes
        self.channels = images.shape[1]
        self.image_size = images.shape[2]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


class PhotoPatches(TensorImages):
    """Unlabelled RGB patches of photographs; ``sources[i]`` and ``positions[i]`` (top, left) locate patch i."""

    def __init__(self, images: torch.Tensor, photo_names: tuple[str, ...], sources: list[str],
                 positions: list[tuple[int, int]]):
        super().__init__(images)
        self.photo_names = photo_names
        self.sources = sources
        self.positions = positions


def _check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Antialiased resize of (C, H, W) or (N, C, H, W) images to ``size`` = (h, w), clamped to [0, 1]."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    batch = x if x.ndim == 4 else x[None]
    out = F.interpolate(batch, size=size, mode=mode, antialias=True, align_corners=False).clamp_(0, 1)
    return out if x.ndim == 4 else out[0]


def _resize_crop(x: torch.Tensor, size: int, crop: str | None) -> torch.Tensor:
    """Shorter side to ``size`` then a 'center' or 'random' square crop; crop None squashes to size × size."""
    h, w = x.shape[-2:]
    if crop is None:
        return _resize(x, (size, size))
    scale = size / min(h, w)
    x = _resize(x, (max(size, round(h * scale)), max(size, round(w * scale))))
    h, w = x.shape[-2:]
    if crop == "center":
        top, left = (h - size) // 2, (w - size) // 2
    else:
        top, left = (int(torch.randint(0, n - size + 1, ())) for n in (h, w))
    return x[..., top:top + size, left:left + size]


# --------------------------------------------------------------------------- built-in data sets

def digits(image_size: int = 16, split: str = "train") -> TensorImages:
    """scikit-learn's 1797 handwritten 8×8 digits (10 classes), scaled to [0, 1] and resized bilinearly.

    Split: within each class, in ``load_digits`` order, every fifth image (positions 4, 9, 14, …) is a
    test image: 355 test and 1442 train images, the same on every machine and version (no RNG).
    """
    from sklearn.datasets import load_digits

    image_size = positive_int("image_size", image_size)
    _check_choice("split", split, _SPLITS)
    data = load_digits()
    labels = torch.as_tensor(data.target, dtype=torch.int64)
    rank = torch.zeros_like(labels)  # position of each image within its class
    for c in range(10):
        idx = (labels == c).nonzero().squeeze(1)
        rank[idx] = torch.arange(len(idx))
    keep = {"train": rank % 5 != 4, "test": rank % 5 == 4, "all": torch.ones_like(labels, dtype=torch.bool)}[split]
    images = torch.as_tensor(data.images, dtype=torch.float32)[keep, None] / 16.0
    return TensorImages(_resize(images, (image_size, image_size), mode="bilinear"), labels[keep], num_classes=10)


@functools.lru_cache(maxsize=None)
def _photo(name: str, max_side: int | None) -> torch.Tensor:
    """scikit-image's photograph ``name`` as (3, H, W) in [0, 1], downscaled so its longer side ≤ max_side."""
    import skimage.data

    array = getattr(skimage.data, name)()
    array = array[0] if isinstance(array, tuple) else array  # stereo_motorcycle: (left, right, disparity)
    x = torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1).to(torch.float32) / 255.0
    h, w = x.shape[1:]
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        x = _resize(x, (round(h * scale), round(w * scale)))
    return x


def photos(patch_size: int = 32, split: str = "train", stride: int | None = None,
           max_side: int | None = 256) -> PhotoPatches:
    """RGB patches on a regular grid (from the top-left corner) of scikit-image's colour photographs.

    The split is by photograph: test patches come only from ``TEST_PHOTOS`` (chelsea, coffee), train
    patches from ``TRAIN_PHOTOS``. Each photograph is first downscaled (bicubic, antialiased) so its
    longer side is ``max_side`` (256 by default, i.e. by 1.4–5.5×, most by 2–4×; None keeps the original
    resolution). ``stride`` defaults to patch_size // 2 for train and patch_size for test. With the
    defaults: 1335 train patches and 80 test patches of 32×32.
    """
    patch_size = positive_int("patch_size", patch_size)
    _check_choice("split", split, ("train", "test"))
    stride = positive_int("stride", stride) if stride is not None else (
        max(1, patch_size // 2) if split == "train" else patch_size)
    max_side = positive_int("max_side", max_side) if max_side is not None else None
    names = TRAIN_PHOTOS if split == "train" else TEST_PHOTOS
    patches, sources, positions = [], [], []
    for name in names:
        x = _photo(name, max_side)
        h, w = x.shape[1:]
        if min(h, w) < patch_size:
            raise ValueError(f"patch_size {patch_size} is larger than photograph {name!r} "
                             f"({w}×{h} after downscaling to max_side={max_side})")
        grid = x.unfold(1, patch_size, stride).unfold(2, patch_size, stride)  # (3, rows, cols, P, P)
        rows, cols = grid.shape[1:3]
        patches.append(grid.permute(1, 2, 0, 3, 4).reshape(rows * cols, 3, patch_size, patch_size))
        sources += [name] * (rows * cols)
        positions += [(r * stride, c * stride) for r in range(rows) for c in range(cols)]
    return PhotoPatches(torch.cat(patches), names, sources, positions)


def photos_test_images(n: int, patch_size: int = 32, max_side: int | None = 256) -> torch.Tensor:
    """``n`` held-out test patches (n, 3, P, P): a fixed draw (NumPy's frozen RandomState(0)) from
    ``photos(patch_size, 'test', max_side=max_side)``; a smaller n gives a prefix of a larger one."""
    n = positive_int("n", n)
    test = photos(patch_size, "test", max_side=max_side)
    if n > len(test):
        raise ValueError(f"n={n} exceeds the {len(test)} test patches of size {patch_size} (max_side={max_side})")
    order = np.random.RandomState(0).permutation(len(test))[:n]
    return test.images[torch.from_numpy(order)].clone()


class PhotoCrops(Dataset):
    """Random multi-scale crops of scikit-image's training photographs, a fresh draw for every index.

    Item ``i`` is a fixed function of ``(seed, i)``: a photograph drawn with probability proportional to
    its weight in ``photos`` (a mapping name → weight ≥ 0 over ``TRAIN_PHOTOS``; default ``CROP_PHOTOS``),
    downscaled as in ``photos`` (longer side ``max_side``); a square of side s, log-uniform in
    [``min_crop``, ``max_crop``] (rounded, at most the photograph's shorter side), at a uniform position;
    resized (bicubic, antialiased, clamped to [0, 1]) to ``image_size`` × ``image_size``; flipped left–right
    with probability 1/2 when ``flip``. Items are (float32 (3, S, S) in [0, 1], −1).

    ``length`` is the number of distinct crops (a virtual epoch): the training loop shuffles the indices
    per epoch (``DistributedSampler``), so every step sees new crops until an epoch ends (2**20 crops =
    16384 steps of batch 64), and a resumed run draws exactly the crops of an uninterrupted one. The test
    photographs (``TEST_PHOTOS``, and 'cat', the same picture as 'chelsea') cannot be named.
    """

    def __init__(self, image_size: int = 32, photos: Mapping[str, float] | None = None, min_crop: int = 32,
                 max_crop: int = 128, flip: bool = True, max_side: int | None = 256, length: int = 2**20,
                 seed: int = 0):
        self.image_size = positive_int("image_size", image_size)
        self.min_crop = positive_int("min_crop", min_crop)
        self.max_crop = positive_int("max_crop", max_crop)
        if self.max_crop < self.min_crop:
            raise ValueError(f"max_crop ({max_crop}) must be >= min_crop ({min_crop})")
        self.max_side = positive_int("max_side", max_side) if max_side is not None else None
        self.length = positive_int("length", length)
        if isinstance(seed, bool) or int(seed) != seed or int(seed) < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        if not isinstance(flip, bool):
            raise ValueError(f"flip must be true or false, got {flip!r}")
        self.flip = flip
        if photos is not None and not isinstance(photos, Mapping):
            raise ValueError(f"photos must be a mapping of photograph names to weights, got {photos!r}")
        weights = dict(CROP_PHOTOS if photos is None else photos)
        for name, w in weights.items():
            if name in TEST_PHOTOS or name == "cat":
                raise ValueError(f"photos: {name!r} is a held-out test photograph ({', '.join(TEST_PHOTOS)})")
            if name not in TRAIN_PHOTOS:
                raise ValueError(f"photos: unknown photograph {name!r}; expected names from {', '.join(TRAIN_PHOTOS)}")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"photos: the weight of {name!r} must be a finite number >= 0, got {w!r}")
        self.photo_names = tuple(n for n in TRAIN_PHOTOS if weights.get(n, 0) > 0)  # a fixed order
        if not self.photo_names:
            raise ValueError(f"photos: at least one photograph needs a weight > 0, got {weights!r}")
        total = sum(weights[n] for n in self.photo_names)
        self.weights = {n: weights[n] / total for n in self.photo_names}
        self._cumulative = list(itertools.accumulate(self.weights[n] for n in self.photo_names))
        self._images = [_photo(n, self.max_side) for n in self.photo_names]
        small = min(min(x.shape[1:]) for x in self._images)
        if self.min_crop > small:
            raise ValueError(f"min_crop {min_crop} is larger than the smallest photograph ({small} px after "
                             f"downscaling to max_side={max_side})")
        self.channels = 3
        self.num_classes = 0

    def __len__(self) -> int:
        return self.length

    def crop(self, i: int) -> tuple[str, int, int, int, bool]:
        """Where item ``i`` comes from: (photograph, top, left, side, flipped)."""
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} crops")
        digest = hashlib.blake2b(repr(("photo_crops", self.seed, int(i))).encode(), digest_size=8).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
        u = torch.rand(5, generator=g, dtype=torch.float64).tolist()
        k = min(bisect.bisect_right(self._cumulative, u[4]), len(self.photo_names) - 1)
        x = self._images[k]
        h, w = x.shape[1:]
        lo, hi = math.log(self.min_crop), math.log(self.max_crop)
        side = min(round(math.exp(lo + (hi - lo) * u[0])), h, w)
        top, left = int(u[1] * (h - side + 1)), int(u[2] * (w - side + 1))
        return self.photo_names[k], top, left, side, self.flip and u[3] < 0.5

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        name, top, left, side, flipped = self.crop(i)
        x = self._images[self.photo_names.index(name)][:, top:top + side, left:left + side]
        x = _resize(x, (self.image_size, self.image_size))
        return (x.flip(-1) if flipped else x.clone()), -1  # never a view of the cached photograph


# --------------------------------------------------------------------------- image files

def _probe(path: Path) -> tuple[int, int]:
    """Check that ``path`` is a readable image (header; PNG chunk checksums) and return its (width, height)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.format in _EXIF_FORMATS and im.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):
                w, h = h, w
            im.verify()
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, struct.error, ...) for bad files
        raise ValueError(f"cannot read image {path}: {type(err).__name__}: {err}") from err
    return w, h


def _read(path: Path, channels: int, min_size: int | None = None) -> torch.Tensor:
    """Decode ``path`` fully into a (channels, H, W) float32 tensor in [0, 1]; errors name the file.

    ``min_size`` lets JPEGs decode at a reduced scale whose sides are still ≥ min_size.
    """
    try:
        with Image.open(path) as im:
            if min_size is not None and im.format == "JPEG":
                im.draft(None, (min_size, min_size))
            if im.format in _EXIF_FORMATS and im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                im = ImageOps.exif_transpose(im)
            im.load()
            if im.mode.startswith("I"):  # 16-bit (or 32-bit integer) grey
                a = np.clip(np.asarray(im, dtype=np.float32) / 65535.0, 0.0, 1.0)[..., None].repeat(channels, 2)
            elif im.mode == "F":
                raise ValueError("32-bit float images are not supported; save it as 8- or 16-bit")
            else:
                if im.mode == "P" or "transparency" in im.info:
                    im = im.convert("RGBA")
                a = np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.float32) / 255.0
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, struct.error, ...) for bad files
        raise ValueError(f"cannot read image {path}: {type(err).__name__}: {err}") from err
    return torch.from_numpy(a.reshape(a.shape[0], a.shape[1], channels)).permute(2, 0, 1).contiguous()


def _check_image_args(image_size: int | None, crop: str | None, channels: int) -> int | None:
    _check_choice("crop", crop, ("center", "random", None))
    _check_choice("channels", channels, (1, 3))
    return positive_int("image_size", image_size) if image_size is not None else None


def load_image(path: str | os.PathLike, image_size: int | None = None, channels: int = 3,
               crop: str | None = "center") -> torch.Tensor:
    """One image file as a (channels, H, W) float32 tensor in [0, 1], resized and cropped as in ImageFolder."""
    image_size = _check_image_args(image_size, crop, channels)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    x = _read(path, channels, image_size)
    return _resize_crop(x, image_size, crop) if image_size is not None else x


def _scan(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, following links once, skipping hidden entries), sorted."""
    found, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, f) for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


class ImageFolder(Dataset):
    """Images under ``root`` (recursive; any format PIL reads); immediate sub-folders are classes.

    With ``labels_from_subfolders`` and images inside sub-folders, each sub-folder holding images is a
    class (indices in name order, ``classes``); otherwise every label is −1. With ``image_size`` the
    shorter side is resized to it (bicubic, antialiased) and a 'center' or 'random' square crop taken
    (crop None: squash to image_size × image_size); without it all images must share one size, and
    ``image_size`` is that size (an int if square, else (H, W)).
    Files are checked when the folder is scanned (PIL ``verify``) and fully decoded when indexed;
    hidden files and folders (names starting with '.') are skipped.
    """

    def __init__(self, root: str | os.PathLike, image_size: int | None = None, crop: str | None = "center",
                 channels: int = 3, labels_from_subfolders: bool = True):
        self.root = Path(root)
        self.crop = crop
        self.channels = channels
        self._size = _check_image_args(image_size, crop, channels)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist or is not a folder")
        self.files = _scan(self.root)
        if not self.files:
            raise ValueError(f"no images found in {self.root} (looked recursively for files ending in "
                             f"{', '.join(IMAGE_EXTENSIONS)}, in any case)")
        tops = [f.relative_to(self.root).parts for f in self.files]
        self.classes = sorted({p[0] for p in tops if len(p) > 1}) if labels_from_subfolders else []
        if self.classes and any(len(p) == 1 for p in tops):
            loose = next(f for f, p in zip(self.files, tops) if len(p) == 1)
            raise ValueError(f"{self.root} holds images both in class sub-folders and directly (e.g. {loose}); "
                             f"move them into a class folder or pass labels_from_subfolders=False")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.labels = [self.class_to_idx[p[0]] if self.classes else -1 for p in tops]
        self.num_classes = len(self.classes)
        sizes = [_probe(f) for f in self.files]
        if self._size is None:
            for f, s in zip(self.files, sizes):
                if s != sizes[0]:
                    raise ValueError(f"images differ in size: {self.files[0]} is {sizes[0][0]}×{sizes[0][1]} but "
                                     f"{f} is {s[0]}×{s[1]} (width×height); pass image_size to resize them")
            w, h = sizes[0]
            self.image_size: int | tuple[int, int] = h if h == w else (h, w)
        else:
            self.image_size = self._size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = _read(self.files[i], self.channels, self._size)
        return (_resize_crop(x, self._size, self.crop) if self._size is not None else x), self.labels[i]


# --------------------------------------------------------------------------- torchvision (optional)

class _TorchvisionImages(Dataset):
    """A torchvision PIL data set seen as (C, H, W) float32 tensors in [0, 1] with int labels."""

    def __init__(self, base: Dataset, channels: int, native_size: int, image_size: int | None):
        self.base = base
        self.num_classes = 10
        self.channels = channels
        self._size = image_size
        self.image_size = image_size or native_size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        im, label = self.base[i]
        mode = "RGB" if self.channels == 3 else "L"
        x = torch.from_numpy(np.asarray(im.convert(mode), dtype=np.float32) / 255.0).reshape(
            im.height, im.width, self.channels).permute(2, 0, 1).contiguous()
        return (_resize_crop(x, self._size, "center") if self._size else x), int(label)


def torchvision_dataset(name: str, root: str | os.PathLike, split: str = "train",
                        image_size: int | None = None) -> Dataset:
    """torchvision's 'cifar10' or 'mnist' read from a local ``root`` (download=False; 10 classes)."""
    _check_choice("name", name, ("cifar10", "mnist"))
    _check_choice("split", split, ("train", "test"))
    image_size = positive_int("image_size", image_size) if image_size is not None else None
    try:
        import torchvision.datasets
    except Exception as err:  # a torch/torchvision mismatch raises RuntimeError, not ImportError
        raise ImportError("torchvision is not importable: install the 'vision' extra (pip install invsgm[vision]) "
                          f"with a torch build it matches ({type(err).__name__}: {err})") from err
    cls, channels, size, layout = {
        "cifar10": (torchvision.datasets.CIFAR10, 3, 32, "cifar-10-batches-py/"),
        "mnist": (torchvision.datasets.MNIST, 1, 28, "MNIST/raw/"),
    }[name]
    try:
        base = cls(str(root), train=split == "train", download=False)
    except RuntimeError as err:
        raise FileNotFoundError(f"{name} not found under {root} (expected {Path(root, layout)}; "
                                f"nothing is downloaded): {err}") from err
    return _TorchvisionImages(base, channels, size, image_size)


# --------------------------------------------------------------------------- the name table

def _phantoms(n: int = 10000, image_size: int = 64, seed: int = 0, split: str = "train") -> TensorImages:
    """Random ellipse phantoms (``invsgm.phantoms``): grey, image_size², n of them (test: the fixed 100)."""
    from .phantoms import phantoms

    return phantoms(n if split == "train" else None, size=image_size, seed=seed, split=split)


_DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": digits,
    "photos": photos,
    "folder": ImageFolder,
    "cifar10": functools.partial(torchvision_dataset, "cifar10"),
    "mnist": functools.partial(torchvision_dataset, "mnist"),
    "photo_crops": PhotoCrops,
    "phantoms": _phantoms,
}


def load_dataset(name: str, **kwargs) -> Dataset:
    """The data set called ``name`` ('digits', 'photos', 'folder', 'cifar10', 'mnist', 'photo_crops', 'phantoms') built
    from ``kwargs``."""
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choices: {', '.join(_DATASETS)}")
    params = inspect.signature(_DATASETS[name]).parameters
    for key in kwargs:
        if key not in params:
            raise ValueError(f"unknown argument {key!r} for dataset {name!r}; accepted: {', '.join(params)}")
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ValueError(f"dataset {name!r} needs the argument(s) {', '.join(missing)}")
    return _DATASETS[name](**kwargs)


# --------------------------------------------------------------------------- sample grids

def image_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile (N, C, H, W) images (C = 1 or 3; values clamped to [0, 1]) into an (H', W', C) uint8 array,
    ``nrow`` images per row (default ⌈√N⌉), ``padding`` pixels of ``pad_value`` around each."""
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"images must have shape (N, 1|3, H, W) with N ≥ 1, got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    if isinstance(padding, bool) or int(padding) != padding or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    n, c, h, w = images.shape
    nrow = positive_int("nrow", nrow) if nrow is not None else math.ceil(math.sqrt(n))
    ncol = min(nrow, n)
    rows = math.ceil(n / nrow)
    p = padding
    grid = torch.full((c, rows * (h + p) + p, ncol * (w + p) + p), float(pad_value))
    for k, x in enumerate(images.detach().to("cpu", torch.float32)):
        r, q = divmod(k, nrow)
        grid[:, p + r * (h + p):p + r * (h + p) + h, p + q * (w + p):p + q * (w + p) + w] = x
    return (grid.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
