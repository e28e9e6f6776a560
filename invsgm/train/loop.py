"""One training loop, two objectives: denoising score matching (score models) and noisy-data
cross-entropy (time-conditional classifiers that guide them).

The loop: Adam (betas 0.9/0.999, eps 1e-8) with linear learning-rate warm-up, gradient-norm clipping,
an EMA of the weights (sampled and exported), float16 autocast + GradScaler on CUDA, DDP under
``torchrun``, a CSV log, sample grids, atomic checkpoints and an export with ``save_pretrained``.

Exact resume. No random-number-generator state is saved, because all randomness is a fixed function of
(seed, step, rank):

* the per-sample noise of step s (DSM's t and z, the classifier's t and z) comes from a
  ``torch.Generator`` seeded with ``step_seed(seed, step, 'noise')`` that draws the GLOBAL batch's
  noise; each rank keeps its rows (``distributed.global_rows``);
* dropout and any other use of the global generator follows ``torch.manual_seed(step_seed(seed, step,
  'dropout', rank))``, set just before the forward pass;
* the data order is ``DistributedSampler(shuffle=True, seed=seed, drop_last=True)`` with
  ``set_epoch(epoch)``; a resumed run skips the batches of the current epoch already consumed by
  slicing the sampler's index list (the skipped images are never loaded);
* the weights are initialised after ``torch.manual_seed(seed)``.

So rerunning the same command after a kill continues from ``OUTPUT/checkpoint.pt`` with the same
step, weights, optimiser and EMA state and draws exactly what the uninterrupted run would have drawn.
"""
from __future__ import annotations

import csv
import math
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..losses import dsm_losses
from ..sde import SDE, sde_from_config
from . import distributed
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .config import DATA_ARGS, TrainConfig, as_config, resume_mismatch, save_config
from .distributed import EpochOrder, Layout, global_rows, step_seed
from .ema import EMA

LOG_NAME = "log.csv"
FINAL_LOSS_WINDOW = 100  # the exported final loss is the mean of the last this-many step losses

Callback = Callable[[int, "TrainState"], None]


# --- the two objectives --------------------------------------------------------------------------------

class Objective(Protocol):
    """What differs between score and classifier training: the wrapped model and the loss."""

    task: str
    metrics: tuple[str, ...]

    def wrap(self, net: nn.Module, sde: SDE) -> nn.Module:
        """The module the loss calls (and DDP wraps): a ``NetworkDenoiser`` or ``TimeConditionalClassifier``."""

    def loss(self, model: nn.Module, sde: SDE, x0: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
             layout: Layout) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar loss averaged over this rank's batch, {metric: scalar tensor}) — no host sync."""


class ScoreObjective:
    """Continuous-time DSM (``invsgm.losses.dsm_losses``) with 'paper' or 'likelihood' weighting."""

    task = "score"
    metrics: tuple[str, ...] = ()

    def __init__(self, weighting: str = "paper", reduce_mean: bool = False):
        self.weighting, self.reduce_mean = weighting, reduce_mean

    def wrap(self, net: nn.Module, sde: SDE) -> nn.Module:
        from ..denoisers import score_sde_denoiser

        return score_sde_denoiser(net, sde)

    def loss(self, model, sde, x0, y, generator, layout):
        if not layout.distributed:
            losses, _ = dsm_losses(model, sde, x0, weighting=self.weighting, generator=generator,
                                   reduce_mean=self.reduce_mean)
            return losses.mean(), {}
        # dsm_losses draws t and z for the batch it is given: give it the global batch with this rank's
        # samples at their global positions (rows r::W, zeros elsewhere) so the generator draws the global
        # batch's noise, and evaluate the network on this rank's rows only.
        rows = global_rows(layout)
        x0_global = x0.new_zeros((x0.shape[0] * layout.world_size, *x0.shape[1:]))
        x0_global[rows] = x0

        def local_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(x_t)
            out[rows] = model(x_t[rows], t[rows]).to(out.dtype)
            return out

        losses, _ = dsm_losses(local_model, sde, x0_global, weighting=self.weighting, generator=generator,
                               reduce_mean=self.reduce_mean)
        return losses[rows].mean(), {}


