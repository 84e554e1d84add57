"""Turning next-code logits into codes: temperature, top-k and nucleus (top-p) filtering."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None, guidance_scale: float) -> None:
    """Raise ``ValueError`` naming the argument that is out of range.

    NumPy scalars (``np.float32(0.7)``, ``np.int64(5)``) count as the numbers they hold; ``bool`` does not.
    """
    if not _is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature: expected a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral)
                              or top_k < 1):
        raise ValueError(f"top_k: expected an integer >= 1 or None, got {top_k!r}")
    if top_p is not None and (not _is_real(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p: expected a number in (0, 1] or None, got {top_p!r}")
    if not _is_real(guidance_scale) or not math.isfinite(guidance_scale):
        raise ValueError(f"guidance_scale: expected a finite number, got {guidance_scale!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to -inf every logit outside the ``top_k`` largest and outside the smallest set whose
    probability reaches ``top_p`` (Holtzman et al. 2019, arXiv 1904.09751). (B, K) -> (B, K)."""
    if top_k is not None and top_k < logits.shape[-1]:  # a top_k above K keeps everything
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p; the first always stays, also for
        # a top_p below float32's smallest number (it rounds to 0 and would drop every token).
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw_categorical(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One id per row of (B, K) probabilities (rows need not sum to 1). Returns (B,) int64.

    Inverts each row's CDF with one uniform draw: the same distribution as
    ``torch.multinomial(probs, 1)``, but B random numbers instead of B * K exponentials, which is
    most of the per-step sampling cost at batch 64 and above. Zero-probability ids are never drawn.
    """
    cdf = probs.cumsum(dim=-1)  # (B, K), non-decreasing: a zero-probability id repeats its left neighbour
    total = cdf[:, -1:]
    u = torch.rand(total.shape, generator=generator, device=cdf.device, dtype=cdf.dtype) * total
    # Keep u < total after rounding, so the first cdf entry above u always exists and has mass.
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)


def sample_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  generator: torch.Generator | None = None, validate: bool = True) -> Tensor:
    """Draw one id per row of (B, K) logits; ``temperature=0`` takes the argmax. Returns (B,) int64.

    ``validate=False`` skips the check that every row has a logit above -inf, which reads a value
    back from the device; a sampling loop that checks finiteness once at the end passes it.

    Examples:
        >>> sample_logits(torch.tensor([[0.0, 5.0, 1.0]]), temperature=0)
        tensor([1])
    """
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    top = logits.amax(dim=-1, keepdim=True)
    if validate and not bool((top > float("-inf")).all()):  # else softmax gives NaN and the draw returns id K
        raise ValueError("logits: every row needs a logit above -inf (got a row of only -inf or NaN)")
    # Divide logit minus row maximum, so the best codes sit at exactly 0 and stay there: a tiny
    # temperature (1e-40) then sends the others to -inf instead of overflowing to inf / inf = NaN;
    # the limit of a vanishing temperature, greedy decoding (ties shared), comes out by itself.
    # A +inf logit (an overflowing guidance scale) outweighs every finite one: only those stay.
    shifted = torch.where(top == float("inf"), torch.where(logits == float("inf"), 0.0, float("-inf")),
                          logits - top)
    scaled = torch.where(shifted == 0, 0.0, shifted / temperature)
    probs = filter_logits(scaled, top_k, top_p).softmax(dim=-1)
    return draw_categorical(probs, generator)
