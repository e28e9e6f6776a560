"""Song, Shen, Xing & Ermon (ICLR 2022), "Solving inverse problems in medical imaging with score-based
generative models": the PC sampler (reverse diffusion + Langevin, snr 0.16) with the transform-domain
λ-consistency step (``invsgm.guidance.Consistency``) after every predictor and corrector update."""
from __future__ import annotations

from ..guidance.consistency import Consistency
from ..sampling.correctors import langevin
from ..sampling.pc import Corrector, Predictor
from ..sampling.predictors import reverse_diffusion
from .pc import PC


class ConsistencyPC(PC):
    """``PC(guidance=Consistency(lam))`` with the paper's defaults; needs an operator A = P(Λ) T."""

    name = "consistency"

    def __init__(self, lam: float = 1.0, predictor: Predictor = reverse_diffusion,
                 corrector: Corrector | None = langevin, snr: float = 0.16, n_corrector_steps: int = 1):
        super().__init__(Consistency(lam), predictor, corrector, snr, n_corrector_steps)
        self.lam = self.guidance.lam
