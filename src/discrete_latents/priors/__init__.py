"""Priors over code grids, registered by name in :data:`PRIORS`."""

from .base import PRIORS as PRIORS
from .base import BasePrior as BasePrior
from .causal_prior import CausalPrior as CausalPrior

__all__ = ["PRIORS", "BasePrior", "CausalPrior"]
