"""Shared machinery of the quantizers with an explicit (K, D) codebook.

Nearest-code search, losses and the codebook-health options live here once: data-driven
initialisation (k-means on the first training batch), usage tracked over a window of batches,
and restart of codes whose usage falls below a threshold. The options are off by default.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from .. import distributed
from ..outputs import QuantizerOutput
from .base import BaseQuantizer


def nearest_code(flat: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code (squared Euclidean) for each row of ``flat`` (N, D).

    ||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2; ||x||^2 is the same for every code, so one addmm
    of ||e||^2 - 2 x.e ranks the codes. Float32 throughout: in bf16 nearby codes merge. Ties go
    to the lowest index (``argmin`` returns the first minimum).
    """
    flat, codebook = flat.float(), codebook.float()
    scores = torch.addmm((codebook * codebook).sum(1), flat, codebook.t(), beta=1.0, alpha=-2.0)  # (N, K)
    return scores.argmin(dim=1)


class CodebookQuantizer(BaseQuantizer):
    """Base of the codebook quantizers; subclasses choose how the codebook learns.

    Args:
        dim: D, the width of a code vector.
        codebook_size: K, the number of codes. Default 512, the paper's image setting.
        beta: weight of the commitment term (paper Eq. 3). Default 0.25.
        kmeans_init: initialise the codebook by k-means on the first training batch.
        kmeans_iters: Lloyd iterations of that k-means. Default 10.
        restart_dead_codes: re-seed codes whose windowed usage falls below
            ``dead_code_threshold / K`` with encoder outputs of the current batch.
        dead_code_threshold: usage, relative to uniform use, under which a code counts as dead.
        usage_decay: decay of the moving average that tracks usage over ~1 / (1 - decay) batches.
    """

    learned_by_gradient = True  # False where the codebook moves by EMA and its loss term is dropped

    def __init__(self, dim: int, codebook_size: int = 512, beta: float = 0.25, kmeans_init: bool = False,
                 kmeans_iters: int = 10, restart_dead_codes: bool = False, dead_code_threshold: float = 0.03,
                 usage_decay: float = 0.99) -> None:
        super().__init__()
        _check_int("dim", dim, 1)
        _check_int("codebook_size", codebook_size, 2)
        _check_int("kmeans_iters", kmeans_iters, 1)
        _check_float("beta", beta, 0.0, math.inf)
        _check_float("dead_code_threshold", dead_code_threshold, 0.0, 1.0)
        _check_float("usage_decay", usage_decay, 0.0, 1.0, high_open=True)
        self.dim, self.codebook_size, self.beta = dim, codebook_size, float(beta)
        self.kmeans_init, self.kmeans_iters = bool(kmeans_init), kmeans_iters
        self.restart_dead_codes, self.dead_code_threshold = bool(restart_dead_codes), float(dead_code_threshold)
        self.usage_decay = float(usage_decay)
        # Persistent buffers: a resumed or downloaded model keeps its statistics.
        self.register_buffer("usage", torch.full((codebook_size,), 1.0 / codebook_size))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))
        self._collapse_warned = False

    # hooks for subclasses --------------------------------------------------------------------
    @property
    def codebook(self) -> Tensor:
        """(K, D) code vectors."""
        raise NotImplementedError

    def _set_codes(self, rows: Tensor, values: Tensor) -> None:
        """Overwrite codebook ``rows`` with ``values`` (init and restarts)."""
        raise NotImplementedError

    def _update_codebook(self, flat: Tensor, indices: Tensor, counts: Tensor) -> None:
        """Training-time codebook update other than by gradient (EMA); default none."""

    def _prepare(self, flat: Tensor) -> Tensor:
        """Map latents into the space codes live in (identity; l2-normalised for cosine)."""
        return flat

    # forward ---------------------------------------------------------------------------------
    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize latents.

        Args:
            z: (B, D, h, w) float latents z_e.

        Returns:
            :class:`~discrete_latents.QuantizerOutput`; ``quantized`` carries the straight-through
            gradient z_e + sg[z_q - z_e].
        """
        z = self.check_latents(z)
        b, _, h, w = z.shape
        # Distances, losses and statistics in float32 even under autocast (bf16 merges codes).
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = self._prepare(rearrange(z, "b d h w -> (b h w) d").float())
            if self.training and not bool(self.initialized):
                self._kmeans(flat.detach())
            indices = nearest_code(flat.detach(), self.codebook.detach())
            counts = torch.bincount(indices, minlength=self.codebook_size).float()
            if self.training:
                distributed.all_reduce_sum(counts)  # every rank sees the global histogram
            codes = F.embedding(indices, self.codebook.float())
            # Paper Eq. 3: the codebook term moves codes toward sg[z_e]; the commitment term, weighed
            # by beta, pulls the encoder toward sg[z_q]. Swapping them is a common bug.
            commitment_loss = F.mse_loss(flat, codes.detach())
            if self.learned_by_gradient:
                codebook_loss = F.mse_loss(codes, flat.detach())
            else:
                codebook_loss = torch.zeros((), device=z.device)
            if self.training:
                self._update_codebook(flat.detach(), indices, counts)
                self._track_usage(flat.detach(), counts)
            quantized = flat + (codes - flat).detach()  # straight-through estimator
        return QuantizerOutput(
            quantized=rearrange(quantized, "(b h w) d -> b d h w", b=b, h=h, w=w).to(z.dtype),
            indices=rearrange(indices, "(b h w) -> b h w", b=b, h=h, w=w),
            loss=codebook_loss + self.beta * commitment_loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            perplexity=self.perplexity_of(counts),
        )

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """(B, h, w) ids -> (B, D, h, w) code vectors (exactly ``quantized`` in eval mode)."""
        indices = self.check_indices(indices)
        return rearrange(F.embedding(indices, self.codebook), "b h w d -> b d h w")

    # codebook health -------------------------------------------------------------------------
    def usage_stats(self) -> dict[str, float]:
        """Windowed usage: ``active_codes`` (above the dead threshold) and ``perplexity``."""
        dead_level = max(self.dead_code_threshold, 1e-3) / self.codebook_size
        return {"active_codes": int((self.usage > dead_level).sum()),
                "perplexity": float(self.perplexity_of(self.usage))}

    @torch.no_grad()
    def _track_usage(self, flat: Tensor, counts: Tensor) -> None:
        self.usage.lerp_(counts / counts.sum().clamp_min(1), 1.0 - self.usage_decay)
        if self.restart_dead_codes:
            self._restart(flat)
        elif not self._collapse_warned and float(self.perplexity_of(self.usage)) < 0.05 * self.codebook_size:
            self._collapse_warned = True
            warnings.warn(f"codebook usage collapsed: windowed perplexity {float(self.perplexity_of(self.usage)):.1f}"
                          f" of {self.codebook_size} codes; consider kmeans_init=True or restart_dead_codes=True",
                          RuntimeWarning, stacklevel=4)

    @torch.no_grad()
    def _restart(self, flat: Tensor) -> None:
        dead = torch.nonzero(self.usage < self.dead_code_threshold / self.codebook_size).flatten()
        if dead.numel() == 0:
            return
        # Encoder outputs drawn uniformly from the batch land where the data is dense, so restarted
        # codes split the busiest clusters. Sampled with replacement: the batch may be smaller.
        picks = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
        values = distributed.broadcast(flat[picks].contiguous())  # the same codes on every rank
        self._set_codes(dead, values)
        self.usage[dead] = 1.0 / self.codebook_size  # a grace period before it can die again
        self.restarts += dead.numel()

    @torch.no_grad()
    def _kmeans(self, flat: Tensor) -> None:
        """Lloyd's k-means on ``flat`` (N, D); rank 0's result is broadcast to all ranks."""
        centers = flat[torch.randint(0, flat.shape[0], (self.codebook_size,), device=flat.device)].clone()
        counts = torch.zeros(self.codebook_size, device=flat.device)
        for _ in range(self.kmeans_iters):
            assign = nearest_code(flat, centers)
            counts = torch.bincount(assign, minlength=self.codebook_size).float()
            sums = torch.zeros_like(centers).index_add_(0, assign, flat)
            filled = counts > 0  # an empty cluster keeps its centre
            centers[filled] = self._prepare(sums[filled] / counts[filled, None])
        distributed.broadcast(centers)
        self._set_codes(torch.arange(self.codebook_size, device=flat.device), centers)
        self.initialized.fill_(True)


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")


def _check_float(name: str, value: object, low: float, high: float, high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (low <= value <= high) or (high_open and value == high):  # type: ignore[operator]
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name}: expected a number in {bound}, got {value!r}")