class ClassifierObjective:
    """Cross-entropy of p_t(y | x_t) on x_t = α(t) x0 + σ(t) z, t ~ U(eps, T), the SDE of the guided score model."""

    task = "classifier"
    metrics = ("accuracy",)

    def wrap(self, net: nn.Module, sde: SDE) -> nn.Module:
        from ..models.classifier import TimeConditionalClassifier

        return TimeConditionalClassifier(net, sde)

    def loss(self, model, sde, x0, y, generator, layout):
        n = x0.shape[0] * layout.world_size
        gdev = generator.device
        t = sde.eps + (sde.T - sde.eps) * torch.rand(n, generator=generator, device=gdev, dtype=x0.dtype)
        z = torch.randn((n, *x0.shape[1:]), generator=generator, device=gdev, dtype=x0.dtype)
        rows = global_rows(layout)
        t, z = t[rows].to(x0.device), z[rows].to(x0.device)
        mean, std = sde.marginal_prob(x0, t)
        x_t = mean + std.reshape(-1, *([1] * (x0.ndim - 1))) * z
        logits = model(x_t, t).float()
        loss = F.cross_entropy(logits, y)
        accuracy = (logits.detach().argmax(1) == y).float().mean()
        return loss, {"accuracy": accuracy}


# --- results and state -----------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What a run produced. ``net`` is the EMA network (eval mode) that was exported."""

    output: Path
    pretrained: Path | None  # the exported folder (None on ranks other than 0)
    net: nn.Module
    steps: int               # optimiser steps done in all
    start_step: int          # the step this invocation resumed from (0 for a fresh run)
    final_loss: float        # mean loss of the last FINAL_LOSS_WINDOW steps (all ranks)
    log: Path
    checkpoint: Path
    seconds: float           # training wall time summed over invocations
    card: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainState:
    """What a callback sees after each step (the step count is passed separately)."""

    net: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    loss: torch.Tensor       # this step's loss (a device tensor: reading it syncs)
    layout: Layout
    output: Path


class _FlatNet(nn.Module):
    """An MLP score network on images: flattens x to (B, C·H·W) and restores the shape of the output."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, noise_label: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1), noise_label).view_as(x)


# --- building the pieces ---------------------------------------------------------------------------------

def _load_dataset(config: TrainConfig) -> Dataset:
    from ..data import load_dataset

    kwargs = dict(config.data)
    name = kwargs.pop("name")
    try:
        return load_dataset(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"data: {err}") from None


def _data_shape(dataset: Dataset) -> tuple[int, int, int | None]:
    """(channels, image_size, num_classes) of an image dataset, from its attributes or its first item."""
    channels = getattr(dataset, "channels", None)
    size = getattr(dataset, "image_size", None)
    if channels is None or size is None:
        image = dataset[0][0]
        channels, size = int(image.shape[0]), int(image.shape[-1])
    if not isinstance(size, int):  # e.g. an image folder of non-square images read at their own size
        raise ValueError(f"training needs square images of one size, the dataset has image_size {size!r}; "
                         f"set data.image_size")
    return int(channels), int(size), getattr(dataset, "num_classes", None)


def resolve_model(config: TrainConfig, task: str, channels: int, image_size: int,
                  num_classes: int | None) -> dict[str, Any]:
    """The model section with every constructor argument filled in; data-derived ones must agree with the data."""
    from ..models.build import model_config

    args = dict(config.model)
    kind = args.pop("kind")
    allowed = ("unet", "mlp") if task == "score" else ("classifier",)
    if kind not in allowed:
        raise ValueError(f"model.kind = {kind!r} cannot be trained as a {task} model; expected one of {list(allowed)}")
    derived = {"in_channels": channels, "image_size": image_size, "num_classes": num_classes,
               "dim": channels * image_size * image_size}
    for key in DATA_ARGS.get(kind, ()):
        if not derived[key]:  # None, or 0 classes (unlabelled data)
            raise ValueError(f"model.{key} is needed and the dataset {config.data['name']!r} does not say it")
        if key in args and args[key] != derived[key]:
            raise ValueError(f"model.{key} = {args[key]!r} but the dataset {config.data['name']!r} has "
                             f"{key} = {derived[key]!r}")
        args[key] = derived[key]
    try:
        return model_config(kind, **args)
    except ValueError as err:
        raise ValueError(f"model: {err}") from None


def _build_net(model_args: dict[str, Any], seed: int) -> nn.Module:
    from ..models.build import build_model

    args = dict(model_args)
    torch.manual_seed(seed)  # the initial weights are a function of the seed, on every rank and device
    try:
        return build_model(args.pop("kind"), **args)
    except ValueError as err:
        raise ValueError(f"model: {err}") from None


def _adam(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam (betas 0.9/0.999, eps 1e-8), the fused kernel where this torch build has it (one kernel per step
    instead of ~10 per tensor: 2 ms instead of 8 for a 1.5 M-parameter U-Net on one CPU core)."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
    except (RuntimeError, ValueError, TypeError):  # no fused Adam for this device / dtype / torch version
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def _lr_at(step: int, lr: float, warmup: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps (step counted from 0), then constant."""
    return lr * min(1.0, (step + 1) / warmup) if warmup else lr


