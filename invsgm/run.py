"""``invsgm run TASK.yaml``: solve an inverse problem (or a class-conditional generation) on a set of inputs —
clean images whose observations the run simulates (benchmarks), or observed images (real use).

The YAML file (every key checked; an unknown key, a wrong type or an unknown name raises a
``ValueError`` naming the key, the value and what was expected)::

    model: {pretrained: photos_score}       # a shipped name or a model folder, or a checkpoint you hold
                                            # (invsgm.config.models): {score_sde_checkpoint: PATH, preset: NAME,
                                            # overrides: {nf: 16}, ema: true} | {adm_checkpoint: PATH, preset: NAME,
                                            # overrides: {...}} | {diffusers: FOLDER}; class_label: K for a
                                            # class-conditional network (ADM's ImageNet models)
    sde: vp                                 # optional: ve | vp | subvp | discrete_vp or {kind: vp, beta_min: ...}
    task: {name: inpaint, mask: {box: [8, 8, 16, 16]}}   # what was observed (invsgm.config.tasks), or a list
    sampler:                                # how the posterior is sampled (invsgm.config.solvers)
      name: pc                              # pc | smc | ddrm | diffpir | daps | repaint | ddim | ddpm | a plugin
      steps: 200                            # steps of the time grid
      n_samples: 4                          # independent posterior samples per input
      batch_size: 8                         # inputs solved together (read, solved and written one batch at a time)
      grid: {sigma_max: 10, rho: 7}         # optional: steps placed by the noise level σ/α (default: uniform in t),
                                            # or {respacing: ddim50}: ADM's respaced steps (steps is then ignored)
      guidance: auto                        # pc / smc: {name: pigdm, scale: 2, power: 2, data_variance: 0.25} |
                                            # {name: dps, ...} | {name: replacement} | {name: classifier, scale: 2}
                                            # | a list, one per task of a list; auto: replacement for noiseless
                                            # masks and colorization, ΠGDM otherwise, the classifier for labels
      predictor: reverse_diffusion          # pc: euler_maruyama | reverse_diffusion | ancestral_sampling | none
      corrector: langevin                   # pc: langevin | annealed_langevin | none
      # ... and every other constructor argument of the solver (snr, n_particles, eta, lam, zeta, ...)
    inputs: {dataset: photos_test, count: 4}  # clean images, observations simulated: photos_test |
                                            # digits_test | phantoms_test
                                            # (held-out test images) or {path: FILE_OR_FOLDER, count: N};
                                            # observed images: {observations: FILE_OR_FOLDER, masks: FILE_OR_FOLDER,
                                            # truth: FILE_OR_FOLDER, count: N}; fit: resize | crop (files of another
                                            # size); class tasks: labels: [0, 1, ...]
    output: out/inpaint                     # default: out/<YAML file stem>
    seed: 0                                 # all randomness (observation noise, sampling) comes from it
    device: auto                            # auto (CUDA when available) | cpu | cuda | cuda:N

On the command line ``--input PATH`` (clean images) or ``--observation PATH`` with ``--mask PATH`` and
``--truth PATH`` replace the YAML's inputs (keeping its ``labels`` and ``fit``), ``--resize`` / ``--crop`` set
``inputs.fit``; ``--set KEY.SUB=VALUE``, ``--out``, ``--seed`` override the rest. Relative paths (``model``,
inputs, mask files, ``output``) are resolved against the current directory, not the YAML file's folder: the
README's commands run from the repository root.

**Clean images (benchmarks).** ``photos_test`` are the held-out 32×32 test patches
(``invsgm.data.photos_test_images``, ``count`` ≤ 80), ``digits_test`` scikit-learn's test digits
(``digits(split='test')``, with their labels, ≤ 355), ``phantoms_test`` the fixed held-out ellipse phantoms
(``invsgm.phantoms``, at the model's size, ≤ 100); a folder is searched recursively, sorted by path. Each
image is the truth; its observation is simulated by the measurement (``simulate_file``: A·img + σ_y z in
image units, the noise from its own stream of the seed). Images are read one batch at a time: an unreadable
file stops the run there, the inputs finished before it are kept.

**Observed images.** ``inputs.observations`` (``--observation``) is an image file or a folder of them
(recursive; PNG, JPEG, ... and ``.npy``), each what the task observed, in the form the operator's
``file_shape`` says:

- inpaint: the image; which pixels are missing comes from ``inputs.masks`` (``--mask``: a file for every
  observation, or a folder with a file of the same relative name; **white = missing**, black = observed,
  grey ≥ 0.5 counts as white), else from the image's alpha channel (**alpha 0 = missing**), else from the
  task's ``mask``; the input's own mask replaces the task's, which may be left out. NOTE: the task's
  ``mask: {file: PATH}`` key keeps its own convention, **white = observed** (a fixed mask for every input);
- super_resolution: the low-resolution image (the model's size divided by the factor); the samples have the
  model's size;
- deblur, denoise: the degraded image; colorize: the grey image (one channel, or RGB with equal channels);
- class labels (class tasks) come from ``inputs.labels``, one per observation;
- mri: a ``.npy`` k-space array, complex (H, W) (or real (H, W, 2): real, imaginary) in the unshifted order of
  ``numpy.fft.fft2(image, norm="ortho")`` of the image in [0, 1], zeros on the columns the task's mask does not
  sample (a value there is an error: the data was taken with another mask); ct: a ``.npy`` sinogram, real
  (views, detectors), the views in the task's angle order (``LinearOperator.read_array``).

``inputs.truth`` (``--truth``: a file, or a folder matched by relative name like the masks) gives the clean
images; with it metrics.json has PSNR and SSIM, without it none. Every observation, mask and truth is read
and checked before anything is written: a file that cannot be read, an image of the wrong size, an RGB image
in colour where grey is observed, a mask of another size than its observation, a mask with no missing pixel
(or no observed one), a mask for a task that observes every pixel — each is an error naming the file (exit
status 2) and no output folder is left behind.

**Sizes.** An image whose size is not what the task needs (the model's size; the model's size divided by the
factor for super-resolution) is an error saying which size fits — unless ``inputs.fit`` (``--resize``,
``--crop``) says to fit it: ``resize`` takes the centre part of the needed aspect ratio and resizes it
(antialiased bicubic, values kept within the image's range), ``crop`` takes the centre (the image must be at
least the needed size); masks follow their observation (a resized mask's half-missing pixels are missing).
What was done is printed and recorded in metrics.json (``fit`` of the input).

For each input the observation's pixels become y (``observe``: ``LinearOperator.from_file``, then
the model's data space), posterior samples are drawn with ``invsgm.solve`` and mapped back to images in [0, 1].
Written per input, into ``OUTPUT/<input-name>/`` (the layout ``invsgm eval`` reads):

- ``truth.png`` (when known);
- ``observation.png``: the observation as a file holds it (the form observation mode reads: the low-resolution
  image of super-resolution, the grey image of colorization), 8-bit, clamped to [0, 1]; for masks the observed
  pixels are its alpha channel (alpha 0 = missing). ``observation.npy`` beside it (float32, (h, w, C) with
  the same channels, unclamped) when the PNG does not hold the observation exactly (noise, averages, blur,
  grey of colour values): read either back with ``--observation`` — the .npy gives exactly the samples of
  the run that wrote it (same config and seed; the observation noise has its own stream), the PNG to its
  8-bit precision. Observations that are not pictures (MRI's k-space, CT's sinogram) are written as
  ``observation.npy`` in the form observation mode reads (``LinearOperator.write_array``), and observation.png is
  the operator's picture of them (the zero-filled reconstruction, the scaled sinogram);
- ``samples/000.png ...`` and ``mean.png`` (their mean). Samples leave the sampler unclipped: they
  are clamped to [0, 1], and for noiseless colorization projected (per pixel, Euclidean) onto the RGB
  values in [0, 1] with the observed grey, so the observed coordinates stay exact;
- ``std.png``: grey, the pixel-wise standard deviation of the samples (root-mean-square over
  channels) times 2, so that white is 0.5, the largest possible for values in [0, 1];
- ``baseline.png``: the classical method for the operator, on the image-space observation
  (``invsgm.baselines.BASELINES``: mask → biharmonic inpainting, grey → grey image, average pooling →
  bicubic, blur → Wiener, identity → TV);
- ``panel.png``: titled columns truth | observation | baseline | sample 1 ... | mean | std (truth absent when
  unknown, baseline when no method fits), enlarged to at least 96 pixels a column.

Then ``OUTPUT/metrics.json``: ``mode`` (simulated | observations | labels); per input its files, what was
fitted (``fit``), whether observation.npy was written (``observation_npy``), the PSNR and SSIM of the mean, of
the baseline and the average over samples when the truth is known, computed on the 8-bit images written (as
``invsgm eval`` reads them); for class tasks the label and the classifier's class at t = 0 of each sample; a
summary, the seconds, images/s and the network evaluations per sample (``nfe_per_sample``).
``OUTPUT/run.yaml`` (the resolved config) is written first. A progress bar counts the sampler's steps over the whole run, with the
time left.

Nothing is half-written: an input's folder is written under a hidden temporary name and renamed into
place when complete; metrics.json and run.yaml are written atomically; an error or Ctrl-C removes the
temporary folder. An existing OUTPUT must be an earlier results folder (with run.yaml) or empty;
input folders of an earlier run that this run does not produce are removed at the end.

The code is in ``invsgm.runner`` (``config``, ``inputs``, ``outputs``, ``orchestrate``); this module keeps the
names callers import.
"""
from __future__ import annotations

