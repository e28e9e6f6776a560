"""score_sde's discrete-time checkpoints: ``ve/cifar10_ncsnpp`` (SMLD) and ``vp/cifar10_ddpmpp`` (DDPM).

Everything here is built in the test (no ``../shared``): reduced-width networks (nf = 16, one block per
level) with random weights, saved in the official file layout ({"optimizer", "model": DataParallel state
dict with ``module.sigmas``, "ema", "step"}). The reference scores follow the official code step by step
(yang-song/score_sde_pytorch, commit c8c18d1):

- ``models/utils.py:get_sigmas``: ``sigmas = np.exp(np.linspace(np.log(σ_max), np.log(σ_min), N))``, stored
  by ``models/ncsnpp.py`` as the float64 buffer ``sigmas`` (index 0 is the largest σ);
- ``sde_lib.py:VPSDE.__init__``: ``discrete_betas = torch.linspace(β_min/N, β_max/N, N)`` (float32),
  ``alphas_cumprod = cumprod(1 − discrete_betas)``, ``sqrt_1m_alphas_cumprod = sqrt(1 − alphas_cumprod)``;
- ``models/utils.py:get_score_fn`` with ``continuous=False``: VE ``labels = round((T − t)(N − 1)).long()``,
  ``score = model(x, labels)``; VP ``labels = t (N − 1)`` (unrounded), ``std = sqrt_1m_alphas_cumprod
  [labels.long()]``, ``score = −model(x, labels) / std``;
- ``models/ncsnpp.py:NCSNpp.forward``, positional branch: ``temb = get_timestep_embedding(labels, nf)``,
  ``used_sigmas = self.sigmas[labels.long()]`` and, with ``scale_by_sigma`` (VE only), ``h / used_sigmas``.

The raw network is invsgm's ``UNet``, which computes the official network up to that final division
(``tests/test_official.py`` checks this against outputs of the official code).
"""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest
import torch

from invsgm.denoisers import NetworkDenoiser, score_sde_parameterization
from invsgm.models.build import build_model
from invsgm.official import (PRESETS, export_checkpoint, load_score_sde_checkpoint, main, official_sigmas,
                             preset_card, resolve_preset)
from invsgm.pretrained import load_pretrained
from invsgm.sde import DiscreteVPSDE, VESDE, sde_from_config

VE, VP = "ve/cifar10_ncsnpp", "vp/cifar10_ddpmpp"
SMALL = {"nf": 16, "num_res_blocks": 1}
N = 1000


# --- the official conventions, literally -----------------------------------------------------------

def get_sigmas(sigma_min: float = 0.01, sigma_max: float = 50.0, num_scales: int = N) -> torch.Tensor:
    """models/utils.py:get_sigmas, as NCSNpp registers it: ``torch.tensor`` of a float64 numpy array."""
    return torch.tensor(np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_scales)))


