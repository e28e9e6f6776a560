"""Score networks: an NCSN++/DDPM++-family U-Net, an MLP for vectors, and the SDE-aware wrapper."""
from .score import ScoreModel

__all__ = ["ScoreModel"]