def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if hasattr(nn.utils, "get_total_norm"):
        return nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


# --- outputs ---------------------------------------------------------------------------------------------

@torch.no_grad()
def sample_images(net: nn.Module, sde: SDE, n: int, shape: tuple[int, ...], steps: int, *, seed: int = 0,
                  corrector: str = "langevin", snr: float = 0.16, flat: bool = False,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` PC samples (reverse diffusion + Langevin) of the score network ``net``, mapped to [0, 1]."""
    from ..denoisers import score_sde_denoiser
    from ..sampling import default_timesteps, langevin, reverse_diffusion, sample_pc

    was_training = net.training
    net.eval()
    score = score_sde_denoiser(_FlatNet(net) if flat else net, sde)
    g = torch.Generator(device=device).manual_seed(seed)
    x = sde.prior_sampling((n, *shape), generator=g, device=device)
    x = sample_pc(score, sde, x, default_timesteps(sde, steps), predictor=reverse_diffusion,
                  corrector=langevin if corrector == "langevin" else None, snr=snr, generator=g)
    net.train(was_training)
    return ((x.float() + 1) / 2).clamp(0, 1).cpu()


def write_grid(path: Path, images: torch.Tensor) -> Path:
    """A PNG grid of (N, C, H, W) images in [0, 1] (``image_grid`` + atomic ``write_png``)."""
    from ..data import image_grid
    from ..imageio import write_png

    return write_png(path, image_grid(images, nrow=max(1, math.isqrt(images.shape[0]))))


class _CSVLog:
    """``OUTPUT/log.csv`` (rank 0): one row per log step; a resume drops rows past the checkpoint."""

    def __init__(self, path: Path, columns: list[str], resume_step: int | None):
        self.path, self.columns = path, columns
        rows: list[list[str]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header == columns:
                    rows = [r for r in reader if r and int(r[0]) <= resume_step]
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        os.replace(tmp, path)
        self.file = path.open("a", newline="")
        self.writer = csv.writer(self.file)

    def write(self, row: dict[str, float]) -> None:
        self.writer.writerow([_fmt(row[c]) for c in self.columns])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _fmt(v: Any) -> str:
    return str(v) if isinstance(v, int) else f"{v:.6g}"


def default_command(task: str, output: Path) -> str:
    """The command that reproduces a run from its saved config (``OUTPUT/config.yaml``)."""
    return shlex.join(["invsgm", "train", task, str(output / "config.yaml")])


def _card(config: TrainConfig, task: str, model_args: dict[str, Any], sde: SDE, data: tuple[int, int, int | None],
          final_loss: float, steps: int, seconds: float, layout: Layout, command: str,
          samples: str | None) -> dict[str, Any]:
    channels, size, num_classes = data
    tr = config.training
    data_card: dict[str, Any] = {"name": config.data["name"], "image_size": size, "channels": channels,
                                 "centered": True}
    if num_classes is not None:
        data_card["num_classes"] = int(num_classes)
    extra = {k: v for k, v in config.data.items() if k not in ("name", "image_size")}
    if extra:
        data_card["kwargs"] = extra
    training = {"steps": steps, "batch_size": tr.batch_size, "final_loss": final_loss, "ema_decay": tr.ema_decay,
                "lr": tr.lr, "warmup": tr.warmup, "grad_clip": tr.grad_clip, "seed": tr.seed,
                "world_size": layout.world_size, "amp": bool(tr.amp and layout.device.type == "cuda"),
                "seconds": round(seconds, 1)}
    if task == "score":
        training.update(weighting=tr.weighting, reduce_mean=tr.reduce_mean)
    return {"name": Path(config.output).name, "task": task, "model": dict(model_args),
            "sde": {"kind": config.sde["kind"], **sde.config()}, "data": data_card, "training": training,
            "command": command, "samples": samples}


# --- the loop --------------------------------------------------------------------------------------------

IN_MEMORY_DEVICE_BYTES = 1 << 30  # in-memory data sets up to this size are copied to the GPU once


def _batches(dataset: Dataset, order: EpochOrder, start_step: int, seed: int, num_workers: int,
             device: torch.device):
    """(images, labels) batches of this rank from optimiser step ``start_step`` on, endlessly.

    An in-memory data set (``images`` and ``labels`` tensors, e.g. ``data.TensorImages``) read in the
    main process is indexed directly, one gather per batch (on the GPU when it fits in
    ``IN_MEMORY_DEVICE_BYTES``); anything else goes through a ``DataLoader`` over the same index list.
    Both give the same batches.
    """
    epoch, skip = order.position(start_step)
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    in_memory = (num_workers == 0 and torch.is_tensor(images) and torch.is_tensor(labels)
                 and images.ndim == 4 and len(images) == len(labels) == len(dataset))
    index_device = torch.device("cpu")
    if in_memory and device.type == "cuda" and images.numel() * images.element_size() <= IN_MEMORY_DEVICE_BYTES:
        images, labels, index_device = images.to(device), labels.to(device), device
    while True:
        indices = order.indices(epoch, skip)
        if in_memory:
            index = torch.as_tensor(indices, dtype=torch.long).view(-1, order.batch).to(index_device)
            for rows in index:
                yield images[rows], labels[rows]
        else:
            yield from DataLoader(dataset, batch_size=order.batch, sampler=indices, drop_last=True,
                                  num_workers=num_workers, pin_memory=device.type == "cuda",
                                  generator=torch.Generator().manual_seed(step_seed(seed, epoch, "loader")))
        epoch, skip = epoch + 1, 0


def run(config: TrainConfig | dict[str, Any], objective: Objective, *, dataset: Dataset | None = None,
        callback: Callback | None = None, command: str | None = None,
        device: str | torch.device | None = None) -> TrainResult:
    """Train ``objective`` as ``config`` says, resuming from ``OUTPUT/checkpoint.pt`` when there is one.

    ``dataset`` replaces ``load_dataset(config.data)`` (items: (image (C, H, W) in [0, 1], label));
    ``callback(step, state)`` runs on every rank after each step (after any checkpoint of that step);
    ``command`` is recorded in the card (default: ``invsgm train TASK OUTPUT/config.yaml``).
    """
    config = as_config(config)
    layout = distributed.setup(device)
    try:
        return _Trainer(config, objective, layout, callback, command).run(dataset)
    finally:
        layout.close()


class _Trainer:
    """One invocation of the training loop, holding the run's state; ``run`` calls the pieces in order.

    The state is this rank's: the step, the network, Adam, the AMP scaler, the EMA, the final-loss ring (the
    last ``FINAL_LOSS_WINDOW`` step losses) and the log window (loss and metric sums since the last log row).
    """

    def __init__(self, config: TrainConfig, objective: Objective, layout: Layout, callback: Callback | None,
                 command: str | None) -> None:
        self.config, self.objective, self.layout = config, objective, layout
        self.callback, self.command = callback, command
        self.tr = config.training
        self.out = Path(config.output)
        self.device = layout.device
        self.ckpt_path = self.out / CHECKPOINT_NAME

    def run(self, dataset: Dataset | None) -> TrainResult:
        """Set up, resume from ``OUTPUT/checkpoint.pt`` if there is one, train up to ``training.steps``, finish."""
        self._setup(dataset)
        self._resume()
        self._wrap()
        self._train()
        return self._finish()

    def _setup(self, dataset: Dataset | None) -> None:
        """The state of a fresh run: check that the global batch splits over the processes, load the data
        (unless given), build the SDE, the network (weights seeded by ``training.seed``), Adam, the AMP scaler,
        the EMA, the data order and the noise generator; step 0, an empty ring and an empty log window."""
        tr, layout, device = self.tr, self.layout, self.device
        if tr.batch_size % layout.world_size:
            raise ValueError(f"training.batch_size = {tr.batch_size} is the global batch and must be divisible by "
                             f"the number of processes ({layout.world_size})")
        self.amp = bool(tr.amp and device.type == "cuda")
        self.dataset = _load_dataset(self.config) if dataset is None else dataset
        self.data_shape = _data_shape(self.dataset)
        self.sde = sde_from_config(**self.config.sde)
        self.model_args = resolve_model(self.config, self.objective.task, *self.data_shape)
        self.net = _build_net(self.model_args, tr.seed).to(device)
        self.flat = self.model_args["kind"] == "mlp"
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = _adam(self.params, tr.lr)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.ema = EMA(self.net, tr.ema_decay)
        self.order = EpochOrder(self.dataset, layout, tr.batch_size // layout.world_size, tr.seed)
        self.generator = torch.Generator(device=device)  # reseeded every step
        self.step = self.start_step = 0
        self.seconds_before = 0.0  # training time of earlier invocations
        self.ring = torch.zeros(FINAL_LOSS_WINDOW, device=device)
        self.ring_count = 0
        self._set_window(torch.zeros(1 + len(self.objective.metrics)), 0)

    def _set_window(self, sums: torch.Tensor, n: int) -> None:
        """Set the log window to ``sums`` = [loss, *metrics] summed over its first ``n`` steps (moved to the device)."""
        sums = sums.to(self.device)
        self.window_loss = sums[0].clone()
        self.window_metrics = {m: sums[1 + i].clone() for i, m in enumerate(self.objective.metrics)}
        self.window_n = n

    def _resume(self) -> None:
        """Restore ``OUTPUT/checkpoint.pt`` if there is one (refusing another task's, or one written with another
        config): the weights, EMA, Adam (and scaler) state, step, earlier training time, ring and log window."""
        state = load_checkpoint(self.ckpt_path, map_location="cpu")
        if state is None:
            return
        task = self.objective.task
        if state.get("task") != task:
            raise ValueError(f"{self.ckpt_path} is a {state.get('task')!r} checkpoint, not {task!r}; "
                             f"choose another output folder")
        diffs = resume_mismatch(state["config"], self.config)
        if diffs:
            raise ValueError(f"{self.ckpt_path} was written with another config ({'; '.join(diffs)}); "
                             f"rerun with that config or choose another output folder")
        self.net.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.step = self.start_step = int(state["step"])
        self.seconds_before = float(state["seconds"])
        self.ring.copy_(state["recent_losses"].to(self.device))
        self.ring_count = int(state["recent_count"])
        self._set_window(state["window"], int(state["window_n"]))  # the partial log window at the checkpoint

    def _wrap(self) -> None:
        """``self.model``, the module the loss calls: the objective's wrapper of the network (of ``_FlatNet`` for
        an MLP), under DDP when distributed (built after the resume: DDP broadcasts rank 0's weights), in train mode."""
        trainable = _FlatNet(self.net) if self.flat else self.net
        model = self.objective.wrap(trainable, self.sde).to(self.device)
        if self.layout.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        model.train()
        self.model = model

    def _open_log(self) -> _CSVLog | None:
        """Rank 0: create the output folder, save ``config.yaml`` and open the CSV log (a resume keeps the rows up to
        its step); None on the other ranks."""
        if not self.layout.is_main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.out / "config.yaml")
        columns = ["step", "loss", "lr", "grad_norm", "seconds", *self.objective.metrics]
        return _CSVLog(self.out / LOG_NAME, columns, self.start_step if self.start_step else None)

    def _train(self) -> None:
        """The steps up to ``training.steps``, each followed by what is due: the log row, the checkpoint, the
        periodic sample grid (rank 0, score task, not at the last step); then the callback (every rank)."""
        tr, layout = self.tr, self.layout
        self.log = self._open_log()
        self.t0 = time.perf_counter()
        batches = _batches(self.dataset, self.order, self.start_step, tr.seed, tr.num_workers, self.device)
        try:
            while self.step < tr.steps:
                images, labels = next(batches)
                loss, lr, grad_norm = self._step(images, labels)
                seconds = self._seconds()
                if self._due(tr.log_every):
                    self._log(lr, grad_norm, seconds)
                if self._due(tr.checkpoint_every):
                    self._checkpoint(seconds)
                if (self.objective.task == "score" and tr.sample_every and self.step % tr.sample_every == 0
                        and self.step != tr.steps and layout.is_main):
                    self._sample_grid()
                if self.callback is not None:
                    self.callback(self.step, TrainState(net=self.net, ema=self.ema, optimizer=self.optimizer,
                                                        loss=loss, layout=layout, output=self.out))
        finally:
            if self.log is not None:
                self.log.close()

    def _due(self, every: int) -> bool:
        """Whether the step just done is a multiple of ``every`` or the last one."""
        return self.step % every == 0 or self.step == self.tr.steps

    def _seconds(self) -> float:
        """Training wall time so far, this invocation's added to the earlier ones'."""
        return self.seconds_before + time.perf_counter() - self.t0

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor | None]:
        """One optimiser step on this rank's batch (images in [0, 1]); advances ``self.step``.

        Sets the warm-up learning rate, seeds the noise generator with ``step_seed(seed, step, 'noise')`` and the
        global generator (dropout) with ``step_seed(seed, step, 'dropout', rank)``, computes the loss (float16
        autocast under AMP), back-propagates (scaled under AMP), clips the gradient norm (without clipping: only
        measures it on log steps), steps Adam (through the scaler under AMP) and the EMA, and records the loss.
        Returns (the detached loss, the learning rate, the gradient norm or None).
        """
        tr, device, optimizer, scaler = self.tr, self.device, self.optimizer, self.scaler
        x0 = images.to(device, non_blocking=True).float().mul_(2).sub_(1)  # [0, 1] → [−1, 1]
        y = labels.to(device, non_blocking=True)
        lr = _lr_at(self.step, tr.lr, tr.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.generator.manual_seed(step_seed(tr.seed, self.step, "noise"))
        torch.manual_seed(step_seed(tr.seed, self.step, "dropout", self.layout.rank))
        with torch.autocast(device.type, dtype=torch.float16, enabled=self.amp):
            loss, metrics = self.objective.loss(self.model, self.sde, x0, y, self.generator, self.layout)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        self.step += 1
        grad_norm = None
        if tr.grad_clip is not None:
            grad_norm = nn.utils.clip_grad_norm_(self.params, tr.grad_clip, foreach=True)
        elif self._due(tr.log_every):
            grad_norm = _grad_norm(self.params)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        self.ema.update()
        loss = loss.detach()
        self._record(loss, metrics)
        return loss, lr, grad_norm

    def _record(self, loss: torch.Tensor, metrics: dict[str, torch.Tensor]) -> None:
        """Put the step's loss into the ring (slot (step − 1) mod ``FINAL_LOSS_WINDOW``) and add the loss and
        the metrics to the log window (device tensors: no host sync)."""
        self.ring[(self.step - 1) % FINAL_LOSS_WINDOW] = loss
        self.ring_count = min(self.ring_count + 1, FINAL_LOSS_WINDOW)
        self.window_loss += loss
        for m, v in metrics.items():
            self.window_metrics[m] += v
        self.window_n += 1

    def _log(self, lr: float, grad_norm: torch.Tensor | None, seconds: float) -> None:
        """Close the log window: its mean loss and metrics per step, averaged over the ranks, become a row of the
        CSV log (rank 0; grad_norm is NaN when it was not measured); then the window is emptied."""
        values = torch.stack([self.window_loss, *self.window_metrics.values()]) / self.window_n
        self.layout.mean_(values)
        values = values.tolist()
        if self.log is not None:
            row = {"step": self.step, "loss": values[0], "lr": lr, "seconds": seconds,
                   "grad_norm": float(grad_norm) if grad_norm is not None else float("nan")}
            row.update(zip(self.objective.metrics, values[1:]))
            self.log.write(row)
        self.window_loss.zero_()
        for v in self.window_metrics.values():
            v.zero_()
        self.window_n = 0

    def _checkpoint(self, seconds: float) -> None:
        """Write ``OUTPUT/checkpoint.pt`` atomically (rank 0, between two barriers): step, task, weights, EMA, Adam
        (and scaler) state, config, training time, the ring (averaged over the ranks in place) and the log window
        (its all-rank mean), so that a resume on any number of ranks continues the logs and the final loss."""
        layout = self.layout
        layout.mean_(self.ring)  # only rank 0 saves: keep the all-rank means (resumed runs restore them everywhere)
        window = layout.mean_(torch.stack([self.window_loss, *self.window_metrics.values()]))
        layout.barrier()
        if layout.is_main:
            payload = {"step": self.step, "task": self.objective.task, "model": self.net.state_dict(),
                       "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                       "config": self.config.to_dict(), "seconds": seconds, "recent_losses": self.ring.detach().cpu(),
                       "recent_count": self.ring_count, "window": window.cpu(), "window_n": self.window_n}
            if self.scaler is not None:
                payload["scaler"] = self.scaler.state_dict()
            save_checkpoint(self.ckpt_path, payload)
        layout.barrier()

    def _samples(self) -> torch.Tensor:
        """``training.n_samples`` images of the EMA network by the config's PC sampler (seeded by ``training.seed``)."""
        tr = self.tr
        channels, image_size, _ = self.data_shape
        return sample_images(self.ema.module, self.sde, tr.n_samples, (channels, image_size, image_size),
                             tr.sample_steps, seed=tr.seed, corrector=tr.sample_corrector, snr=tr.sample_snr,
                             flat=self.flat, device=self.device)

    def _sample_grid(self) -> None:
        """Write the periodic sample grid ``OUTPUT/samples/step_XXXXXXX.png``."""
        write_grid(self.out / "samples" / f"step_{self.step:07d}.png", self._samples())

    def _finish(self) -> TrainResult:
        """The final loss (mean of the ring over the ranks); on rank 0 the final grid ``OUTPUT/samples.png`` (score
        task), the card and the export to ``OUTPUT/pretrained``; then a barrier and the ``TrainResult``."""
        layout, out, task = self.layout, self.out, self.objective.task
        seconds = self._seconds()
        filled = self.ring[:self.ring_count] if self.ring_count < FINAL_LOSS_WINDOW else self.ring
        final = layout.mean_(filled.mean().reshape(1)).item() if self.ring_count else float("nan")
        pretrained = None
        card: dict[str, Any] = {}
        if layout.is_main:
            samples = None
            if task == "score":
                write_grid(out / "samples.png", self._samples())
                samples = "samples.png"
            command = self.command or default_command(task, out)
            card = _card(self.config, task, self.model_args, self.sde, self.data_shape, final, self.step, seconds,
                         layout, command, samples)
            pretrained = _export(out / "pretrained", self.ema.module, card, out / "samples.png" if samples else None)
        layout.barrier()
        return TrainResult(output=out, pretrained=pretrained, net=self.ema.module, steps=self.step,
                           start_step=self.start_step, final_loss=final, log=out / LOG_NAME,
                           checkpoint=self.ckpt_path, seconds=seconds, card=card)


def _export(folder: Path, net: nn.Module, card: dict[str, Any], samples: Path | None) -> Path:
    """``save_pretrained(folder, net, card)``, with the final sample grid copied beside the weights."""
    import shutil

    from ..pretrained import save_pretrained

    result = save_pretrained(folder, net, card)
    folder = Path(result) if isinstance(result, (str, os.PathLike)) else folder
    if samples is not None:
        tmp = folder / ".samples.png.tmp"
        shutil.copyfile(samples, tmp)
        os.replace(tmp, folder / "samples.png")
    return folder


# --- public entry points ---------------------------------------------------------------------------------

def train_score(config: TrainConfig | dict[str, Any], *, dataset: Dataset | None = None,
                callback: Callback | None = None, command: str | None = None,
                device: str | torch.device | None = None) -> TrainResult:
    """Train a score model by continuous-time DSM (see the module docstring); returns a ``TrainResult``."""
    config = as_config(config)
    objective = ScoreObjective(config.training.weighting, config.training.reduce_mean)
    return run(config, objective, dataset=dataset, callback=callback, command=command, device=device)


def train_classifier(config: TrainConfig | dict[str, Any], *, dataset: Dataset | None = None,
                     callback: Callback | None = None, command: str | None = None,
                     device: str | torch.device | None = None) -> TrainResult:
    """Train a time-conditional classifier p_t(y | x_t) under the config's SDE; returns a ``TrainResult``."""
    return run(config, ClassifierObjective(), dataset=dataset, callback=callback, command=command, device=device)


TASKS = {"score": train_score, "classifier": train_classifier}


def command_line(argv: list[str]) -> str:
    """The shell command that reproduces this invocation (with its ``torchrun`` prefix under DDP)."""
    world = os.environ.get("WORLD_SIZE")
    prefix = ["invsgm"]
    if world and world != "1":
        prefix = ["torchrun", "--nproc_per_node", world, "-m", "invsgm.cli"]
    return shlex.join(prefix + list(argv))


__all__ = ["train_score", "train_classifier", "run", "TrainResult", "TrainState", "ScoreObjective",
           "ClassifierObjective", "Objective", "sample_images", "resolve_model", "TASKS", "command_line"]
