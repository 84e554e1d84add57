"""Priors over code grids, registered by name in `PRIORS`.

``"causal_transformer"`` is the seed's GPT (`CausalPrior`); ``"pixelcnn"`` is the paper's
gated PixelCNN (`PixelCNNPrior`). `build_prior` picks the class from a config.
"""

from .base import PRIORS as PRIORS
from .base import BasePrior as BasePrior
from .base import build_prior as build_prior
from .causal_prior import CausalPrior as CausalPrior
from .pixelcnn_prior import PixelCNNPrior as PixelCNNPrior

__all__ = ["PRIORS", "BasePrior", "CausalPrior", "PixelCNNPrior", "build_prior"]
