"""Named outputs shared by every component of a kind, read by field name.

Axis letters: B batch, D code width, h/w code-grid height/width, H/W image height/width,
C image channels, K codebook size, Q number of codebooks (residual quantizers only).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class QuantizerOutput(NamedTuple):
    """What every quantizer returns.

    Attributes:
        quantized: (B, D, h, w) codes, with a straight-through gradient to the input.
        indices: (B, h, w) int64 code ids, or (B, h, w, Q) for quantizers with Q codebooks.
        loss: scalar, ``codebook_loss + beta * commitment_loss`` (paper Eq. 3).
        codebook_loss: scalar, unweighted ``||sg[z_e] - e||^2`` (zero where the codebook is not
            learned by gradient, e.g. EMA or FSQ).
        commitment_loss: scalar, unweighted ``||z_e - sg[e]||^2``.
        perplexity: scalar, exp of the entropy of this batch's code histogram.
    """

    quantized: Tensor
    indices: Tensor
    loss: Tensor
    codebook_loss: Tensor
    commitment_loss: Tensor
    perplexity: Tensor


class VQVAEOutput(NamedTuple):
    """What `VQVAE.forward` returns.

    Attributes:
        reconstruction: (B, C, H, W) decoded images clamped to [0, 1]; the clamp passes
            gradients straight through, so a reconstruction loss sees the returned images' error.
        indices: the quantizer's indices.
        loss: scalar quantizer loss (add the reconstruction loss to train).
        quantizer: the full `QuantizerOutput`.
    """

    reconstruction: Tensor
    indices: Tensor
    loss: Tensor
    quantizer: QuantizerOutput


class PriorOutput(NamedTuple):
    """What every prior's ``forward`` returns.

    Attributes:
        logits: (B, h, w, K) next-code logits; position (i, j) sees only earlier codes in raster order.
        loss: scalar mean cross-entropy in nats per code.
    """

    logits: Tensor
    loss: Tensor
