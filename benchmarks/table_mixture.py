"""Every solver against the exact posterior of a 25-component Gaussian mixture (the benchmark of MCGdiff).

Prior (Cardoso et al. 2024, §4.1): 25 unit-covariance components in R^d with means (8i, 8j, 8i, 8j, ...),
(i, j) ∈ {−2, …, 2}², weights drawn uniformly and normalised. Problem: y = A x + σ_y ε with A = U diag(s) Vᵀ,
U, V Haar-random orthogonal, s sorted draws of U(0, 1), σ_y drawn from U(0.1, 1) (our choice: the paper's
exact noise draw is not restated here), x drawn from the prior. Five problems for each (d, d_y),
d ∈ {8, 80}, d_y ∈ {1, 2, 4}. Each solver draws 1000 independent posterior samples (``solve`` with
n = 1000); the score is the sliced-Wasserstein distance to 1000 exact posterior samples divided by the
floor, the distance between two independent exact sample sets of that size (same projections).

    python benchmarks/table_mixture.py [--dims 8,80] [--dys 1,2,4] [--problems 5] [--n 1000] [--solvers ...]

Prints one markdown table: solver × (d, d_y), the median SW/floor over the problems, network evaluations
per sample and seconds per problem. ``--quick`` runs a small version (d = 8, d_y = 1, 2 problems, 300
samples) used by the default test run.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from invsgm.guidance import DPS, PiGDM
from invsgm.measurement import LinearMeasurement
from invsgm.operators import Matrix
from invsgm.priors import GaussianMixture
from invsgm.sampling import ancestral_sampling
from invsgm.sde import VPSDE
from invsgm.solve import solve
from invsgm.solvers import DAPS, DDRM, PC, SMC, DiffPIR, Solver
from invsgm.stats import sliced_wasserstein


def mixture(d: int, generator: torch.Generator) -> GaussianMixture:
    """25 unit-covariance components with means (8i, 8j, 8i, 8j, ...) and uniform random weights."""
    grid = torch.arange(-2, 3, dtype=torch.float64)
    ij = torch.cartesian_prod(grid, grid)                        # (25, 2)
    means = 8.0 * ij.repeat(1, math.ceil(d / 2))[:, :d]
    weights = torch.rand(25, generator=generator, dtype=torch.float64)
    return GaussianMixture(means, weights / weights.sum(), 1.0)


def _orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed


@dataclass
class Problem:
    prior: GaussianMixture
    A: torch.Tensor
    sigma_y: float
    y: torch.Tensor
    posterior: GaussianMixture


def problem(d: int, dy: int, seed: int) -> Problem:
    """One random problem (see module): prior, A, σ_y, a draw of y and the exact posterior."""
    g = torch.Generator().manual_seed(seed)
    prior = mixture(d, g)
    s = torch.rand(dy, generator=g, dtype=torch.float64).sort(descending=True).values
    A = _orthogonal(dy, g) @ torch.diag(s) @ _orthogonal(d, g)[:dy]
    sigma_y = 0.1 + 0.9 * torch.rand((), generator=g, dtype=torch.float64).item()
    x = prior.sample(1, g)
    y = x @ A.T + sigma_y * torch.randn(1, dy, generator=g, dtype=torch.float64)
    return Problem(prior, A, sigma_y, y, prior.condition(A, y[0], sigma_y))


def data_variance(prior: GaussianMixture) -> float:
    """The prior's variance per coordinate, tr Cov(x)/d: the v of ΠGDM's N(0, v I) approximation."""
    means = prior.means
    mean = prior.weights @ means
    spread = prior.weights @ (means - mean).pow(2)
    return float((prior.covariance_matrices().diagonal(dim1=1, dim2=2).T @ prior.weights + spread).mean())


# name -> (solver factory of the problem, steps); the settings each solver is compared at. ΠGDM's v is the
# prior's variance (ΠGDM assumes a N(0, v I) prior; v = 1 makes its twist far too confident at high noise).
SOLVERS: dict[str, tuple[Callable[["Problem"], Solver | None], int]] = {
    "prior (no observation)": (lambda pb: None, 0),
    "PC + ΠGDM (ancestral)": (lambda pb: PC(PiGDM(data_variance=data_variance(pb.prior)),
                                             predictor=ancestral_sampling, corrector=None), 200),
    "PC + DPS (ancestral, ζ = 1)": (lambda pb: PC(DPS(), predictor=ancestral_sampling, corrector=None), 1000),
    "DDRM": (lambda pb: DDRM(), 100),
    "DiffPIR": (lambda pb: DiffPIR(), 100),
    # DAPS's paper lr (1e-4) is sized for images in [−1, 1]; on this prior (variance ≈ 137) its Langevin steps
    # barely leave x̂₀ (median SW/floor 11.9 at d = 8, d_y = 1, as the prior's samples); lr 0.1 measured 2–3×
    "DAPS (lr 0.1)": (lambda pb: DAPS(lr=0.1), 200),
    "SMC (16 particles)": (lambda pb: SMC(PiGDM(data_variance=data_variance(pb.prior)), n_particles=16), 200),
    "SMC (64 particles)": (lambda pb: SMC(PiGDM(data_variance=data_variance(pb.prior)), n_particles=64), 200),
}


def run(name: str, pb: Problem, n: int, seed: int) -> tuple[float, int, float]:
    """(SW to exact posterior samples, nfe per sample, seconds) of one solver on one problem."""
    factory, steps = SOLVERS[name]
    start = time.perf_counter()
    solver = factory(pb)
    if solver is None:
        samples, nfe = pb.prior.sample(n, torch.Generator().manual_seed(seed)), 0
    else:
        meas = LinearMeasurement(Matrix(pb.A), pb.sigma_y)
        sol = solve(meas, pb.y, pb.prior, solver, sde=VPSDE(), n=n, steps=steps, seed=seed)
        samples, nfe = sol.samples[0], sol.nfe
    seconds = time.perf_counter() - start
    ref = pb.posterior.sample(n, torch.Generator().manual_seed(10_000 + seed))
    return sliced_wasserstein(samples, ref, generator=torch.Generator().manual_seed(0)), nfe, seconds


def floor(pb: Problem, n: int, seed: int) -> float:
    ref = pb.posterior.sample(n, torch.Generator().manual_seed(10_000 + seed))
    other = pb.posterior.sample(n, torch.Generator().manual_seed(20_000 + seed))
    return sliced_wasserstein(other, ref, generator=torch.Generator().manual_seed(0))


def table(dims: list[int], dys: list[int], n_problems: int, n: int, names: list[str]) -> dict:
    """{(name, d, dy): (median SW/floor, nfe, mean seconds)}; prints progress."""
    results = {}
    for d in dims:
        for dy in dys:
            problems = [problem(d, dy, seed=1000 * d + 10 * dy + k) for k in range(n_problems)]
            floors = [floor(pb, n, k) for k, pb in enumerate(problems)]
            for name in names:
                ratios, secs, nfe = [], [], 0
                for k, pb in enumerate(problems):
                    sw, nfe, sec = run(name, pb, n, seed=k)
                    ratios.append(sw / floors[k])
                    secs.append(sec)
                results[(name, d, dy)] = (statistics.median(ratios), nfe, statistics.mean(secs))
                print(f"d={d} d_y={dy} {name}: median SW/floor {statistics.median(ratios):.2f} "
                      f"({', '.join(f'{r:.2f}' for r in ratios)}), nfe {nfe}, {statistics.mean(secs):.1f} s",
                      flush=True)
    return results


def markdown(results: dict, dims: list[int], dys: list[int], names: list[str]) -> str:
    cols = [(d, dy) for d in dims for dy in dys]
    lines = ["| solver | nfe | " + " | ".join(f"d={d}, d_y={dy}" for d, dy in cols) + " | s / problem |",
             "|---|---:|" + "---:|" * len(cols) + "---:|"]
    for name in names:
        row = [results[(name, d, dy)] for d, dy in cols]
        lines.append(f"| {name} | {row[0][1]} | " + " | ".join(f"{r[0]:.2f}" for r in row)
                     + f" | {statistics.mean(r[2] for r in row):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", default="8,80")
    p.add_argument("--dys", default="1,2,4")
    p.add_argument("--problems", type=int, default=5)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--solvers", default=None, help="comma-separated substrings of solver names (default: all)")
    p.add_argument("--quick", action="store_true", help="d=8, d_y=1, 2 problems, 300 samples")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dims, dys = [int(v) for v in args.dims.split(",")], [int(v) for v in args.dys.split(",")]
    n_problems, n = args.problems, args.n
    if args.quick:
        dims, dys, n_problems, n = [8], [1], 2, 300
    names = [k for k in SOLVERS if args.solvers is None or any(s.strip() in k for s in args.solvers.split(","))]
    start = time.perf_counter()
    results = table(dims, dys, n_problems, n, names)
    print(f"\nmedian SW/floor over {n_problems} problems, {n} samples each (1 = as close as two exact sample "
          f"sets); VP SDE\n")
    print(markdown(results, dims, dys, names))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return results


if __name__ == "__main__":
    main()
