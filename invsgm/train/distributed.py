"""Process layout for DistributedDataParallel under ``torchrun``, and the data order shared by all layouts.

``torchrun --nproc_per_node N -m invsgm.cli train ...`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``
(and the rendezvous variables); without them the run is one process. The process group uses NCCL on
CUDA (one GPU per process: ``cuda:LOCAL_RANK``) and gloo on the CPU. No process management here.

Data order. Each epoch, ``DistributedSampler(shuffle=True, seed=seed, drop_last=True)`` with
``set_epoch(epoch)`` permutes the dataset with a generator seeded ``seed + epoch`` and gives rank r the
interleaved positions ``perm[r::W]``; rank r's k-th batch of b = B/W samples is therefore
``perm[kB + r], perm[kB + r + W], ...``: the W ranks' k-th batches together are exactly the chunk
``perm[kB:(k+1)B]``, the k-th batch of a single process, and sample j of rank r sits at position
``jW + r`` of that global batch. Per-sample noise is drawn for the whole global batch and each rank
takes the rows ``r::W`` (see ``global_rows``), so any world size trains the same model (up to
floating-point summation order). The number of steps per epoch, ⌊N/B⌋, does not depend on W either.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


@dataclass
class Layout:
    """This process's place in the run: rank, local rank, world size and device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this process initialised the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Average ``tensor`` over the processes in place (identity for one process)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(self.world_size)
        return tensor

    def close(self) -> None:
        """Destroy the process group if this layout created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def setup(device: str | torch.device | None = None) -> Layout:
    """The layout from ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; joins the process group when WORLD_SIZE > 1.

    ``device`` defaults to ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank if world > 1 else 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"inconsistent launch environment: RANK={rank}, WORLD_SIZE={world}")
    if device is None:
        device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
        owns = True
    return Layout(rank=rank, local_rank=local, world_size=world, device=device, owns_group=owns)


def step_seed(*parts: object) -> int:
    """A 63-bit seed that is a fixed function of ``parts`` (e.g. seed, step, stream, rank): blake2b of their repr."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def global_rows(layout: Layout) -> slice:
    """The rows of a global-batch tensor that belong to this rank: ``rank::world_size``."""
    return slice(layout.rank, None, layout.world_size)


class EpochOrder:
    """Per-rank batches of dataset indices, epoch after epoch, from ``DistributedSampler``.

    ``batches(epoch, skip)`` is the list of this rank's index lists for that epoch minus its first
    ``skip`` batches (already consumed before a resume); no skipped image is ever loaded.
    """

    def __init__(self, dataset: Dataset, layout: Layout, per_rank_batch: int, seed: int):
        self.sampler = DistributedSampler(dataset, num_replicas=layout.world_size, rank=layout.rank, shuffle=True,
                                          seed=seed, drop_last=True)
        self.batch = per_rank_batch
        self.steps_per_epoch = len(self.sampler) // per_rank_batch
        if self.steps_per_epoch < 1:
            raise ValueError(f"the dataset has {len(dataset)} samples, fewer than one global batch of "
                             f"{per_rank_batch * layout.world_size}; lower training.batch_size")

    def indices(self, epoch: int, skip: int = 0) -> list[int]:
        """This rank's sample indices of ``epoch`` from batch ``skip`` on (whole batches only)."""
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        return order[skip * self.batch: self.steps_per_epoch * self.batch]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batches of that epoch already consumed) before optimiser step ``step``."""
        return divmod(step, self.steps_per_epoch)


__all__ = ["Layout", "setup", "step_seed", "global_rows", "EpochOrder"]