def official_ve_score(net: torch.nn.Module, sigmas: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """get_score_fn(VESDE, continuous=False) around NCSNpp(positional, scale_by_sigma=True)."""
    labels = 1.0 - t                     # labels = sde.T - t
    labels = labels * (N - 1)            # labels *= sde.N - 1
    labels = torch.round(labels).long()  # labels = torch.round(labels).long()
    h = net(x, labels)                   # NCSNpp: temb of the index; the net centres x itself (data.centered False)
    used_sigmas = sigmas[labels.long()]  # used_sigmas = self.sigmas[time_cond.long()]
    return h / used_sigmas.reshape(x.shape[0], 1, 1, 1)  # scale_by_sigma: h = h / used_sigmas (float64)


def official_vp_score(net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, beta_min: float = 0.1,
                      beta_max: float = 20.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """get_score_fn(VPSDE, continuous=False) around NCSNpp(positional, scale_by_sigma=False); ``dtype`` float64
    gives the same tables without float32 rounding (as models/utils.py:get_ddpm_params builds them)."""
    discrete_betas = torch.linspace(beta_min / N, beta_max / N, N, dtype=dtype)  # sde_lib.VPSDE.__init__
    alphas_cumprod = torch.cumprod(1.0 - discrete_betas, dim=0)
    sqrt_1m_alphas_cumprod = torch.sqrt(1.0 - alphas_cumprod)
    labels = t * (N - 1)                                   # labels = t * (sde.N - 1), not rounded
    score = net(x, labels)                                 # the ε prediction
    std = sqrt_1m_alphas_cumprod[labels.long()]            # the table entry at floor(t (N - 1))
    return -score / std[:, None, None, None]


# --- random-weight checkpoints in the official layout ---------------------------------------------

def _random_net(preset: str, seed: int, **overrides) -> torch.nn.Module:
    """The preset's UNet with every parameter random (no layer silently zero), outputs of order one."""
    net = build_model(**preset_card(preset, **{**SMALL, **overrides})["model"]).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim >= 2:
                p.copy_(noise / p[0].numel() ** 0.5)
            else:  # biases; GroupNorm scales around 1
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
    return net


def _checkpoint(net: torch.nn.Module, sigmas: torch.Tensor | None) -> dict:
    """{"optimizer", "model", "ema", "step"} as the official training loop saves it."""
    model = {} if sigmas is None else {"module.sigmas": sigmas}
    model.update({f"module.{k}": v.clone() for k, v in net.state_dict().items()})
    shadow = [p.detach().clone() for p in net.parameters() if p.requires_grad]
    return {"optimizer": {"state": {}, "param_groups": []}, "model": model,
            "ema": {"decay": 0.999, "num_updates": 77, "shadow_params": shadow}, "step": 77}


@pytest.fixture(scope="module")
def ve(tmp_path_factory):
    """(path, raw net) of a random ``ve/cifar10_ncsnpp`` checkpoint; its ``sigmas`` buffer is get_sigmas()."""
    net = _random_net(VE, seed=1)
    path = tmp_path_factory.mktemp("ve") / "checkpoint_8.pth"
    torch.save(_checkpoint(net, get_sigmas()), path)
    return path, net


@pytest.fixture(scope="module")
def vp(tmp_path_factory):
    """(path, raw net) of a random ``vp/cifar10_ddpmpp`` checkpoint (its unused ``sigmas``: the default VE table)."""
    net = _random_net(VP, seed=2)
    path = tmp_path_factory.mktemp("vp") / "checkpoint_8.pth"
    torch.save(_checkpoint(net, get_sigmas()), path)
    return path, net


def _rel(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per sample max |a − ref| / max |ref| (the scores of one batch span σ from 0.01 to 50)."""
    a, ref = a.double().flatten(1), ref.double().flatten(1)
    return (a - ref).abs().amax(1) / ref.abs().amax(1)


def _x(batch: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# --- VE: SMLD's noise-level index -------------------------------------------------------------------

def test_ve_score_is_the_official_one_on_the_grid(ve):
    """On t_k = 1 − k/(N − 1) the label is k and σ(t_k) = sigmas[k]: the two scores agree to float32 rounding.

    On the official sampler's grid (linspace(1, 1e-5, N), run_lib's VE sampling_eps) the label is still k,
    but t_k = 1 − k(1 − 1e-5)/(N − 1) is not the training time: invsgm divides by σ(t_k), the official code
    by sigmas[k], a relative difference of (σ_max/σ_min)^(1e-5 k/(N − 1)) − 1 ≤ 8.5e-5 (k = N − 1). Between
    grid times the official code divides by σ of the nearest index: up to (σ_max/σ_min)^(1/(2(N − 1))) − 1
    ≈ 0.43 % (0.34 % measured at 0.4 of a step).
    """
    path, net = ve
    m = load_score_sde_checkpoint(path, VE, **SMALL)
    assert isinstance(m.sde, VESDE) and m.sde.config() == {"sigma_min": 0.01, "sigma_max": 50.0, "N": N}
    assert (m.model.prediction, m.model.time_label, m.model.num_steps) == ("sigma_score", "reversed_index", N)
    assert m.card["denoiser"] == {"prediction": "sigma_score", "time_label": "reversed_index", "num_steps": N}
    sigmas = get_sigmas()
    # σ(t_k) is the official table, to float64 rounding
    k_all = torch.arange(N, dtype=torch.float64)
    assert torch.allclose(m.sde.sigma(1 - k_all / (N - 1)), sigmas, rtol=1e-12, atol=0)

    k = torch.tensor([0, 1, 2, 250, 500, 997, 998, 999])
    x = _x(len(k), seed=3)
    errors = {}
    with torch.no_grad():
        t = 1 - k / (N - 1)  # float32
        assert torch.equal(m.model.label(t).long(), k)
        errors["grid"] = _rel(m.model(x, t), official_ve_score(net, sigmas, x, t)).max().item()
        # the index counted from the smallest σ instead is far off: the comparison sees the label convention
        wrong = NetworkDenoiser(m.net, m.sde, "sigma_score", "index")
        errors["index label (wrong)"] = _rel(wrong(x, t), official_ve_score(net, sigmas, x, t)).min().item()

        steps = torch.linspace(1.0, 1e-5, N)  # sampling.get_pc_sampler: torch.linspace(sde.T, eps, sde.N)
        ks = torch.tensor([0, 1, 500, 998, 999])
        t = steps[ks]
        assert torch.equal(m.model.label(t).long(), ks)
        sampler = _rel(m.model(x[: len(ks)], t), official_ve_score(net, sigmas, x[: len(ks)], t))
        predicted = (50.0 / 0.01) ** (t.double() - 1 + ks / (N - 1)) - 1  # σ(t)/sigmas[k] − 1
        errors["sampler grid"] = sampler.max().item()

        t = 1 - (k[1:-1] + 0.4) / (N - 1)  # between grid times: labels round to k
        mid = _rel(m.model(x[1:-1], t), official_ve_score(net, sigmas, x[1:-1], t))
        errors["between grid times (0.4 step)"] = mid.max().item()
    print(f"\n{VE}: relative max-abs score difference to the official convention: "
          + ", ".join(f"{name} {e:.1e}" for name, e in errors.items()))
    assert errors["grid"] < 1e-5, errors
    assert errors["index label (wrong)"] > 0.1, errors
    assert torch.allclose(sampler, predicted.abs(), rtol=0.05, atol=2e-6), (sampler, predicted)
    assert errors["sampler grid"] < 1e-4 and sampler[0] < 1e-5
    assert 3e-3 < errors["between grid times (0.4 step)"] < 4e-3  # (5000)^(0.4/999) − 1 = 3.4e-3


# --- VP: DDPM's table -------------------------------------------------------------------------------

def test_vp_score_is_the_official_one_on_the_grid(vp):
    """On t_i = i/(N − 1) the label is 999 t_i = t_i (N − 1), and DiscreteVPSDE's σ(t_i) is the official
    sqrt_1m_alphas_cumprod[i].

    sde_lib's table is float32, invsgm's float64: the scores differ by the float32 rounding of 1 − ᾱ_i
    (measured 8e-5 at i = 0, where 1 − ᾱ_0 = 1e-4; 2e-5 at i = 10), and agree to 1e-7 with the same tables
    in float64 (``dtype=torch.float64``, models/utils.py:get_ddpm_params' precision). The grid is built as
    float32(i/999): on torch.linspace(0, 1, 1000) instead, t (N − 1) falls just below i for 83 of the 1000
    times and the official ``labels.long()`` takes the table entry i − 1.

    On the official sampler's grid (linspace(1, 1e-3, N), run_lib's VP sampling_eps) 999 t_k = (999 − k) +
    0.001 k: the official code takes std[999 − k], invsgm interpolates log ᾱ at 999 t_k. They agree while
    0.001 k is small and the table flat (k ≤ 100: 2e-7), not at the last steps (k = 998: 22 %; k = 999:
    std[0] = 0.0100 vs ≈ std[1] = 0.0148, 33 %). invsgm's ``default_timesteps`` on DiscreteVPSDE (eps = 0)
    with 999 steps are the grid times i/999.
    """
    path, net = vp
    m = load_score_sde_checkpoint(path, VP, **SMALL)
    assert isinstance(m.sde, DiscreteVPSDE)
    assert (m.sde.schedule, m.sde.N, m.sde.beta_start, m.sde.beta_end) == ("linear", N, 1e-4, 0.02)
    assert (m.model.prediction, m.model.time_label) == ("eps", "999t")
    assert m.card["denoiser"] == {"prediction": "eps", "time_label": "999t"}
    # DiscreteVPSDE's ᾱ on the grid is the official table (computed in float64, as models/utils.py:get_ddpm_params)
    betas = np.linspace(0.1 / N, 20.0 / N, N, dtype=np.float64)
    i_all = torch.arange(N, dtype=torch.float64)
    alpha, std = m.sde.marginal_coeffs(i_all / (N - 1))
    assert torch.allclose(std, torch.tensor(np.sqrt(1 - np.cumprod(1 - betas))), rtol=1e-9, atol=0)
    assert torch.allclose(alpha, torch.tensor(np.sqrt(np.cumprod(1 - betas))), rtol=1e-12, atol=0)

    i = torch.tensor([0, 1, 2, 10, 500, 997, 998, 999])
    x = 2 * _x(len(i), seed=4) - 1  # centred data
    errors = {}
    with torch.no_grad():
        t = (i.double() / (N - 1)).float()
        assert torch.equal(m.model.label(t), t * (N - 1)) and torch.equal((t * (N - 1)).long(), i)
        score = m.model(x, t)
        errors["grid"] = _rel(score, official_vp_score(net, x, t)).max().item()
        errors["grid, float64 tables"] = _rel(score, official_vp_score(net, x, t, dtype=torch.float64)).max().item()
        # get_score_fn feeds t (N − 1) unrounded: a rounded label (invsgm's 'index') is visibly another input
        wrong = NetworkDenoiser(m.net, m.sde, "eps", "index")
        tt = torch.full((len(i),), 0.5004)  # 999 t = 499.9 vs the rounded label 500
        errors["rounded label (wrong)"] = _rel(wrong(x, tt), official_vp_score(net, x, tt)).min().item()

        steps = torch.linspace(1.0, 1e-3, N)  # sampling.get_pc_sampler with sampling_eps = 1e-3
        ks = torch.tensor([0, 1, 10, 100, 998, 999])
        t = steps[ks]
        assert torch.equal((t * (N - 1)).long(), N - 1 - ks)  # the official index: 999 − k
        sampler = _rel(m.model(x[: len(ks)], t), official_vp_score(net, x[: len(ks)], t))
        errors["sampler grid, k <= 100"] = sampler[:4].max().item()
        errors["sampler grid, k = 998"] = sampler[4].item()
        errors["sampler grid, k = 999"] = sampler[5].item()
    print(f"\n{VP}: relative max-abs score difference to the official convention: "
          + ", ".join(f"{name} {e:.1e}" for name, e in errors.items()))
    assert errors["grid"] < 2e-4 and errors["grid, float64 tables"] < 1e-6, errors
    assert errors["rounded label (wrong)"] > 1e-3, errors
    assert errors["sampler grid, k <= 100"] < 1e-4, errors
    assert 0.2 < errors["sampler grid, k = 998"] and 0.3 < errors["sampler grid, k = 999"] < 0.35, errors


# --- export → load_pretrained --------------------------------------------------------------------

@pytest.mark.parametrize("which", ["ve", "vp"])
def test_export_and_load_pretrained_rebuild_the_same_denoiser(which, request, tmp_path):
    path, net = request.getfixturevalue(which)
    preset = VE if which == "ve" else VP
    m = load_score_sde_checkpoint(path, preset, **SMALL)
    out = export_checkpoint(path, preset, tmp_path / "exported", **SMALL)
    e = load_pretrained(out)
    assert e.card["denoiser"] == m.card["denoiser"] == preset_card(preset, **SMALL)["denoiser"]
    assert (e.model.prediction, e.model.time_label, e.model.num_steps) == \
        (m.model.prediction, m.model.time_label, m.model.num_steps)
    assert type(e.sde) is type(m.sde) and e.sde.config() == m.sde.config()
    assert e.card["official"]["continuous"] is False and e.card["official"]["config"] == f"configs/{preset}.py"
    assert e.card["training"]["steps"] == 77 and "--set nf=16" in e.card["command"]
    t = torch.tensor([1.0, 0.5, 1 / 999, 0.0]) if which == "vp" else torch.tensor([1.0, 0.5, 998 / 999, 0.3337])
    x = _x(4, seed=5)
    with torch.no_grad():
        assert torch.equal(e.model(x, t), m.model(x, t))


# --- refusals -------------------------------------------------------------------------------------

def test_a_checkpoint_with_another_sigmas_table_is_refused(ve, vp, tmp_path):
    path, net = ve

    def save(sigmas):
        p = tmp_path / "checkpoint.pth"
        torch.save(_checkpoint(net, sigmas), p)
        return p

    with pytest.raises(ValueError) as err:  # another σ_max: the values differ, both named
        load_score_sde_checkpoint(save(get_sigmas(sigma_max=100.0)), VE, **SMALL)
    print(f"\nanother σ_max: {err.value}")
    msg = str(err.value)
    assert f"{tmp_path / 'checkpoint.pth'}: 'module.sigmas', the noise-level table" in msg
    assert "is not the one of preset 've/cifar10_ncsnpp'" in msg
    assert "sigmas[0], sigmas[999] = 100, 0.01 in the checkpoint but 50, 0.01 in " \
           "exp(linspace(log 50, log 0.01, 1000))" in msg and msg.endswith("--set sigma_max=100")
    with pytest.raises(ValueError, match=r"sigmas\[0\], sigmas\[7\], sigmas\[999\] = 50, 1, 0.01 in the checkpoint "
                                         r"but 50, 47\.1033, 0.01 in .*relative difference 0.98 at index 7\); set "
                                         r"sigma_max, sigma_min and N to the checkpoint's"):
        load_score_sde_checkpoint(save(get_sigmas().index_fill(0, torch.tensor([7]), 1.0)), VE, **SMALL)
    with pytest.raises(ValueError, match=r"'module.sigmas' has shape \[500\] in the checkpoint but preset "
                                         r"'ve/cifar10_ncsnpp' with \{'nf': 16, 'num_res_blocks': 1\} needs \[1000\]"):
        load_score_sde_checkpoint(save(get_sigmas(num_scales=500)), VE, **SMALL)
    with pytest.raises(ValueError, match=r"lacks 'module.sigmas', the noise-level table"):
        load_score_sde_checkpoint(save(None), VE, **SMALL)
    with pytest.raises(ValueError, match=r"= 50, nan, 0.01 in the checkpoint.*relative difference inf at index 3"):
        load_score_sde_checkpoint(save(get_sigmas().index_fill(0, torch.tensor([3]), float("nan"))), VE, **SMALL)
    with pytest.raises(ValueError, match=r"'module.sigmas' has shape \[1, 1000\]"):
        load_score_sde_checkpoint(save(get_sigmas()[None]), VE, **SMALL)
    # the table stored in float32 is the same table; the preset's σ_max set to the checkpoint's loads it
    assert load_score_sde_checkpoint(save(get_sigmas().float()), VE, **SMALL).card
    m = load_score_sde_checkpoint(save(get_sigmas(sigma_max=100.0)), VE, sigma_max=100.0, **SMALL)
    assert m.sde.sigma_max == 100.0 and torch.allclose(official_sigmas(0.01, 100.0, N), get_sigmas(sigma_max=100.0))
    # VP's score never reads the table (scale_by_sigma False): a VP checkpoint's sigmas stay unchecked
    vp_path, vp_net = vp
    torch.save(_checkpoint(vp_net, get_sigmas(sigma_max=100.0, num_scales=10)), tmp_path / "vp.pth")
    assert load_score_sde_checkpoint(tmp_path / "vp.pth", VP, **SMALL).card


def test_a_checkpoint_of_another_width_or_configuration_is_refused(ve, vp, tmp_path):
    (ve_path, _), (vp_path, _) = ve, vp
    with pytest.raises(ValueError) as err:  # full width: the first key, both shapes
        load_score_sde_checkpoint(ve_path, VE)
    print(f"\nwrong width: {err.value}")
    assert f"{ve_path}: 'module.all_modules.0.weight' has shape [64, 16] in the checkpoint but preset " \
           f"'ve/cifar10_ncsnpp' needs [512, 128]" in str(err.value)
    with pytest.raises(ValueError, match=r"'module.all_modules.0.weight' has shape \[64, 16\] .* needs \[128, 32\]"):
        load_score_sde_checkpoint(vp_path, VP, nf=32, num_res_blocks=1)
    # a continuous-time VE checkpoint (Fourier features first) is not the discrete one, and back
    cont = _random_net("ve/cifar10_ncsnpp_continuous", seed=6)
    torch.save(_checkpoint(cont, get_sigmas()), tmp_path / "continuous.pth")
    with pytest.raises(ValueError, match=r"lacks 'module.all_modules.0.weight' that preset 've/cifar10_ncsnpp'"):
        load_score_sde_checkpoint(tmp_path / "continuous.pth", VE, **SMALL)
    with pytest.raises(ValueError, match=r"lacks 'module.all_modules.0.W' that preset 've/cifar10_ncsnpp_continuous'"):
        load_score_sde_checkpoint(ve_path, "ve/cifar10_ncsnpp_continuous", **SMALL)
    # NCSN++ has the residual input pyramid's convolutions among its modules: DDPM++'s indices shift
    with pytest.raises(ValueError, match=r"lacks 'module.all_modules.5.GroupNorm_0.weight' that preset "
                                         r"'vp/cifar10_ddpmpp'"):
        load_score_sde_checkpoint(ve_path, VP, **SMALL)


# --- presets and the command line -----------------------------------------------------------------

def test_presets_are_the_official_discrete_configurations():
    ve_card, vp_card = preset_card(VE), preset_card(VP)
    assert resolve_preset("cifar10_ncsnpp").name == VE and resolve_preset("cifar10_ddpmpp").name == VP
    for card, p in ((ve_card, PRESETS[VE]), (vp_card, PRESETS[VP])):
        m = card["model"]
        assert (m["nf"], m["ch_mult"], m["num_res_blocks"], m["attn_resolutions"]) == (128, [1, 2, 2, 2], 4, [16])
        assert (m["embedding_type"], m["resblock_type"], m["progressive"], m["dropout"]) == \
            ("positional", "biggan", "none", 0.1)
        assert card["official"]["continuous"] is False and p.released and not p.continuous
        assert card["official"]["checkpoint_url"].startswith("https://drive.google.com/drive/folders/")
        assert card["training"]["batch_size"] == 128 and card["training"]["n_iters"] == 1300001
    # configs/ve/cifar10_ncsnpp.py: SMLD, NCSN++ (FIR, residual input pyramid), scale_by_sigma, uncentred data
    assert (ve_card["model"]["fir"], ve_card["model"]["progressive_input"], ve_card["model"]["input_centering"]) == \
        (True, "residual", True)
    assert ve_card["sde"] == {"kind": "ve", "sigma_min": 0.01, "sigma_max": 50.0, "N": 1000}
    assert ve_card["data"]["centered"] is False and ve_card["training"]["ema_decay"] == 0.999
    assert ve_card["official"]["sampling"] == {"predictor": "reverse_diffusion", "corrector": "langevin", "snr": 0.16}
    assert PRESETS[VE].checkpoint_url.endswith("1sP4GwvrYiI-sDPTp7sKYzsxJLGVamVMZ")
    # configs/vp/cifar10_ddpmpp.py: DDPM, DDPM++ (no FIR, no pyramids), centred data, ancestral sampling
    assert (vp_card["model"]["fir"], vp_card["model"]["progressive_input"], vp_card["model"]["input_centering"]) == \
        (False, "none", False)
    assert vp_card["sde"] == {"kind": "discretevp", "schedule": "linear", "N": 1000, "beta_start": 1e-4,
                              "beta_end": 0.02, "max_beta": 0.999, "cosine_s": 0.008}
    assert vp_card["data"]["centered"] is True and vp_card["training"]["ema_decay"] == 0.9999
    assert vp_card["official"]["sampling"]["predictor"] == "ancestral_sampling"
    assert vp_card["official"]["sampling"]["corrector"] == "none"
    assert PRESETS[VP].checkpoint_url.endswith("1zOVj03ZBcq339p5QEKJPh2bBrxR_HOCM")
    # the continuous presets' denoiser section is score_sde's continuous convention
    for name, p in PRESETS.items():
        if p.continuous:
            card = preset_card(name)
            assert card["denoiser"] == score_sde_parameterization(sde_from_config(**card["sde"])), name
    # overrides: the discrete VP parameters by name; N follows into the VE index label; VP's N stays 1000
    c = preset_card(VP, beta_end=0.03, nf=32)
    assert c["sde"]["beta_end"] == 0.03 and c["model"]["nf"] == 32
    assert preset_card(VE, N=2000)["denoiser"]["num_steps"] == 2000
    with pytest.raises(ValueError, match=r"N must stay 1000, got 2000"):
        preset_card(VP, N=2000)
    with pytest.raises(ValueError, match=r"no setting 'beta_max'.*\['beta_start', 'beta_end', 'N'\]"):
        preset_card(VP, beta_max=20.0)


def test_command_line_lists_and_shows_the_discrete_presets():
    done = subprocess.run([sys.executable, "-m", "invsgm.official", "presets"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in (VE, VP):
        line = next(line for line in lines if line.split()[1:2] == [name])
        assert line.startswith("*") and line.split()[2] == f"configs/{name}.py", line
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["show", "cifar10_ncsnpp", "--set", "nf=16"]) == 0
    assert "time_label: reversed_index" in out.getvalue() and "continuous: false" in out.getvalue()
