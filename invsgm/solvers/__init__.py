"""Posterior solvers, one file each, one signature (``base.Solver``), one result type (``SolverResult``)."""
from .base import Callback, Solver, SolverResult
from .pc import PC
from .smc import SMC

__all__ = ["Callback", "PC", "SMC", "Solver", "SolverResult"]
