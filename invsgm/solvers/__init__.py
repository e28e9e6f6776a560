"""Posterior solvers, one file each, one signature (``base.Solver``), one result type (``SolverResult``)."""
from .base import Callback, Solver, SolverResult
from .consistency import ConsistencyPC
from .daps import DAPS
from .ddim import DDIM
from .ddpm import DDPM
from .ddrm import DDRM
from .diffpir import DiffPIR
from .pc import PC
from .repaint import RePaint
from .smc import SMC

__all__ = ["Callback", "ConsistencyPC", "DAPS", "DDIM", "DDPM", "DDRM", "DiffPIR", "PC", "RePaint", "SMC", "Solver", "SolverResult"]
