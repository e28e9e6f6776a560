"""Small versions of the benchmark scripts, so that the default run checks the tables they print."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import table_mixture  # noqa: E402


def test_mixture_benchmark_small():
    """d = 8, d_y = 1, two problems, 300 samples: every solver is closer to the exact posterior than the prior's
    samples are, and twisted SMC (ΠGDM twist with v = the prior's variance) is within 2× the floor."""
    names = ["prior (no observation)", "PC + ΠGDM (ancestral)", "DDRM", "DiffPIR", "SMC (16 particles)"]
    results = table_mixture.table([8], [1], n_problems=2, n=300, names=names)
    prior = results[("prior (no observation)", 8, 1)][0]
    for name in names[1:]:
        assert results[(name, 8, 1)][0] < prior, name
    assert results[("SMC (16 particles)", 8, 1)][0] < 2.0
    assert results[("DDRM", 8, 1)][1] == 101 and results[("SMC (16 particles)", 8, 1)][1] == 201  # nfe


def test_mixture_problem_is_the_stated_one():
    pb = table_mixture.problem(8, 2, seed=3)
    assert pb.prior.means.shape == (25, 8) and torch.allclose(pb.prior.means[:, 0], pb.prior.means[:, 2])
    assert set(pb.prior.means[:, 0].tolist()) == {-16.0, -8.0, 0.0, 8.0, 16.0}
    s = torch.linalg.svdvals(pb.A)
    assert pb.A.shape == (2, 8) and bool((s <= 1).all()) and 0.1 <= pb.sigma_y <= 1.0


def test_image_benchmark_small(monkeypatch, capsys):
    """benchmarks/table_inverse.py at 2 steps on one patch: one row per solver that takes the problem."""
    import table_inverse

    small = {name: ({**spec, "steps": 2, "n_samples": 1}, {k: {**v, "steps": 2, "n_samples": 1} for k, v in o.items()})
             for name, (spec, o) in table_inverse.SOLVERS.items()}
    monkeypatch.setattr(table_inverse, "SOLVERS", small)
    table_inverse.main(["--n", "1", "--problems", "SR x2,box"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| SR x2") or
            line.startswith("| inpaint box")]
    sr = [r for r in rows if r.startswith("| SR x2")]
    box = [r for r in rows if r.startswith("| inpaint box")]
    assert {r.split(" | ")[1] for r in sr} == set(small) - {"PC + replacement", "RePaint"}  # noisy: no replacement
    assert {r.split(" | ")[1] for r in box} == set(small) - {"SMC (8 particles)"}           # noiseless: no SMC
    assert all("bicubic" in r for r in sr) and all("biharmonic" in r for r in box)


def test_gpu_benchmark_tiny(tmp_path):
    """benchmarks/bench_gpu.py --tiny (reduced width, 4 steps) on the CPU: one row per configuration, with
    the full step counts it times for (DPS 1000, DiffPIR 100, PC 1000 → 4 in tiny mode) and positive rates."""
    import json

    import bench_gpu

    out = tmp_path / "rows.json"
    rows = bench_gpu.main(["--tiny", "--batches", "1", "--dtypes", "float32", "bfloat16", "--cifar-batch", "2",
                           "--json", str(out)])
    assert [(r.method, r.dtype) for r in rows] == [("DPS", "float32"), ("DPS", "bfloat16"), ("DiffPIR", "float32"),
                                                   ("DiffPIR", "bfloat16"), ("PC (RD + Langevin)", "float32"),
                                                   ("PC (RD + Langevin)", "bfloat16")]
    assert all(r.steps_timed == 3 and r.seconds_per_step > 0 and not r.extrapolated for r in rows)
    assert len(json.loads(out.read_text())) == len(rows)


def test_medical_benchmark_small():
    """benchmarks/table_medical.py with the digits model at 16×16, 2 steps: the classical rows and every solver
    that takes the operator (DDRM on MRI, not on the Radon transform, which has no SVD)."""
    import table_medical

    rows = table_medical.table("digits_score", count=1, samples=2, steps=2, problems=["MRI x4", "CT 23 views"])
    methods = {(r["problem"], r["method"]) for r in rows}
    assert {("MRI x4", "zero-filled"), ("MRI x4", "TV"), ("CT 23 views", "FBP"), ("CT 23 views", "TV")} <= methods
    assert ("MRI x4", "DDRM") in methods and ("CT 23 views", "DDRM") not in methods
    assert all(r["nfe"] > 0 and -1 <= r["corr"] <= 1 for r in rows if r["method"] not in ("zero-filled", "FBP", "TV"))


def test_task_table_small(tmp_path, capsys):
    """benchmarks/table_tasks.py on one YAML, 2 steps: a row with the solver, nfe, samples and both PSNRs."""
    import table_tasks

    table_tasks.main(["--count", "1", "--tasks", "denoise", "--out", str(tmp_path), "--set", "sampler.steps=2",
                      "--set", "sampler.n_samples=2"])
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| denoising")]
    assert len(row) == 1, row
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert cells[1].startswith("pc + pigdm") and cells[2] == "3" and cells[3] == "2", cells
    metrics = json.loads((tmp_path / "denoise" / "metrics.json").read_text())
    mean, base = metrics["summary"]["mean"]["psnr"]["mean"], metrics["summary"]["baseline"]["psnr"]["mean"]
    assert cells[5].startswith(f"{mean:.2f}") and cells[8] == f"{mean - base:+.2f}"
