"""diffusers UNet2DModel folders as invsgm score models (``invsgm.diffusers_io``), on small random UNets.

Tests that need diffusers skip without it (``pip install 'invsgm[diffusers]'``); the behaviour without it is
tested by hiding the module.
"""
import json
import subprocess
import sys

import pytest
import torch

from invsgm.diffusers_io import INSTALL_HINT, load_diffusers
from invsgm.sde import VESDE, DiscreteVPSDE

SKIP = "diffusers is not installed (pip install 'invsgm[diffusers]')"


@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers", reason=SKIP)


def small_unet(diffusers, seed=0, **kwargs):
    torch.manual_seed(seed)
    args = dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    args.update(kwargs)
    return diffusers.UNet2DModel(**args).eval()


def save_unet_folder(diffusers, path, scheduler=None, unet=None, **scheduler_kwargs):
    """A UNet folder (config.json + safetensors) with the scheduler config beside it; returns (unet, scheduler)."""
    unet = small_unet(diffusers) if unet is None else unet
    scheduler = diffusers.DDPMScheduler(clip_sample=False, **scheduler_kwargs) if scheduler is None else scheduler
    unet.save_pretrained(path)
    scheduler.save_pretrained(path)
    return unet, scheduler


def inputs(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g)


# --- without diffusers -----------------------------------------------------------------------------

