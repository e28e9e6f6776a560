"""Score networks: an NCSN++/DDPM++-family U-Net, an MLP for vectors, and the SDE-aware wrapper."""
from .mlp import MLPScoreNet
from .score import ScoreModel
from .unet import UNet, parameter_count, unet_cpu_small, unet_gpu

__all__ = ["MLPScoreNet", "ScoreModel", "UNet", "parameter_count", "unet_cpu_small", "unet_gpu"]
