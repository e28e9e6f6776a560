"""PC sampling speed of the official NCSN++ CIFAR-10 model (ve/cifar10_ncsnpp_continuous).

Builds the full-width architecture (random weights, or an official checkpoint with --checkpoint),
runs the official sampler (reverse-diffusion predictor + Langevin corrector, snr 0.16) for --steps
steps on --batch images after one untimed warm-up evaluation, and prints seconds and images/s
(2 score evaluations per step + 1 for the final denoising).

    python benchmarks/bench_official.py                                   # 1000 steps, batch 64 (a GPU job)
    python benchmarks/bench_official.py --checkpoint checkpoint_24.pth --out samples.png
    python benchmarks/bench_official.py --steps 2 --batch 2 --nf 16      # CPU smoke run
"""
from __future__ import annotations

import argparse
import time

import torch

from invsgm.denoisers import score_sde_denoiser
from invsgm.models.build import build_model
from invsgm.models.unet import parameter_count
from invsgm.official import load_score_sde_checkpoint, preset_card
from invsgm.pretrained import from_model_space
from invsgm.sampling import default_timesteps, langevin, reverse_diffusion, sample_pc
from invsgm.sde import sde_from_config

PRESET = "ve/cifar10_ncsnpp_continuous"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="an official checkpoint_<n>.pth (default: random weights)")
    p.add_argument("--steps", type=int, default=1000, help="PC steps (official: 1000)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--nf", type=int, default=None, help="override the base width (official: 128)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write a grid of the samples to this PNG")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {} if args.nf is None else {"nf": args.nf}
    device = torch.device(args.device)

    if args.checkpoint:
        m = load_score_sde_checkpoint(args.checkpoint, PRESET, device=device, **overrides)
        card, net, sde, model = m.card, m.net, m.sde, m.model
    else:
        torch.manual_seed(args.seed)
        card = preset_card(PRESET, **overrides)
        net = build_model(**card["model"]).to(device).eval()
        sde = sde_from_config(**card["sde"])
        model = score_sde_denoiser(net, sde).eval()
    size, channels = card["data"]["image_size"], card["data"]["channels"]
    g = torch.Generator(device).manual_seed(args.seed)
    x = sde.prior_sampling((args.batch, channels, size, size), generator=g).to(device)
    ts = default_timesteps(sde, args.steps)
    snr = card["official"]["sampling"]["snr"]

    def run() -> torch.Tensor:
        return sample_pc(model, sde, x, ts, predictor=reverse_diffusion, corrector=langevin, snr=snr, generator=g)

    with torch.no_grad():  # warm-up (kernel selection, allocator), untimed
        model(x, ts[:1].to(x).expand(args.batch))
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    samples = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    evaluations = 2 * args.steps + 1
    print(f"{PRESET} nf={card['model']['nf']} ({parameter_count(net) / 1e6:.2f} M parameters, "
          f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'random weights'}) on {device}"
          f"{'' if device.type == 'cuda' else f' ({torch.get_num_threads()} threads)'}: PC reverse_diffusion + "
          f"langevin (snr {snr}), {args.steps} steps ({evaluations} score evaluations), batch {args.batch}: "
          f"{seconds:.2f} s, {args.batch / seconds:.3f} images/s, {seconds / evaluations * 1e3:.1f} ms per evaluation")
    if args.out:
        from invsgm.data import image_grid
        from invsgm.imageio import write_png

        write_png(args.out, image_grid(from_model_space(samples, card).clamp(0, 1).cpu()))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
