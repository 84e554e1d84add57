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
        **health: ``kmeans_init``, ``restart_dead_codes`` and friends, see
            :class:`~discrete_latents.quantizers.codebook.CodebookQuantizer`; all off by default.

    Example:
        >>> import torch
        >>> vq = VectorQuantizer(dim=32, codebook_size=100)
        >>> out = vq(torch.randn(2, 32, 7, 7))
        >>> out.quantized.shape, out.indices.shape
        (torch.Size([2, 32, 7, 7]), torch.Size([2, 7, 7]))
    """

    def __init__(self, dim: int, codebook_size: int = 512, beta: float = 0.25, **health: object) -> None:
        super().__init__(dim, codebook_size, beta, **health)  # type: ignore[arg-type]
        # Uniform(-1/K, 1/K) as in the authors' reference implementation.
        self.weight = nn.Parameter(torch.empty(codebook_size, dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size))

    @property
    def codebook(self) -> Tensor:
        return self.weight

    def _set_codes(self, mask: Tensor, values: Tensor) -> None:
        # `.data` keeps the write outside autograd: this step's graph has already used the weight.
        self.weight.data.copy_(torch.where(mask[:, None], values.to(self.weight.dtype), self.weight.data))
