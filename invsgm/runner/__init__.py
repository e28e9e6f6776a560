"""The machinery behind ``invsgm run`` (the user's documentation, the YAML schema included, is ``invsgm.run``'s):

- ``config``: the run file's schema, checked and resolved (``resolve_config``, ``load_run_config``);
- ``inputs``: data sets, folders of clean images, observed images with their masks and truths, class labels;
  reading image files, sizes and how they are made to fit (``open_inputs``);
- ``outputs``: the results folder, written atomically: PNGs, the exact observation, the titled panel,
  metrics.json (``write_input``, ``summary``);
- ``orchestrate``: the model, the measurement, the solver and the batches put in order (``run``).

What a task measures is the measurement's business (``invsgm.measurement``: ``file_parts``,
``simulate_file``, ``observe``, ``picture``, ``baseline``, ``valid_images``, ``with_mask``; the operators'
``file_shape``, ``to_file`` / ``from_file``, ``observed_pixels``), not this package's.
"""
from .config import DATASETS, FITS, SAMPLER_DEFAULTS, SECTIONS, load_run_config, resolve_config
from .inputs import Inputs, Item, open_inputs
from .orchestrate import RunResult, load_model, run
from .outputs import STD_DISPLAY_GAIN, format_summary, quantize

__all__ = ["DATASETS", "FITS", "Inputs", "Item", "RunResult", "SAMPLER_DEFAULTS", "SECTIONS", "STD_DISPLAY_GAIN",
           "format_summary", "load_model", "load_run_config", "open_inputs", "quantize", "resolve_config", "run"]
