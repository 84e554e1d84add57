"""Evaluation metrics on images in [0, 1] and on code histograms."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]: 10 log10(1 / MSE)."""
    return math.inf if mse <= 0 else 10.0 * math.log10(1.0 / mse)


def perplexity(counts: Tensor) -> float:
    """exp of the entropy of a code histogram: K for uniform use of K codes, 1 for a single code."""
    probs = counts.double() / counts.sum().clamp_min(1)
    return float(torch.special.entr(probs).sum().exp())


def codes_used(counts: Tensor) -> int:
    """How many codes appear at least once in the histogram."""
    return int((counts > 0).sum())


def bits_per_image(nats_per_code: float, codes_per_image: int) -> float:
    """Convert a mean NLL in nats per code into bits per image."""
    return nats_per_code * codes_per_image / math.log(2)