import torch

from .config import apply_set, parse_set, read_yaml
from .measurement import LinearMeasurement
from .runner import (DATASETS, FITS, SAMPLER_DEFAULTS, SECTIONS, STD_DISPLAY_GAIN, Inputs, Item, RunResult,
                     format_summary, load_model, load_run_config, open_inputs, resolve_config, run)
from .runner.outputs import quantize as _quantize  # noqa: F401  (benchmarks/table_inverse.py imports it)


def image_observation(operator, y: torch.Tensor, centered: bool) -> torch.Tensor:
    """The observation of the image in [0, 1]: (y + A·1)/2 for centred models (A x = A(2 img − 1)), else y."""
    return LinearMeasurement(operator).image_units(y, centered)


def baseline(part: LinearMeasurement, y_img: torch.Tensor, centered: bool) -> torch.Tensor | None:
    """The classical method for the task's operator on the image-space observation (None if there is none)."""
    from .baselines import baseline_for

    return baseline_for(part.operator, y_img, part.sigma_y / (2.0 if centered else 1.0))


__all__ = ["DATASETS", "FITS", "Inputs", "Item", "RunResult", "SAMPLER_DEFAULTS", "SECTIONS", "STD_DISPLAY_GAIN",
           "apply_set", "baseline", "format_summary", "image_observation", "load_model", "load_run_config",
           "open_inputs", "parse_set", "read_yaml", "resolve_config", "run"]
