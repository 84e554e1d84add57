"""Vector quantization with a codebook updated by exponential moving averages."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _distributed as distributed
from .._checks import check_float
from .base import QUANTIZERS
from .codebook import CodebookQuantizer


@QUANTIZERS.register("vq_ema")
class EMAVectorQuantizer(CodebookQuantizer):
    """VQ whose codes are moving averages of the encoder outputs assigned to them.

    Paper appendix A.1 (arXiv 1711.00937): per code, N_i <- g N_i + (1 - g) n_i and
    m_i <- g m_i + (1 - g) sum of its z_e; e_i = m_i / N_i with Laplace-smoothed N_i so that a
    code never used does not divide by zero. The codebook term of Eq. 3 is replaced by this
    update, so ``codebook_loss`` is zero and ``loss = beta * commitment_loss``.

    Args:
        dim: D. codebook_size: K. beta: commitment weight (default 0.25).
        decay: g, the EMA decay. Default 0.99.
        eps: Laplace smoothing of the counts. Default 1e-5.
        kmeans_init, kmeans_iters, restart_dead_codes, dead_code_threshold, usage_decay, gradient:
            as in `CodebookQuantizer`; off by default.

    Examples:
        >>> import torch
        >>> vq = EMAVectorQuantizer(dim=8, codebook_size=16)
        >>> vq(torch.randn(2, 8, 4, 4)).codebook_loss.item()
        0.0
    """

    learned_by_gradient = False
    weight: Tensor  # (K, D) codes, e_i = m_i / N_i
    cluster_size: Tensor  # (K,) N_i, EMA of assignment counts
    embed_sum: Tensor  # (K, D) m_i, EMA of the sums of assigned z_e

    def __init__(self, dim: int, codebook_size: int = 512, beta: float = 0.25, decay: float = 0.99,
                 eps: float = 1e-5, *, kmeans_init: bool = False, kmeans_iters: int = 10,
                 restart_dead_codes: bool = False, dead_code_threshold: float = 0.03, usage_decay: float = 0.99,
                 gradient: str = "ste") -> None:
        self.decay = check_float("decay", decay, 0.0, 1.0, high_open=True)
        self.eps = check_float("eps", eps, 1e-12, 1.0)
        super().__init__(dim, codebook_size, beta, kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
                         restart_dead_codes=restart_dead_codes, dead_code_threshold=dead_code_threshold,
                         usage_decay=usage_decay, gradient=gradient)

    def _make_codebook(self) -> None:
        initial = torch.randn(self.codebook_size, self.dim)
        self.register_buffer("weight", initial.clone())
        self.register_buffer("cluster_size", torch.ones(self.codebook_size))
        self.register_buffer("embed_sum", initial.clone())

    @property
    def codebook(self) -> Tensor:
        return self.weight

    @torch.no_grad()
    def _set_codes(self, mask: Tensor, values: Tensor) -> None:
        rows = mask[:, None]
        self.weight.copy_(torch.where(rows, values, self.weight))
        # A light count, so the code follows its first assignments.
        self.cluster_size.copy_(torch.where(mask, 1.0, self.cluster_size))
        self.embed_sum.copy_(torch.where(rows, values, self.embed_sum))

    @torch.no_grad()
    def _update_codebook(self, inputs: Tensor, indices: Tensor, counts: Tensor, finite: Tensor) -> None:
        # (K, D) sums by index_add_, not a (N, K) one-hot matrix product: memory stays O(K D).
        sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, inputs)
        distributed.all_reduce_sum(sums)  # counts arrive already summed over ranks
        # A non-finite batch moves nothing: the EMA targets fall back to the current values.
        self.cluster_size.lerp_(torch.where(finite, counts, self.cluster_size), 1.0 - self.decay)
        self.embed_sum.lerp_(torch.where(finite, sums, self.embed_sum), 1.0 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.weight.copy_(torch.where(finite, self.embed_sum / smoothed.unsqueeze(1), self.weight))
