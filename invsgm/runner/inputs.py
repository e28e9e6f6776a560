"""The inputs of a run: data sets, folders of clean images, observed images (with masks and truths), class labels;
reading image files (alpha channels, 16-bit, ``.npy``), their sizes and how they are made to fit.

Two kinds of image inputs:

- clean images (``inputs.dataset``, ``inputs.path``): the truth; the run simulates each observation;
- observations (``inputs.observations``): what was observed, as image files in the form
  ``LinearOperator.file_shape`` says (the low-resolution image of super-resolution, the grey image of
  colorization, the degraded image otherwise), with for inpainting a mask (``inputs.masks``: white =
  missing) or the file's alpha channel (alpha 0 = missing); ``inputs.truth`` optionally the clean images.
  Measurements that are not pictures (MRI's k-space, CT's sinograms) are ``.npy`` arrays in the operator's
  layout (``LinearOperator.read_array``).

Clean images are read one batch at a time (an unreadable file stops the run there); observations, masks
and truths are all read and checked before anything is written (``check``), then read again batch by batch.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..config import bad

ARRAY_EXTENSIONS = (".npy",)  # exact observations (observation.npy of a run): (H, W) or (H, W, C) floats
GREY_TOLERANCE = 2.5 / 255  # RGB channels this close count as one grey value (JPEG noise)


@dataclass
class Item:
    """One input: its folder name, where it came from, the class label, the truth (C, H, W) in [0, 1] (None when
    unknown) and, for an observed image, its pixels (C', h, w) in image units and which are observed."""

    name: str
    source: str
    label: int | None
    truth: torch.Tensor | None
    observation: torch.Tensor | None = None      # the observation file's pixels, in file_shape
    observed: torch.Tensor | None = None         # (1, h, w) bool from a mask file or alpha channel; None: all
    files: dict[str, str] = field(default_factory=dict)   # observation / mask / truth file (mask: 'alpha channel')
    fit: dict[str, str] = field(default_factory=dict)     # what was resized or cropped, e.g. 'resized from 40x40 ...'


@dataclass
class Inputs:
    """The inputs of a run, read lazily: ``len`` is known, images are decoded in ``batches``.

    ``keys[i]`` identifies input i's own mask (None: the task's); a batch never mixes keys, so each batch is
    one measurement.
    """

    names: list[str]
    sources: list[str]
    labels: list[int] | None
    has_images: bool              # truths or observations (else bare labels)
    observed: bool                # observation mode
    _get: Callable[[int], Item] = field(repr=False)
    keys: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def _spans(self, size: int) -> Iterator[range]:
        start = 0
        while start < len(self):
            stop = start + 1
            while stop < min(start + size, len(self)) and (self.keys is None or self.keys[stop] == self.keys[start]):
                stop += 1
            yield range(start, stop)
            start = stop

    def batch_count(self, size: int) -> int:
        return sum(1 for _ in self._spans(size))

    def batches(self, size: int) -> Iterator[list[Item]]:
        for span in self._spans(size):
            yield [self._get(i) for i in span]

    def check(self) -> None:
        """Read and check every input now (observation mode: before anything is written); note their mask keys."""
        keys = []
        for i in range(len(self)):
            item = self._get(i)
            keys.append(None if item.observed is None else
                        hashlib.sha1(np.packbits(item.observed.numpy()).tobytes()).hexdigest())
        self.keys = keys


# --- files --------------------------------------------------------------------------------------------------

def _extensions() -> tuple[str, ...]:
    from ..data import IMAGE_EXTENSIONS

    return tuple(IMAGE_EXTENSIONS)


def _image_files(path: Path, key: str, extensions: tuple[str, ...]) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{key} = {str(path)!r}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise ValueError(f"{key} = {str(path)!r}: no image files in this folder (looked recursively for "
                         f"{', '.join(extensions)})")
    return files


def _relative(f: Path, root: Path) -> Path:
    return f.relative_to(root) if f != root else Path(f.name)


def _file_names(files: list[Path], root: Path) -> list[str]:
    """Folder names of input files: the path below ``root`` without its suffix ('/' → '__'), made unique."""
    stems = ["__".join(_relative(f, root).with_suffix("").parts) for f in files]
    if len(set(stems)) == len(stems):
        return stems
    return ["__".join(_relative(f, root).parts).replace(".", "_") for f in files]


def _companions(spec_path: str, key: str, files: list[Path], root: Path) -> list[Path]:
    """The file of ``key`` (masks, truth) for each observation file: the one file given, or in a folder the file
    with the observation's path below its root, any image suffix."""
    path = Path(spec_path)
    if path.is_file():
        return [path] * len(files)
    if not path.is_dir():
        raise FileNotFoundError(f"inputs.{key} = {spec_path!r}: no such file or folder")
    found: dict[Path, list[Path]] = {}
    for f in _image_files(path, f"inputs.{key}", (*_extensions(), *ARRAY_EXTENSIONS)):
        found.setdefault(f.relative_to(path).with_suffix(""), []).append(f)
    out = []
    for f in files:
        stem = _relative(f, root).with_suffix("")
        matches = found.get(stem, [])
        if not matches:
            raise FileNotFoundError(f"inputs.{key} = {spec_path!r}: no file for the observation {f} (looked for "
                                    f"{path / stem}.* with an image suffix)")
        if len(matches) > 1:
            raise ValueError(f"inputs.{key} = {spec_path!r}: several files for the observation {f}: "
                             f"{', '.join(map(str, matches))}")
        out.append(matches[0])
    return out


def read_pixels(path: str | os.PathLike, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """An image file as float32 (H, W, 1 | 3) pixels in [0, 1] and its alpha channel (H, W) in [0, 1] (None
    without one). 8- and 16-bit files, palettes, EXIF orientation; ``.npy``: (H, W) or (H, W, 1-4) numbers
    (grey, grey+alpha, RGB, RGB+alpha) as they are. Errors name the file (``what`` says which)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file")
    try:
        if path.suffix.lower() in ARRAY_EXTENSIONS:
            a = np.load(path, allow_pickle=False)
            if a.dtype.kind not in "fui" or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
                raise ValueError(f"expected an (H, W) or (H, W, 1-4) array of numbers, got {a.dtype} {a.shape}")
            scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
            a = a.astype(np.float32) / np.float32(scale) if scale != 1.0 else a.astype(np.float32)
            if not np.isfinite(a).all():
                raise ValueError("holds NaN or infinite values")
        else:
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                im.load()
                if im.mode.startswith("I"):  # 16-bit (or 32-bit integer) grey
                    a = np.asarray(im, dtype=np.float32) / np.float32(65535.0)
                elif im.mode == "F":
                    a = np.asarray(im, dtype=np.float32)
                else:
                    alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
                    grey = im.mode in ("1", "L", "LA", "La") or (im.mode == "P" and _grey_palette(im))
                    mode = ("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB")
                    if im.mode in ("P", "PA") or "transparency" in im.info:
                        im = im.convert("RGBA" if alpha else "RGB")
                    a = np.asarray(im.convert(mode), dtype=np.float32) / np.float32(255.0)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise ValueError(f"{what} {path} cannot be read as an image: {type(err).__name__}: {err}") from None
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what} {path} is empty ({a.shape[0]}x{a.shape[1]})")
    if a.shape[2] in (2, 4):
        return np.ascontiguousarray(a[..., :-1]), np.ascontiguousarray(a[..., -1])
    return a, None


def _grey_palette(im: Image.Image) -> bool:
    palette = np.asarray(im.convert("RGB"))
    return bool((palette == palette[..., :1]).all())


def to_channels(x: torch.Tensor, channels: int, path: Path, what: str) -> torch.Tensor:
    """(c, H, W) pixels as ``channels``: grey → RGB repeats it; RGB → grey only when its channels are equal."""
    c = x.shape[0]
    if c == channels:
        return x
    if c == 1:
        return x.expand(channels, -1, -1).contiguous()
    spread = float((x.amax(0) - x.amin(0)).max())
    if spread > GREY_TOLERANCE:
        raise ValueError(f"{what} {path} is an RGB image in colour (its channels differ by up to {spread:.2f}), but "
                         f"the task observes grey images (one channel): give a grey image")
    return x.mean(0, keepdim=True)


def _size(x: torch.Tensor) -> str:
    return f"{x.shape[-2]}x{x.shape[-1]}"


def fit_image(x: torch.Tensor, size: tuple[int, int], how: str | None, what: str, path: Path,
              expected: str) -> tuple[torch.Tensor, str | None]:
    """``x`` (c, h, w) made ``size`` = (H, W): as it is, or ``how`` = 'resize' (the centre part of the target's
    aspect ratio, then antialiased bicubic, kept within x's range of values) or 'crop' (the centre); the note
    says what was done (None: nothing). Without ``how`` another size is an error saying what fits."""
    H, W = size
    h, w = x.shape[-2:]
    if (h, w) == (H, W):
        return x, None
    if how is None:
        raise ValueError(f"{what} {path} is {h}x{w} (HxW) but the task needs {expected}; give an image of that size, "
                         f"or let the run fit it: --resize or --crop (inputs.fit: resize | crop)")
    if how == "crop":
        if h < H or w < W:
            raise ValueError(f"{what} {path} is {h}x{w} (HxW), smaller than {H}x{W}: it cannot be cropped to "
                             f"{expected}; use --resize (inputs.fit: resize)")
        top, left = (h - H) // 2, (w - W) // 2
        return x[..., top:top + H, left:left + W], f"centre-cropped from {h}x{w} to {H}x{W}"
    ch, cw = (h, round(h * W / H)) if h * W <= w * H else (round(w * H / W), w)  # the target's aspect ratio
    top, left = (h - ch) // 2, (w - cw) // 2
    part = x[..., top:top + ch, left:left + cw]
    lo, hi = float(x.min()), float(x.max())
    out = F.interpolate(part[None].to(torch.float32), size=(H, W), mode="bicubic", antialias=True,
                        align_corners=False)[0].clamp(lo, hi)
    crop = f" (its centre {ch}x{cw})" if (ch, cw) != (h, w) else ""
    return out, f"resized from {h}x{w}{crop} to {H}x{W} (antialiased bicubic)"


def fit_mask(missing: torch.Tensor, size: tuple[int, int], how: str | None) -> torch.Tensor:
    """A missing-pixel mask (1, h, w) bool fitted as its image was (``fit_image``); half-missing pixels are missing."""
    if tuple(missing.shape[-2:]) == tuple(size) or how is None:
        return missing
    out, _ = fit_image(missing.to(torch.float32), size, how, "mask", Path(), "")
    return out >= 0.5


# --- opening the inputs -----------------------------------------------------------------------------------

def _dataset(spec: Mapping[str, Any], shape: tuple[int, int, int]) -> tuple[torch.Tensor, list[int] | None]:
    C, H, W = shape
    name, count = spec["dataset"], spec.get("count")
    if name == "photos_test":
        if C != 3 or H != W:
            raise ValueError(f"inputs.dataset = 'photos_test' holds square RGB patches but the model's samples "
                             f"have shape {shape}")
        from ..data import photos, photos_test_images

        available = len(photos(H, "test"))
        n = available if count is None else count
        if n > available:
            raise bad("inputs.count", n, f"at most the {available} photos_test patches of {H}×{H}")
        return photos_test_images(n, patch_size=H), None
    if C != 1 or H != W:
        raise ValueError(f"inputs.dataset = {name!r} holds square grey images but the model's samples "
                         f"have shape {shape}")
    if name == "phantoms_test":  # the fixed held-out phantoms (invsgm.phantoms), drawn at the model's size
        from ..phantoms import TEST_SIZE, phantoms

        n = TEST_SIZE if count is None else count
        if n > TEST_SIZE:
            raise bad("inputs.count", n, f"at most the {TEST_SIZE} phantoms_test images")
        return phantoms(n, size=H, split="test").images, None
    from ..data import digits

    test = digits(image_size=H, split="test")
    n = len(test) if count is None else count
    if n > len(test):
        raise bad("inputs.count", n, f"at most the {len(test)} digits_test images")
    return test.images[:n], test.labels[:n].tolist()


def _read_truth(path: Path, shape: tuple[int, int, int], fit: str | None, what: str) -> tuple[torch.Tensor, str | None]:
    from ..data import load_image

    C, H, W = shape
    x = load_image(path, channels=C)  # errors name the file
    return fit_image(x, (H, W), fit, what, path, f"the model's size {H}x{W}")


def open_inputs(spec: Mapping[str, Any], shape: tuple[int, int, int], needs_labels: bool,
                image_part: Any = None, mask_required: bool = False) -> Inputs:
    """The inputs of a checked ``inputs`` section for images of ``shape`` (C, H, W).

    ``image_part``: the task's image measurement (a ``LinearMeasurement``; observation mode reads files in its
    operator's ``file_shape`` and checks masks with its ``with_mask``); ``mask_required``: the task has no mask
    of its own, so every observation needs one (a mask file or an alpha channel).
    """
    C, H, W = shape
    labels = spec.get("labels")
    count = spec.get("count")
    fit = spec.get("fit")
    data_labels = None
    observed = "observations" in spec
    if "dataset" in spec:
        images, data_labels = _dataset(spec, shape)
        n = len(images)
        width = max(3, len(str(n - 1)))
        names = [f"{i:0{width}d}" for i in range(n)]
        sources = [f"{spec['dataset']}[{i}]" for i in range(n)]

        def get(i: int) -> Item:
            return Item(names[i], sources[i], None, images[i])
    elif "path" in spec:
        root = Path(spec["path"])
        files = _image_files(root, "inputs.path", _extensions())[:count]
        names = _file_names(files, root if root.is_dir() else root.parent)
        sources = [str(f) for f in files]

        def get(i: int) -> Item:
            truth, note = _read_truth(files[i], shape, fit, "input image")
            return Item(names[i], sources[i], None, truth, files={"image": str(files[i])},
                        fit={"image": note} if note else {})
    elif observed:
        if image_part is None:
            raise ValueError(f"inputs.observations = {spec['observations']!r}: the task observes no image (class "
                             f"labels only); give inputs.labels")
        root = Path(spec["observations"])
        files = _image_files(root, "inputs.observations", (*_extensions(), *ARRAY_EXTENSIONS))[:count]
        base = root if root.is_dir() else root.parent
        names = _file_names(files, base)
        sources = [str(f) for f in files]
        masks = _companions(spec["masks"], "masks", files, base) if "masks" in spec else None
        truths = _companions(spec["truth"], "truth", files, base) if "truth" in spec else None
        operator = image_part.operator
        file_shape = tuple(operator.file_shape)
        expected = operator.describe_file()
        if not operator.file_is_image:
            if masks is not None or fit is not None:
                key = "inputs.masks" if masks is not None else "inputs.fit"
                raise ValueError(f"{key}: the task observes {type(operator).__name__} data, not an image; masks and "
                                 f"resizing are for image observations")

            def get(i: int) -> Item:
                return _array_observation(names[i], files[i], None if truths is None else truths[i], shape,
                                          operator)
        else:
            def get(i: int) -> Item:
                return _observation(names[i], files[i], None if masks is None else masks[i],
                                    None if truths is None else truths[i], shape, file_shape, expected, fit,
                                    image_part, mask_required)
    else:
        n = len(labels)
        width = max(3, len(str(n - 1)))
        names = [f"{i:0{width}d}_label{y}" for i, y in enumerate(labels)]
        sources = [f"labels[{i}]" for i in range(n)]

        def get(i: int) -> Item:
            return Item(names[i], sources[i], None, None)

    if labels is not None and ("dataset" in spec or "path" in spec or observed):
        if len(labels) != len(names):
            raise ValueError(f"inputs.labels has {len(labels)} labels but there are {len(names)} input images: "
                             f"give one label per image")
    if needs_labels:
        labels = labels if labels is not None else data_labels
        if labels is None:
            raise ValueError(f"the task is class-conditional but the inputs ({dict(spec)}) carry no class labels: "
                             f"give inputs.labels, or use a labelled dataset (digits_test)")
    elif spec.get("labels") is not None:
        raise ValueError(f"inputs.labels = {spec['labels']!r}: the task has no class_conditional part to use them")
    final = list(labels) if needs_labels else None

    def item(i: int) -> Item:
        it = get(i)
        it.label = None if final is None else final[i]
        return it

    return Inputs(names, sources, final, "dataset" in spec or "path" in spec or observed, observed, item)


def _array_observation(name: str, path: Path, truth_path: Path | None, shape: tuple[int, int, int],
                       operator: Any) -> Item:
    """One observation that is not an image (k-space, sinogram): a ``.npy`` array in the operator's layout."""
    if path.suffix.lower() not in ARRAY_EXTENSIONS:
        raise ValueError(f"observation {path}: expected {operator.describe_file()}, not an image file")
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"observation {path} cannot be read as a .npy array: {type(err).__name__}: {err}") from None
    try:
        y = operator.read_array(a)
    except ValueError as err:
        raise ValueError(f"observation {path}: {err}") from None
    files = {"observation": str(path)}
    truth = None
    if truth_path is not None:
        truth, _ = _read_truth(truth_path, shape, None, "truth")
        files["truth"] = str(truth_path)
    return Item(name, str(path), None, truth, y, None, files)


def _observation(name: str, path: Path, mask_path: Path | None, truth_path: Path | None,
                 shape: tuple[int, int, int], file_shape: tuple[int, ...], expected: str, fit: str | None,
                 image_part: Any, mask_required: bool) -> Item:
    """One observed input: its pixels in ``file_shape``, the observed pixels, the truth; every check names a file."""
    channels, size = file_shape[0], tuple(file_shape[1:])
    a, alpha = read_pixels(path, "observation")
    x = to_channels(torch.from_numpy(a).permute(2, 0, 1).contiguous(), channels, path, "observation")
    files, notes = {"observation": str(path)}, {}
    missing = None
    if mask_path is not None:
        m, m_alpha = read_pixels(mask_path, "mask")
        if m.shape[:2] != a.shape[:2]:
            raise ValueError(f"mask {mask_path} is {m.shape[0]}x{m.shape[1]} (HxW) but its observation {path} is "
                             f"{a.shape[0]}x{a.shape[1]}; a mask has its observation's size")
        missing = torch.from_numpy(m.mean(2) >= 0.5)[None]  # white = missing
        if not bool(missing.any()):
            raise ValueError(f"mask {mask_path} marks no pixel missing (white = missing, black = observed): there "
                             f"is nothing to inpaint")
        files["mask"] = str(mask_path)
    elif alpha is not None and (alpha <= 0).any():
        missing = torch.from_numpy(alpha <= 0)[None]  # alpha 0 = missing
        files["mask"] = "alpha channel"
    if missing is not None and bool(missing.all()):
        raise ValueError(f"{'mask ' + str(mask_path) if mask_path else 'the alpha channel of ' + str(path)} marks "
                         f"every pixel missing: nothing is observed")
    x, note = fit_image(x, size, fit, "observation", path, expected)
    if note:
        notes["observation"] = note
    observed = None
    if missing is not None:
        observed = ~fit_mask(missing, size, fit)
        try:
            image_part.with_mask(observed)
        except ValueError as err:
            where = f"mask {mask_path}" if mask_path else f"observation {path}"
            raise ValueError(f"{where}: {err}") from None
    elif mask_required:
        raise ValueError(f"observation {path}: the inpainting task has no mask (task.mask), so each observation needs "
                         f"one: --mask FILE_OR_FOLDER (inputs.masks; white = missing) or an alpha channel in the "
                         f"image (alpha 0 = missing)")
    truth = None
    if truth_path is not None:
        truth, note = _read_truth(truth_path, shape, fit, "truth")
        files["truth"] = str(truth_path)
        if note:
            notes["truth"] = note
    return Item(name, str(path), None, truth, x, observed, files, notes)


__all__ = ["ARRAY_EXTENSIONS", "Inputs", "Item", "fit_image", "fit_mask", "open_inputs", "read_pixels", "to_channels"]