def test_without_diffusers_the_loader_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` raises ImportError
    with pytest.raises(ValueError) as err:
        load_diffusers(tmp_path)
    assert str(err.value) == INSTALL_HINT and "pip install 'invsgm[diffusers]'" in str(err.value)


def test_invsgm_imports_without_diffusers():
    code = ("import sys; sys.modules['diffusers'] = None\n"
            "import invsgm, invsgm.diffusers_io, invsgm.pretrained, invsgm.solvers, invsgm.solve\n"
            "assert sys.modules['diffusers'] is None\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# --- the network and the three predictions ---------------------------------------------------------

def _formulas(kind, x, raw, abar):
    """(score, x̂₀) of a raw output from x_t = √ᾱ x₀ + √(1−ᾱ) ε and v = √ᾱ ε − √(1−ᾱ) x₀ (float64)."""
    a, s = abar.sqrt().view(-1, 1, 1, 1), (1 - abar).sqrt().view(-1, 1, 1, 1)
    x, raw = x.double(), raw.double()
    if kind == "epsilon":
        eps, x0 = raw, (x - s * raw) / a
    elif kind == "sample":
        x0 = raw
        eps = (x - a * x0) / s
    else:
        x0, eps = a * x - s * raw, a * raw + s * x
    return -eps / s, x0


@pytest.mark.parametrize("kind, prediction", [("epsilon", "eps"), ("sample", "x0"), ("v_prediction", "v")])
def test_predictions_match_diffusers_and_the_formulas(diffusers, tmp_path, kind, prediction):
    unet, scheduler = save_unet_folder(diffusers, tmp_path, prediction_type=kind)
    loaded = load_diffusers(tmp_path)
    assert loaded.card["denoiser"] == {"prediction": prediction, "time_label": "index", "num_steps": 1000}
    assert isinstance(loaded.sde, DiscreteVPSDE) and loaded.model.prediction == prediction
    assert loaded.as_denoiser() is loaded.model

    x = inputs(3)
    idx = torch.tensor([0, 300, 999])
    t = (idx / 999).float()
    with torch.no_grad():
        ref = unet(x, idx).sample
        out = loaded.net(x, idx.float())
        ev = loaded.model.evaluate(x, t)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    # ᾱ as diffusers holds it (float32 cumprod) and in float64 from the scheduler's betas: at index 0,
    # 1 − ᾱ₀ = β₀ = 1e-4 computed as 1 − float32(ᾱ₀) loses ~4 digits, so diffusers' own σ₀ is only good to ~1e-4
    abar32 = scheduler.alphas_cumprod[idx].double()
    abar64 = torch.cumprod(1 - scheduler.betas.double(), 0)[idx]
    for name, abar in (("alphas_cumprod", abar32), ("float64", abar64)):
        score, x0 = _formulas(kind, x, ref, abar)
        errs = [(((ev.score[j].double() - score[j]).abs().max() / score[j].abs().max()).item(),
                 ((ev.x0[j].double() - x0[j]).abs().max() / x0[j].abs().max()).item()) for j in range(3)]
        print(f"\n{kind} vs ᾱ {name}: max relative difference (score, x0) at index 0, 300, 999: "
              + ", ".join(f"({a:.1e}, {b:.1e})" for a, b in errs))
        for j, (err_score, err_x0) in enumerate(errs):
            # index 0 (σ₀ = 0.01): diffusers' float32 σ₀ above; invsgm's v path forms the score from x̂₀ as
            # (α x̂₀ − x)/σ², which cancels in float32 (measured 2e-5 against float64)
            bound = 1e-5 if j else (5e-4 if name == "alphas_cumprod" else 5e-5)
            assert err_score < bound and err_x0 < 1e-5, (name, int(idx[j]), err_score, err_x0)


@pytest.mark.parametrize("schedule, kwargs", [("linear", {}),
                                              ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
                                              ("squaredcos_cap_v2", {})])
def test_schedules_give_the_schedulers_alphas_cumprod(diffusers, tmp_path, schedule, kwargs):
    scheduler = diffusers.DDIMScheduler(beta_schedule=schedule, num_train_timesteps=500, **kwargs)
    _, scheduler = save_unet_folder(diffusers, tmp_path, scheduler=scheduler)
    loaded = load_diffusers(tmp_path)
    assert loaded.sde.N == 500
    assert loaded.sde.schedule == {"squaredcos_cap_v2": "cosine"}.get(schedule, schedule)
    diff = (loaded.sde.alphas_cumprod - scheduler.alphas_cumprod.double()).abs().max().item()
    print(f"\n{schedule}: max |ᾱ − diffusers ᾱ| = {diff:.2e}")
    assert diff < 1e-6
    # the SDE's own ᾱ(t) on the grid t = i/(N − 1) is the table
    i = torch.tensor([0, 100, 499])
    alpha, std = loaded.sde.marginal_coeffs((i / 499).double())
    torch.testing.assert_close(alpha.pow(2), scheduler.alphas_cumprod[i].double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(std.pow(2), 1 - scheduler.alphas_cumprod[i].double(), atol=1e-6, rtol=0)


def test_pipeline_folder_and_card(diffusers, tmp_path):
    unet = small_unet(diffusers)
    scheduler = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "model_index.json").is_file()
    loaded = load_diffusers(tmp_path / "pipe")
    card = loaded.card
    assert card["task"] == "score" and card["model"]["kind"] == "diffusers"
    assert card["sde"] == {"kind": "discretevp", **loaded.sde.config()} and card["sde"]["schedule"] == "cosine"
    assert card["data"] == {"name": "pipe", "image_size": 16, "channels": 3, "centered": True}
    assert card["source"]["scheduler_class"] == "DDPMScheduler"
    assert loaded.model.prediction == "v" and loaded.path == tmp_path / "pipe"
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x, torch.tensor([5.0, 700.0])), unet(x, torch.tensor([5, 700])).sample)
    # the UNet folder of the pipeline on its own finds the scheduler in ../scheduler
    again = load_diffusers(tmp_path / "pipe" / "unet")
    assert again.model.prediction == "v" and again.sde.config() == loaded.sde.config()
    assert load_diffusers(tmp_path / "pipe", subfolder="unet").sde.config() == loaded.sde.config()


def test_class_conditional_unet(diffusers, tmp_path):
    unet = small_unet(diffusers, num_class_embeds=4)
    save_unet_folder(diffusers, tmp_path, unet=unet)
    loaded = load_diffusers(tmp_path)
    assert loaded.card["data"]["num_classes"] == 4
    loaded.model.class_labels = 2
    x = inputs()
    with torch.no_grad():
        ref = unet(x, torch.tensor([10, 10]), class_labels=torch.tensor([2, 2])).sample
        ev = loaded.model.evaluate(x, torch.full((2,), 10 / 999))
    alpha, std = loaded.sde.marginal_coeffs(torch.full((2,), 10 / 999))
    torch.testing.assert_close(ev.score, -ref / std.view(-1, 1, 1, 1), rtol=1e-5, atol=1e-6)


def test_score_sde_ve_scheduler(diffusers, tmp_path):
    unet = small_unet(diffusers, time_embedding_type="fourier")
    scheduler = diffusers.ScoreSdeVeScheduler(num_train_timesteps=100, sigma_min=0.01, sigma_max=50.0)
    save_unet_folder(diffusers, tmp_path, scheduler=scheduler, unet=unet)
    loaded = load_diffusers(tmp_path)
    assert isinstance(loaded.sde, VESDE) and loaded.sde.config() == {"sigma_min": 0.01, "sigma_max": 50.0, "N": 100}
    assert loaded.card["denoiser"] == {"prediction": "sigma_score", "time_label": "sigma"}
    assert loaded.card["data"]["centered"] is False
    # diffusers' ScoreSdeVePipeline: the UNet reads σ(t) = σ_min (σ_max/σ_min)^t and returns the score
    scheduler.set_sigmas(10)
    t = scheduler.timesteps[[0, 5]].float()
    sigma = scheduler.sigmas[[0, 5]].float()
    x = inputs() * sigma.view(-1, 1, 1, 1)
    with torch.no_grad():
        ref = unet(x, sigma).sample
        ev = loaded.model.evaluate(x, t)
    err = ((ev.score - ref).abs().max() / ref.abs().max()).item()
    print(f"\nVE: max relative score difference {err:.2e}")
    assert err < 1e-5
    torch.testing.assert_close(ev.x0, x + sigma.view(-1, 1, 1, 1) ** 2 * ref, rtol=1e-5, atol=1e-5)


# --- DDIM: invsgm's solver against diffusers' DDIMScheduler ----------------------------------------

@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_ddim_matches_diffusers_ddim_scheduler(diffusers, tmp_path, kind):
    from invsgm.solvers import DDIM

    unet, _ = save_unet_folder(diffusers, tmp_path, prediction_type=kind)
    loaded = load_diffusers(tmp_path)
    scheduler = diffusers.DDIMScheduler.from_pretrained(tmp_path, set_alpha_to_one=True, timestep_spacing="leading",
                                                        clip_sample=False, steps_offset=0)
    scheduler.set_timesteps(10)
    assert scheduler.timesteps.tolist() == list(range(900, -1, -100))

    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    x = x_T.clone()
    with torch.no_grad():
        for step in scheduler.timesteps:
            x = scheduler.step(unet(x, step).sample, step, x, eta=0.0).prev_sample
        ts = scheduler.timesteps.double() / (loaded.sde.N - 1)
        result = DDIM(eta=0.0)(loaded.model, loaded.sde, None, None, x_T.clone(), ts,
                               generator=torch.Generator().manual_seed(0))
    err = ((result.samples - x).abs().max() / x.abs().max()).item()
    print(f"\nDDIM ({kind}), 10 steps: max |invsgm − diffusers| / max |diffusers| = {err:.2e}, nfe {result.nfe}")
    assert result.nfe == 10
    # measured 3.6e-7 (epsilon), 5.3e-6 (sample: invsgm's x0 path forms the score as (α x̂₀ − x)/σ² and DDIM
    # turns it back into x̂₀, which loses float32 digits at small σ), 5.3e-7 (v_prediction)
    assert err < (2e-5 if kind == "sample" else 1e-5)


# --- bad folders -----------------------------------------------------------------------------------

def _bad_scheduler(diffusers, path, **entries):
    save_unet_folder(diffusers, path)
    cfg_path = path / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(entries)
    cfg_path.write_text(json.dumps(cfg))


@pytest.mark.parametrize("entries, words", [
    ({"trained_betas": [0.1] * 1000}, ["scheduler_config.json", "'trained_betas'"]),
    ({"beta_schedule": "sigmoid"}, ["scheduler_config.json", "'beta_schedule'", "'sigmoid'"]),
    ({"prediction_type": "flow"}, ["scheduler_config.json", "'prediction_type'", "'flow'"]),
    ({"rescale_betas_zero_snr": True}, ["'rescale_betas_zero_snr'"]),
    ({"_class_name": "EDMEulerScheduler", "sigma_data": 0.5}, ["'_class_name'", "EDM"]),
    ({"_class_name": "KarrasVeScheduler"}, ["'_class_name'", "Karras"]),
])
def test_unsupported_scheduler_configs(diffusers, tmp_path, entries, words):
    _bad_scheduler(diffusers, tmp_path, **entries)
    with pytest.raises(ValueError) as err:
        load_diffusers(tmp_path)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_other_processes_refused(diffusers, tmp_path):
    save_unet_folder(diffusers, tmp_path / "edm", scheduler=diffusers.EDMEulerScheduler())
    with pytest.raises(ValueError, match=r"scheduler_config\.json: key '_class_name': EDMEulerScheduler is an EDM"):
        load_diffusers(tmp_path / "edm")
    # ScoreSdeVpScheduler (continuous VP, no beta_schedule) as diffusers writes it
    save_unet_folder(diffusers, tmp_path / "vp")
    (tmp_path / "vp" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "ScoreSdeVpScheduler", "num_train_timesteps": 2000, "beta_min": 0.1, "beta_max": 20,
         "sampling_eps": 1e-3}))
    with pytest.raises(ValueError, match="ScoreSdeVpScheduler is not a discrete DDPM scheduler"):
        load_diffusers(tmp_path / "vp")


def test_bad_folders(diffusers, tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        load_diffusers(tmp_path / "absent")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        load_diffusers(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"config\.json: missing"):
        load_diffusers(tmp_path / "empty")

    small_unet(diffusers).save_pretrained(tmp_path / "nosched")
    with pytest.raises(ValueError) as err:
        load_diffusers(tmp_path / "nosched")
    assert "scheduler config missing" in str(err.value)
    assert str(tmp_path / "nosched" / "scheduler_config.json") in str(err.value)

    small_unet(diffusers).save_pretrained(tmp_path / "pickle", safe_serialization=False)
    diffusers.DDPMScheduler().save_pretrained(tmp_path / "pickle")
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model\.bin: pickled weights are not loaded"):
        load_diffusers(tmp_path / "pickle")

    save_unet_folder(diffusers, tmp_path / "noweights")
    (tmp_path / "noweights" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model\.safetensors: weights missing"):
        load_diffusers(tmp_path / "noweights")

    save_unet_folder(diffusers, tmp_path / "cond")
    cfg = json.loads((tmp_path / "cond" / "config.json").read_text())
    (tmp_path / "cond" / "config.json").write_text(json.dumps({**cfg, "_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ValueError, match=r"config\.json: key '_class_name': UNet2DConditionModel"):
        load_diffusers(tmp_path / "cond")

    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "config.json").write_text("{not json")
    (tmp_path / "badjson" / "scheduler_config.json").write_text("{}")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_diffusers(tmp_path / "badjson")


def test_latent_pipeline_refused(diffusers, tmp_path):
    save_unet_folder(diffusers, tmp_path / "unet")
    (tmp_path / "model_index.json").write_text(json.dumps(
        {"_class_name": "LDMPipeline", "unet": ["diffusers", "UNet2DModel"], "vqvae": ["diffusers", "VQModel"],
         "scheduler": ["diffusers", "DDIMScheduler"]}))
    with pytest.raises(ValueError, match=r"model_index\.json: key 'vqvae': a latent"):
        load_diffusers(tmp_path)


def test_fourier_unet_with_a_vp_scheduler_refused(diffusers, tmp_path):
    save_unet_folder(diffusers, tmp_path, unet=small_unet(diffusers, time_embedding_type="fourier"))
    with pytest.raises(ValueError, match="'time_embedding_type': 'fourier'"):
        load_diffusers(tmp_path)


def test_solve_runs_on_a_loaded_model(diffusers, tmp_path):
    from invsgm.measurement import LinearMeasurement
    from invsgm.operators.mask import box_mask
    from invsgm.solve import solve
    from invsgm.solvers import DDIM

    save_unet_folder(diffusers, tmp_path)
    loaded = load_diffusers(tmp_path)
    measurement = LinearMeasurement(box_mask((3, 16, 16), 4, 4, 8, 8), sigma_y=0.05)
    y = measurement.operator.forward(inputs(1).clamp(-1, 1))
    out = solve(measurement, y, loaded, DDIM(), steps=5, n=2, seed=0)  # a random network: only the plumbing
    assert out.samples.shape == (1, 2, 3, 16, 16) and bool(torch.isfinite(out.samples).all()) and out.nfe == 6


def test_learned_range_variance(diffusers, tmp_path):
    unet = small_unet(diffusers, out_channels=6)
    save_unet_folder(diffusers, tmp_path, unet=unet, variance_type="learned_range")
    loaded = load_diffusers(tmp_path)
    assert loaded.model.prediction == "eps_learned_variance"
    x = inputs()
    with torch.no_grad():
        ref = unet(x, torch.tensor([400, 400])).sample
        ev = loaded.model.evaluate(x, torch.full((2,), 400 / 999))
    torch.testing.assert_close(ev.variance, ref[:, 3:])
    save_unet_folder(diffusers, tmp_path / "fixed", unet=unet)  # 6 output channels, fixed_small variance
    with pytest.raises(ValueError, match="key 'out_channels': 6 output channels for 3 input channels"):
        load_diffusers(tmp_path / "fixed")
