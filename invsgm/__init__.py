"""invsgm: controllable generation and inverse problems with score-based generative models."""
from .pretrained import load_pretrained
from .sde import SDE, DiscreteVPSDE, SubVPSDE, VESDE, VPSDE, sde_from_config
from .solve import Solution, solve

__version__ = "0.1.0"
__all__ = ["SDE", "DiscreteVPSDE", "Solution", "SubVPSDE", "VESDE", "VPSDE", "load_pretrained", "sde_from_config",
           "solve"]
