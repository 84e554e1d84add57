"""Finite scalar quantization: each channel rounded to a few levels, no learned codebook."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from .. import _distributed as distributed
from .._checks import check_int
from .._outputs import QuantizerOutput
from .base import QUANTIZERS, BaseQuantizer, straight_through

_MAX_CODES = 1 << 24  # the histogram and a prior's vocabulary both need K entries


@QUANTIZERS.register("fsq")
class FiniteScalarQuantizer(BaseQuantizer):
    """FSQ (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple", arXiv 2309.15505).

    The latent is projected to d = len(levels) channels (a 1x1 linear map, only when D != d);
    channel i is squashed by tanh into L_i levels and rounded, with a straight-through gradient.
    The implicit codebook is the grid of all level combinations: K = prod(levels) codes, each
    cell's d digits read as one mixed-radix id, so the indices form one (B, h, w) grid of K ids
    that a prior can model. Nothing is learned in the quantizer itself and there is no auxiliary
    loss: ``loss``, ``codebook_loss`` and ``commitment_loss`` are zero, and no code can die.

    Args:
        dim: D, the width of the latents.
        levels: L_1 ... L_d, each >= 2. Default (8, 5, 5, 5), K = 1000; the paper suggests
            (8, 6, 5) for K ~ 2^8, (8, 5, 5, 5) for 2^10, (7, 5, 5, 5, 5) for 2^12,
            (8, 8, 8, 6, 5) for 2^14, (8, 8, 8, 5, 5, 5) for 2^16.

    Examples:
        >>> import torch
        >>> fsq = FiniteScalarQuantizer(dim=4, levels=(8, 5, 5, 5))
        >>> out = fsq(torch.randn(2, 4, 3, 3))
        >>> fsq.codebook_size, out.indices.shape
        (1000, torch.Size([2, 3, 3]))
    """

    _levels: Tensor
    _basis: Tensor
    _half_width: Tensor
    _low: Tensor
    _high: Tensor
    _half_l: Tensor
    _offset: Tensor
    _shift: Tensor

    def __init__(self, dim: int, levels: Sequence[int] = (8, 5, 5, 5)) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, 1)
        if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or len(levels) == 0:
            raise ValueError(f"levels: expected a non-empty sequence of integers >= 2, got {levels!r}")
        self.levels = tuple(check_int(f"levels[{i}]", level, 2) for i, level in enumerate(levels))
        self.codebook_size = math.prod(self.levels)
        if self.codebook_size > _MAX_CODES:
            raise ValueError(f"levels: {self.levels} give {self.codebook_size} codes, more than {_MAX_CODES}")
        n = torch.tensor(self.levels)
        # Derived from `levels`, so not saved (persistent=False): the config rebuilds them.
        self.register_buffer("_levels", n, persistent=False)
        self.register_buffer("_basis", torch.cumprod(torch.tensor((1, *self.levels[:-1])), 0), persistent=False)
        self.register_buffer("_half_width", n // 2, persistent=False)  # digit of the centre level
        self.register_buffer("_low", -(n // 2).float(), persistent=False)
        self.register_buffer("_high", (n - 1 - n // 2).float(), persistent=False)
        # Paper appendix A.1 bound: tanh scaled to about (-L/2, L/2), shifted by half a level for
        # even L so that rounding yields L values. The shift is atanh(offset / half_l), which makes
        # bound(0) = 0; half_l uses (1 + eps) rather than (1 - eps) so that the atanh stays finite
        # for L = 2 (offset / half_l = 0.5 / 0.4995 > 1 otherwise).
        half_l = (n - 1).double() * (1 + 1e-3) / 2
        offset = torch.where(n % 2 == 0, 0.5, 0.0).double()
        self.register_buffer("_half_l", half_l.float(), persistent=False)
        self.register_buffer("_offset", offset.float(), persistent=False)
        self.register_buffer("_shift", torch.atanh(offset / half_l).float(), persistent=False)
        width = len(self.levels)
        self.project_in = nn.Linear(dim, width) if dim != width else None
        self.project_out = nn.Linear(width, dim) if dim != width else None

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize latents channel by channel.

        Args:
            z: (B, D, h, w) float latents.

        Returns:
            `QuantizerOutput` with ``quantized`` (B, D, h, w),
            ``indices`` (B, h, w) in [0, prod(levels)), zero losses and the batch perplexity.
        """
        z = self.check_latents(z)
        b, _, h, w = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):  # rounding in float32
            flat = rearrange(z, "b d h w -> (b h w) d").float()
            x = self.project_in(flat) if self.project_in is not None else flat  # (N, d)
            bounded = torch.tanh(x + self._shift.float()) * self._half_l.float() - self._offset.float()
            # Integers in [-(L // 2), (L - 1) // 2]; the clamp only guards the edges of huge L.
            rounded = torch.minimum(torch.maximum(bounded.round(), self._low), self._high)
            indices = ((rounded.long() + self._half_width) * self._basis).sum(1)  # (N,) mixed radix
            codes = straight_through(bounded, rounded) / self._half_width.float()  # (N, d) in [-1, 1]
            out = self.project_out(codes) if self.project_out is not None else codes  # (N, D)
            counts = self.histogram(indices, self.codebook_size)
            if self.training:
                distributed.all_reduce_sum(counts)
        zero = flat.new_zeros(())
        return QuantizerOutput(
            quantized=rearrange(out, "(b h w) d -> b d h w", b=b, h=h, w=w).to(z.dtype),
            indices=rearrange(indices, "(b h w) -> b h w", b=b, h=h, w=w),
            loss=zero,
            codebook_loss=zero,
            commitment_loss=zero,
            perplexity=self.perplexity_of(counts),
        )

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """(B, h, w) int ids in [0, prod(levels)) -> (B, D, h, w) codes (exactly ``quantized`` in eval).

        Raises:
            ValueError: wrong shape, or an id outside [0, K).
        """
        indices = self.check_indices(indices)
        b, h, w = indices.shape
        digits = (rearrange(indices, "b h w -> (b h w) 1") // self._basis) % self._levels  # (N, d)
        codes = (digits - self._half_width).float() / self._half_width.float()
        out = self.project_out(codes) if self.project_out is not None else codes
        return rearrange(out, "(b h w) d -> b d h w", b=b, h=h, w=w)
