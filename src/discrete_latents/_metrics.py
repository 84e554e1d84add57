"""Evaluation metrics on images in [0, 1] and on code histograms."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]: 10 log10(1 / MSE)."""
    return math.inf if mse <= 0 else 10.0 * math.log10(1.0 / mse)


def perplexity(counts: Tensor) -> Tensor:
    """exp of the entropy of a code histogram (0-d float32): K for uniform use of K codes, 1 for one code.

    In float32 on the counts' device (no host synchronisation, and MPS has no float64).
    """
    probs = counts.float() / counts.float().sum().clamp_min(1e-12)
    return torch.special.entr(probs).sum().exp()


def codes_used(counts: Tensor) -> int:
    """How many codes appear at least once in the histogram."""
    return int((counts > 0).sum())


def bits_per_image(nats_per_code: Any, codes_per_image: int) -> Any:
    """Convert a mean NLL in nats per code (a float or a tensor) into bits per image: x codes / ln 2."""
    return nats_per_code * codes_per_image / math.log(2)
