"""The paper's vector quantizer: a codebook learned by its own loss term."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import QUANTIZERS
from .codebook import CodebookQuantizer


@QUANTIZERS.register("vq")
class VectorQuantizer(CodebookQuantizer):
    """Nearest-neighbour vector quantization (van den Oord et al. 2017, arXiv 1711.00937, §3.1).

    The codebook is an ``nn.Parameter`` (K, D) trained by the codebook term of Eq. 3; the
    encoder is pulled toward its codes by ``beta`` times the commitment term.

    Args:
        dim: D, the width of a code vector.
        codebook_size: K. Default 512.
        beta: commitment weight. Default 0.25.
        kmeans_init, kmeans_iters, restart_dead_codes, dead_code_threshold, usage_decay, gradient:
            codebook health and gradient options, see
            `CodebookQuantizer`; all off by default.

    Examples:
        >>> import torch
        >>> vq = VectorQuantizer(dim=32, codebook_size=100)
        >>> out = vq(torch.randn(2, 32, 7, 7))
        >>> out.quantized.shape, out.indices.shape
        (torch.Size([2, 32, 7, 7]), torch.Size([2, 7, 7]))
    """

    def _make_codebook(self) -> None:
        # Uniform(-1/K, 1/K) as in the authors' reference implementation.
        size = self.codebook_size
        self.weight = nn.Parameter(torch.empty(size, self.dim).uniform_(-1.0 / size, 1.0 / size))

    @property
    def codebook(self) -> Tensor:
        return self.weight

    def _set_codes(self, mask: Tensor, values: Tensor) -> None:
        # `.data` keeps the write outside autograd: this step's graph has already used the weight.
        self.weight.data.copy_(torch.where(mask[:, None], values.to(self.weight.dtype), self.weight.data))
