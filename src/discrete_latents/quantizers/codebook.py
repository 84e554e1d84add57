"""Shared machinery of the quantizers with an explicit (K, D) codebook.

Nearest-code search, the paper's losses and the codebook-health options live here once:
data-driven initialisation (k-means on the first training batch of every rank), usage tracked
over a window of batches, and restart of codes whose windowed usage falls below a threshold. The
options are off by default, so a bare quantizer is the paper's.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from .. import _distributed as distributed
from .._checks import check_bool, check_choice, check_float, check_int
from .._outputs import QuantizerOutput
from .base import GRADIENT_ESTIMATORS, BaseQuantizer

# Scores computed per block of rows: 2**22 float32 (16 MiB) at most. One (N, K) matrix would be
# 256 MiB for N = K = 8192; blocks stay in the allocator's cache and cost no page faults.
_SCORE_BLOCK = 1 << 22


def nearest_code(flat: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code (squared Euclidean) for each row of ``flat`` (N, D); (N,) int64.

    ||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2; ||x||^2 is the same for every code, so one addmm
    of ||e||^2 - 2 x.e ranks the codes. Float32 throughout: in bf16 nearby codes merge and fp16
    norms overflow. Ties go to the lowest index (``argmin`` returns the first minimum).
    """
    flat, codebook = flat.float(), codebook.float()
    sq_norms = (codebook * codebook).sum(1)  # (K,)
    rows = max(1, _SCORE_BLOCK // codebook.shape[0])
    if flat.shape[0] <= rows:
        return torch.addmm(sq_norms, flat, codebook.t(), alpha=-2.0).argmin(dim=1)
    return torch.cat([torch.addmm(sq_norms, part, codebook.t(), alpha=-2.0).argmin(dim=1)
                      for part in flat.split(rows)])


class FlatQuantization(NamedTuple):
    """One codebook applied to (N, D) rows; what residual quantization chains.

    Attributes:
        inputs: (N, D) the rows in code space (l2-normalised for the cosine quantizer), with grad.
        codes: (N, D) float32 nearest codes (gradient to the codebook where it is learned by loss).
        indices: (N,) int64 code ids.
        counts: (K,) float32 histogram of ``indices``, summed over ranks in training.
        codebook_loss: unweighted MSE(codes, sg[inputs]); zero where the codebook is not learned by loss.
        commitment_loss: unweighted MSE(inputs, sg[codes]).
    """

    inputs: Tensor
    codes: Tensor
    indices: Tensor
    counts: Tensor
    codebook_loss: Tensor
    commitment_loss: Tensor


class CodebookQuantizer(BaseQuantizer):
    """Base of the codebook quantizers; subclasses choose how the codebook learns.

    Args:
        dim: D, the width of a code vector.
        codebook_size: K, the number of codes. Default 512, the paper's image setting.
        beta: weight of the commitment term (paper Eq. 3). Default 0.25.
        kmeans_init: initialise the codebook by k-means on the first training batch (pooled over
            all DDP ranks). Default False.
        kmeans_iters: Lloyd iterations of that k-means. Default 10.
        restart_dead_codes: re-seed codes whose windowed usage falls below
            ``dead_code_threshold / K`` with encoder outputs of the current batch. Default False.
        dead_code_threshold: usage, relative to uniform use, under which a code counts as dead.
            Default 0.03.
        usage_decay: decay of the moving average that tracks usage over ~1 / (1 - decay)
            batches. Default 0.99 (a window of about 100 batches).
        gradient: how the encoder's gradient crosses the quantizer: ``"ste"``, the paper's
            straight-through copy (default), or ``"rotation"``, the rotation trick
            (`rotation_trick`).
    """

    learned_by_gradient = True  # False where the codebook moves by EMA and its loss term is dropped
    usage: Tensor  # (K,) windowed share of assignments per code
    initialized: Tensor  # () bool, False until k-means has run
    restarts: Tensor  # () int64, codes re-seeded so far

    def __init__(self, dim: int, codebook_size: int = 512, beta: float = 0.25, *, kmeans_init: bool = False,
                 kmeans_iters: int = 10, restart_dead_codes: bool = False, dead_code_threshold: float = 0.03,
                 usage_decay: float = 0.99, gradient: str = "ste") -> None:
        super().__init__()
        self.dim = check_int("dim", dim, 1)
        self.codebook_size = check_int("codebook_size", codebook_size, 2)
        self.beta = check_float("beta", beta, 0.0, float("inf"))
        self.kmeans_init = check_bool("kmeans_init", kmeans_init)
        self.kmeans_iters = check_int("kmeans_iters", kmeans_iters, 1)
        self.restart_dead_codes = check_bool("restart_dead_codes", restart_dead_codes)
        self.dead_code_threshold = check_float("dead_code_threshold", dead_code_threshold, 0.0, 1.0)
        self.usage_decay = check_float("usage_decay", usage_decay, 0.0, 1.0, high_open=True)
        self.gradient = check_choice("gradient", gradient, GRADIENT_ESTIMATORS)
        # Persistent buffers: a resumed or downloaded model keeps its statistics. Usage starts
        # uniform, which gives every code a full window before it can count as dead.
        self.register_buffer("usage", torch.full((codebook_size,), 1.0 / codebook_size))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))
        self._init_checked = not kmeans_init  # caches `initialized` so steps need not read it
        self._collapse_warned = False
        self._make_codebook()

    # hooks for subclasses --------------------------------------------------------------------
    def _make_codebook(self) -> None:
        """Create the (K, D) codebook (a parameter or buffers); called once by ``__init__``."""
        raise NotImplementedError

    @property
    def codebook(self) -> Tensor:
        """(K, D) code vectors, as the lookup sees them."""
        raise NotImplementedError

    def _set_codes(self, rows: Tensor, values: Tensor) -> None:
        """Overwrite codebook ``rows`` with ``values`` (init and restarts), outside autograd."""
        raise NotImplementedError

    def _update_codebook(self, inputs: Tensor, indices: Tensor, counts: Tensor) -> None:
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
            `QuantizerOutput` with ``quantized`` (B, D, h, w) in the
            dtype of ``z``, carrying the straight-through gradient, and ``indices`` (B, h, w).

        Examples:
            >>> import torch
            >>> from discrete_latents.quantizers import VectorQuantizer
            >>> out = VectorQuantizer(dim=8, codebook_size=16)(torch.randn(2, 8, 4, 4))
            >>> out.indices.shape, out.loss.ndim
            (torch.Size([2, 4, 4]), 0)
        """
        z = self.check_latents(z)
        b, _, h, w = z.shape
        # Distances, losses and statistics in float32 even under autocast (bf16 merges codes).
        with torch.autocast(device_type=z.device.type, enabled=False):
            step = self.quantize_flat(rearrange(z, "b d h w -> (b h w) d").float())
            quantized = GRADIENT_ESTIMATORS[self.gradient](step.inputs, step.codes)
        return QuantizerOutput(
            quantized=rearrange(quantized, "(b h w) d -> b d h w", b=b, h=h, w=w).to(z.dtype),
            indices=rearrange(step.indices, "(b h w) -> b h w", b=b, h=h, w=w),
            loss=step.codebook_loss + self.beta * step.commitment_loss,
            codebook_loss=step.codebook_loss,
            commitment_loss=step.commitment_loss,
            perplexity=self.perplexity_of(step.counts),
        )

    def quantize_flat(self, flat: Tensor) -> FlatQuantization:
        """Quantize (N, D) float32 rows; in training also update statistics, EMA and restarts.

        Public for composite quantizers (residual VQ chains it on residuals); no input checks.
        """
        inputs = self._prepare(flat)
        if self.training and not self._init_checked:
            if not bool(self.initialized):
                self._kmeans(inputs.detach())
            self._init_checked = True
        codebook = self.codebook
        indices = nearest_code(inputs.detach(), codebook.detach())
        counts = torch.bincount(indices, minlength=self.codebook_size).float()
        if self.training:
            distributed.all_reduce_sum(counts)  # every rank sees the global histogram (VQ-17)
        codes = F.embedding(indices, codebook.float())
        # Paper Eq. 3: the codebook term moves codes toward sg[z_e]; the commitment term, weighed
        # by beta in `loss`, pulls the encoder toward sg[z_q]. Swapping them is a common bug.
        commitment_loss = F.mse_loss(inputs, codes.detach())
        if self.learned_by_gradient:
            codebook_loss = F.mse_loss(codes, inputs.detach())
        else:
            codebook_loss = commitment_loss.new_zeros(())
        if self.training:
            self._update_codebook(inputs.detach(), indices, counts)
            self._track_usage(inputs.detach(), counts)
        return FlatQuantization(inputs, codes, indices, counts, codebook_loss, commitment_loss)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """(B, h, w) int ids -> (B, D, h, w) code vectors (exactly ``quantized`` in eval mode).

        Raises:
            ValueError: wrong shape, or an id outside [0, K).
        """
        indices = self.check_indices(indices)
        return rearrange(F.embedding(indices, self.codebook), "b h w d -> b d h w")

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._init_checked = not self.kmeans_init  # a loaded `initialized` is read on the next training step

    # codebook health -------------------------------------------------------------------------
    def usage_stats(self) -> dict[str, float]:
        """Usage over the last ~1 / (1 - usage_decay) training batches.

        Returns:
            ``active_codes``: codes whose windowed usage is above the dead threshold (at least
            1e-3 of uniform use); ``perplexity``: exp(entropy) of the windowed usage;
            ``restarts``: codes re-seeded so far.
        """
        dead_level = max(self.dead_code_threshold, 1e-3) / self.codebook_size
        return {"active_codes": float((self.usage > dead_level).sum()),
                "perplexity": float(self.perplexity_of(self.usage)),
                "restarts": float(self.restarts)}

    @torch.no_grad()
    def _track_usage(self, inputs: Tensor, counts: Tensor) -> None:
        self.usage.lerp_(counts / counts.sum().clamp_min(1), 1.0 - self.usage_decay)
        if self.restart_dead_codes:
            self._restart(inputs)  # revives what would collapse; its count is in usage_stats()
        elif not self._collapse_warned:
            # Collapse: the windowed perplexity under 5% of K (and under 1.5 codes for small K).
            perplexity = float(self.perplexity_of(self.usage))
            if perplexity < max(0.05 * self.codebook_size, 1.5):
                self._collapse_warned = True  # once per module, not once per step
                warnings.warn(f"codebook usage collapsed: windowed perplexity {perplexity:.2f} of {self.codebook_size}"
                              " codes; consider kmeans_init=True or restart_dead_codes=True", RuntimeWarning,
                              stacklevel=6)  # the caller of the module

    @torch.no_grad()
    def _restart(self, inputs: Tensor) -> None:
        # `usage` is the same on every rank (built from all-reduced counts), so every rank finds
        # the same dead codes and takes part in the same broadcast: no rank waits alone.
        dead = torch.nonzero(self.usage < self.dead_code_threshold / self.codebook_size).flatten()
        n_dead = dead.numel()
        if n_dead == 0:
            return
        # Encoder outputs drawn uniformly from the batch land where the data is dense, so restarted
        # codes split the busiest clusters. Without replacement where the batch is large enough.
        n = inputs.shape[0]
        picks = (torch.randperm(n, device=inputs.device)[:n_dead] if n >= n_dead
                 else torch.randint(0, n, (n_dead,), device=inputs.device))
        values = distributed.broadcast(inputs[picks].contiguous())  # rank 0's picks on every rank
        self._set_codes(dead, values)
        self.usage[dead] = 1.0 / self.codebook_size  # a grace window before it can die again
        self.restarts += n_dead

    @torch.no_grad()
    def _kmeans(self, inputs: Tensor) -> None:
        """Lloyd's k-means on ``inputs`` (N, D), pooled over ranks; identical result on every rank."""
        n, k = inputs.shape[0], self.codebook_size
        picks = torch.randperm(n, device=inputs.device)[:k] if n >= k else torch.randint(0, n, (k,),
                                                                                          device=inputs.device)
        centers = distributed.broadcast(inputs[picks].contiguous())  # rank 0's seeds
        for _ in range(self.kmeans_iters):
            assign = nearest_code(inputs, centers)
            counts = torch.bincount(assign, minlength=k).float()
            sums = torch.zeros_like(centers).index_add_(0, assign, inputs)
            distributed.all_reduce_sum(counts)  # each rank's batch counts: k-means on the pooled data
            distributed.all_reduce_sum(sums)
            filled = counts > 0  # an empty cluster keeps its centre (restarts can move it later)
            centers[filled] = self._prepare(sums[filled] / counts[filled, None])
        distributed.broadcast(centers)  # bit-identical on every rank whatever the reduction order
        self._set_codes(torch.arange(k, device=inputs.device), centers)
        self.initialized.fill_(True)
