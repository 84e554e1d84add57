"""Sign quantization of a projected latent: lookup-free quantization (LFQ) with K = 2**bits codes.

Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer is Key to Visual Generation"
(MAGVIT-v2, https://arxiv.org/abs/2310.05737, §3.1). The codebook is implicit: the latent is
projected to ``bits`` channels and each channel is replaced by its sign, so a grid cell holds
one of the 2**bits corners of the hypercube {-1, +1}^bits. Reading the signs as the bits of an
integer gives one id per cell, so the indices form one (B, h, w) grid that a prior can model,
exactly like the built-in ``vq`` and ``fsq``.

Registered by the entry point ``lfq_sign`` (see this package's ``pyproject.toml``), never by a
decorator: discrete_latents imports this module on the first ``QUANTIZERS.get("lfq_sign")``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discrete_latents import BaseQuantizer, QuantizerOutput

MAX_BITS = 24  # K = 2**24 ids already needs a 16M-entry histogram and prior vocabulary


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
    return value


class SignQuantizer(BaseQuantizer):
    """Binary (sign) quantization with a straight-through gradient; K = 2**bits implicit codes.

    A 1x1 linear map takes the D-wide latent to ``bits`` channels (only when D != bits); each
    channel becomes -1 or +1 by its sign (a value of exactly 0 counts as negative), and a second
    linear map takes the signs back to D channels. The id of a cell is sum_i [x_i > 0] * 2**i.
    There is no codebook to learn, so ``codebook_loss`` is zero; the commitment term
    ||x - sg[sign(x)]||^2 keeps the projected latents near the corners, weighed by ``beta`` in
    ``loss`` as in paper Eq. 3 of arXiv 1711.00937.

    Args:
        dim: D, the width of the latents (set by ``VQVAEConfig.latent_dim``).
        bits: number of binary channels; K = 2**bits codes. Default 8 (256 codes).
        beta: weight of the commitment term. Default 0.25.

    Example:
        >>> import torch
        >>> q = SignQuantizer(dim=8, bits=4)
        >>> out = q(torch.randn(2, 8, 7, 7))
        >>> q.codebook_size, out.indices.shape
        (16, torch.Size([2, 7, 7]))
    """

    # The plugin contract this class was written against; discrete_latents refuses a mismatch
    # instead of failing later in an obscure way.
    api_version: ClassVar[int] = 1
    _basis: Tensor  # (bits,) int64 powers of two

    def __init__(self, dim: int, bits: int = 8, beta: float = 0.25) -> None:
        super().__init__()
        self.dim = _check_int("dim", dim, 1, 1 << 20)
        self.bits = _check_int("bits", bits, 1, MAX_BITS)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
            raise ValueError(f"beta: expected a finite number >= 0, got {beta!r}")
        self.beta = float(beta)
        self.codebook_size = 2**bits
        # Derived from `bits`, so not saved: the config rebuilds it.
        self.register_buffer("_basis", 2 ** torch.arange(bits), persistent=False)
        self.project_in = nn.Linear(dim, bits) if dim != bits else None
        self.project_out = nn.Linear(bits, dim) if dim != bits else None

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize latents.

        Args:
            z: (B, D, h, w) float latents.

        Returns:
            :class:`~discrete_latents.QuantizerOutput` with ``quantized`` (B, D, h, w) in the
            dtype of ``z``, ``indices`` (B, h, w) int64 in [0, 2**bits), ``codebook_loss`` zero,
            ``loss = beta * commitment_loss`` and the batch perplexity.
        """
        z = self.check_latents(z)
        b, _, h, w = z.shape
        # Signs and ids in float32 even under autocast, so bf16 rounding never flips a bit.
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = rearrange(z, "b d h w -> (b h w) d").float()
            x = self.project_in(flat) if self.project_in is not None else flat  # (N, bits)
            positive = x > 0  # (N, bits): the bits of each cell's id
            signs = positive.float() * 2 - 1  # (N, bits) in {-1, +1}
            indices = (positive.long() * self._basis).sum(1)  # (N,)
            # Straight-through (arXiv 1711.00937 §3.1): the value is exactly the signs (x - x is
            # exactly 0), the gradient flows to x unchanged; eval indices_to_codes matches bit for bit.
            codes = signs + (x - x.detach())
            out = self.project_out(codes) if self.project_out is not None else codes  # (N, D)
            commitment_loss = F.mse_loss(x, signs)
            counts = torch.bincount(indices, minlength=self.codebook_size).float()
        zero = commitment_loss.new_zeros(())
        return QuantizerOutput(
            quantized=rearrange(out, "(b h w) d -> b d h w", b=b, h=h, w=w).to(z.dtype),
            indices=rearrange(indices, "(b h w) -> b h w", b=b, h=h, w=w),
            loss=zero + self.beta * commitment_loss,
            codebook_loss=zero,
            commitment_loss=commitment_loss,
            perplexity=self.perplexity_of(counts),  # of this process's batch (not summed over DDP ranks)
        )

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """(B, h, w) int ids in [0, 2**bits) -> (B, D, h, w) codes (exactly ``quantized`` in eval).

        Raises:
            ValueError: wrong shape, or an id outside [0, K).
            TypeError: not an integer tensor.
        """
        indices = self.check_indices(indices)
        b, h, w = indices.shape
        bits = (rearrange(indices, "b h w -> (b h w) 1") // self._basis) % 2  # (N, bits) in {0, 1}
        signs = bits.float() * 2 - 1
        out = self.project_out(signs) if self.project_out is not None else signs
        return rearrange(out, "(b h w) d -> b d h w", b=b, h=h, w=w)
