"""Score networks (an NCSN++/DDPM++-family U-Net, an MLP for vectors), noise-conditional classifiers,
their SDE-aware wrappers and the name → class table of configs and model cards."""
from .build import MODELS, build_model, model_config
from .classifier import NoiseConditionalClassifier, TimeConditionalClassifier, classifier_cpu_small, classifier_gpu
from .mlp import MLPScoreNet
from .unet import UNet, parameter_count, unet_cpu_small, unet_gpu

__all__ = ["MLPScoreNet", "UNet", "parameter_count", "unet_cpu_small", "unet_gpu",
           "NoiseConditionalClassifier", "TimeConditionalClassifier", "classifier_cpu_small", "classifier_gpu",
           "MODELS", "build_model", "model_config"]
