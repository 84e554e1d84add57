"""Vector quantization on the unit sphere: l2-normalised inputs and codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import QUANTIZERS
from .vector_quantizer import VectorQuantizer


@QUANTIZERS.register("vq_cosine")
class CosineVectorQuantizer(VectorQuantizer):
    """VQ by cosine similarity (Yu et al. 2021, "Vector-quantized image modeling with improved
    VQGAN", arXiv 2110.04627, §3.2).

    Inputs and codes are l2-normalised, so the nearest code by Euclidean distance is the one with
    the largest cosine similarity (||x - e||^2 = 2 - 2 cos(x, e) on the unit sphere). Codes
    cannot drift to large norms or collapse toward the origin, which keeps more of them in use.
    ``quantized`` is the unit-norm code; the losses of Eq. 3 are taken between unit vectors, the
    codebook (an ``nn.Parameter``, normalised on use) learned by its loss term as in ``"vq"``.

    Args:
        dim: D, the width of a code vector.
        codebook_size: K. Default 512.
        beta: commitment weight. Default 0.25.
        **health: ``kmeans_init`` (spherical k-means), ``restart_dead_codes`` and friends, see
            :class:`~discrete_latents.quantizers.codebook.CodebookQuantizer`; all off by default.

    Example:
        >>> import torch
        >>> vq = CosineVectorQuantizer(dim=8, codebook_size=16)
        >>> out = vq(torch.randn(2, 8, 4, 4))
        >>> torch.allclose(out.quantized.norm(dim=1), torch.ones(2, 4, 4))
        True
    """

    def __init__(self, dim: int, codebook_size: int = 512, beta: float = 0.25, **health: object) -> None:
        super().__init__(dim, codebook_size, beta, **health)
        # Random directions: uniform on the sphere once normalised.
        self.weight.data = F.normalize(torch.randn(codebook_size, dim), dim=1)

    @property
    def codebook(self) -> Tensor:
        return F.normalize(self.weight, dim=1)

    def _prepare(self, flat: Tensor) -> Tensor:
        return F.normalize(flat, dim=1)  # (N, D); a zero row stays zero (eps), never NaN
