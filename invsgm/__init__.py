"""invsgm: controllable generation and inverse problems with score-based generative models."""
from .sde import SDE, SubVPSDE, VESDE, VPSDE, sde_from_config

__version__ = "0.1.0"
__all__ = ["SDE", "VESDE", "VPSDE", "SubVPSDE", "sde_from_config"]
