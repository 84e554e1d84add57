"""Vector quantization on the unit sphere: l2-normalised inputs and codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
        kmeans_init, kmeans_iters, restart_dead_codes, dead_code_threshold, usage_decay, gradient:
            as in `CodebookQuantizer` (k-means is
            spherical here); all off by default.

    Examples:
        >>> import torch
        >>> vq = CosineVectorQuantizer(dim=8, codebook_size=16)
        >>> out = vq(torch.randn(2, 8, 4, 4))
        >>> torch.allclose(out.quantized.norm(dim=1), torch.ones(2, 4, 4))
        True
    """

    def _make_codebook(self) -> None:
        # Random directions: uniform on the sphere once normalised.
        self.weight = nn.Parameter(F.normalize(torch.randn(self.codebook_size, self.dim), dim=1))

    @property
    def codebook(self) -> Tensor:
        return F.normalize(self.weight, dim=1)

    def _prepare(self, flat: Tensor) -> Tensor:
        return F.normalize(flat, dim=1)  # (N, D); a zero row stays zero (eps), never NaN
