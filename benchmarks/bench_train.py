"""Training throughput: steps/s and samples/s of the real training loop, and its overhead.

    python benchmarks/bench_train.py configs/digits_score.yaml
    python benchmarks/bench_train.py configs/photos_score.yaml --batch-size 32 --steps 5 --rounds 3
    python benchmarks/bench_train.py configs/digits_classifier.yaml --task classifier --device cuda

For the config's network and (per-process) batch it times
  * a full training step of ``invsgm.train`` (data gather, noise, DSM or cross-entropy loss, backward,
    clipping, Adam, EMA), read from the loop's per-step callback on the real loop, and
  * a bare forward + backward of the same network on a batch of the same shape,
and prints the ratio full / bare (the loop's overhead; goal ≤ 1.15). Each is timed in ``--rounds``
alternating blocks and the fastest block is kept, which filters out other load on a shared machine;
on the CPU the ratio of process CPU times (``ratio_cpu_time``, blind to other processes) is printed too.
On CUDA the clock is read after ``torch.cuda.synchronize()`` at the ends of a block only.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invsgm.train import load_config, train_classifier, train_score  # noqa: E402
from invsgm.train.loop import _build_net, _data_shape, _load_dataset, resolve_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): the second ignores other processes on a shared machine."""
    return time.perf_counter(), time.process_time()


def time_full(config, task: str, dataset, device: torch.device, warmup: int, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per step of the training loop over ``steps`` steps after ``warmup``
    (no checkpoint, log row or sample grid among them)."""
    marks: dict[int, tuple[float, float]] = {}

    def callback(step: int, state) -> None:
        if step in (warmup, warmup + steps):
            _sync(device)
            marks[step] = _clock()

    with tempfile.TemporaryDirectory() as out:
        cfg = config.with_overrides({
            "training.steps": warmup + steps + 1, "training.checkpoint_every": 10**9, "training.sample_every": 0,
            "training.log_every": 10**9, "training.n_samples": 1, "training.sample_steps": 1, "output": out})
        train = train_score if task == "score" else train_classifier
        train(cfg, dataset=dataset, callback=callback, device=device)
    (w0, c0), (w1, c1) = marks[warmup], marks[warmup + steps]
    return (w1 - w0) / steps, (c1 - c0) / steps


def time_bare(net: torch.nn.Module, shape: tuple[int, ...], task: str, device: torch.device, warmup: int,
              steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per bare forward + backward of ``net`` on a batch of ``shape``."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(shape, generator=g) * 2 - 1).to(device)
    label = (torch.rand(shape[0], generator=g) * 999).to(device)
    net.train()
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            w0, c0 = _clock()
        net.zero_grad(set_to_none=True)
        out = net(x, label)
        (out.square().mean() if task == "score" else out.logsumexp(1).mean()).backward()
    _sync(device)
    w1, c1 = _clock()
    return (w1 - w0) / steps, (c1 - c0) / steps


def bench(args: argparse.Namespace, device: torch.device) -> dict:
    config = load_config(args.config, args.set or [])
    if args.batch_size:
        config = config.with_overrides({"training.batch_size": args.batch_size})
    config = config.with_overrides({"training.amp": bool(args.amp)})
    dataset = _load_dataset(config)  # in memory before the clock starts
    data_shape = _data_shape(dataset)
    model_args = resolve_model(config, args.task, *data_shape)
    net = _build_net(model_args, 0).to(device)
    batch = config.training.batch_size
    shape = (batch, data_shape[0], data_shape[1], data_shape[1])
    fulls, bares = [], []
    for _ in range(args.rounds):
        bares.append(time_bare(net, shape, args.task, device, args.warmup, args.steps))
        fulls.append(time_full(config, args.task, dataset, device, args.warmup, args.steps))
    full, bare = min(w for w, _ in fulls), min(w for w, _ in bares)
    full_cpu, bare_cpu = min(c for _, c in fulls), min(c for _, c in bares)
    return {
        "config": args.config, "task": args.task, "device": str(device), "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in net.parameters() if p.requires_grad), "batch": batch,
        "image": list(shape[1:]), "amp": bool(args.amp and device.type == "cuda"),
        "steps_per_s": round(1 / full, 3), "samples_per_s": round(batch / full, 1),
        "full_step_ms": round(1e3 * full, 2), "bare_fwd_bwd_ms": round(1e3 * bare, 2),
        "ratio_full_to_bare": round(full / bare, 3),
        "ratio_cpu_time": round(full_cpu / bare_cpu, 3) if device.type == "cpu" else None,
        "rounds_full_ms": [round(1e3 * w, 1) for w, _ in fulls], "rounds_bare_ms": [round(1e3 * w, 1) for w, _ in bares],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--task", choices=["score", "classifier"], default="score")
    parser.add_argument("--batch-size", type=int, default=None, help="override training.batch_size")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each block")
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks of each; the fastest is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on the CPU")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="'all': the CPU, and CUDA when available")
    parser.add_argument("--amp", action="store_true", help="float16 autocast + GradScaler (CUDA only)")
    parser.add_argument("--set", action="append", metavar="KEY.SUB=VALUE", help="config override")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda", 0))
    for device in devices:
        print(json.dumps(bench(args, device)), flush=True)


if __name__ == "__main__":
    main()
