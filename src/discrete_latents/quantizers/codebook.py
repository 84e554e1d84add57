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
from .._checks import check_bool, check_choice, check_finite, check_float, check_int
from .._outputs import QuantizerOutput
from .base import GRADIENT_ESTIMATORS, BaseQuantizer, is_compiling

# Scores computed per tile of rows x codes: 2**22 float32 (16 MiB) at most. One (N, K) matrix
# would be 4 GiB for N = 16,384, K = 65,536; tiles stay in the allocator's cache.
_SCORE_BLOCK = 1 << 22
# Codes per tile: near-square tiles run the matrix product faster than thin ones (1.7x measured
# for 2048 x 2048 against 64 x 65,536 rows x codes on a 2-core EPYC).
_CODE_BLOCK = 2048


def nearest_code(flat: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code (squared Euclidean) for each row of ``flat`` (N, D); (N,) int64.

    ||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2; ||x||^2 is the same for every code, so one addmm
    of ||e||^2 - 2 x.e ranks the codes. Float32 throughout: in bf16 nearby codes merge and fp16
    norms overflow. Ties go to the lowest index (``argmin`` returns the first minimum, and a later
    tile of codes replaces the running best only when strictly nearer).
    """
    flat, codebook = flat.float(), codebook.float()
    sq_norms = (codebook * codebook).sum(1)  # (K,)
    n, k = flat.shape[0], codebook.shape[0]
    cols = min(k, _CODE_BLOCK)
    rows = max(1, _SCORE_BLOCK // cols)
    if n <= rows and k <= cols:
        return torch.addmm(sq_norms, flat, codebook.t(), alpha=-2.0).argmin(dim=1)
    # One score buffer for every tile, and the ids straight into one (N,) tensor. A fresh 16 MiB
    # tile per step, freed among the small per-tile results, grew the C heap by about a tile each
    # time (+4 GiB for N = 16,384, K = 65,536, measured).
    buffer = torch.empty(rows * cols, device=flat.device)
    indices = torch.empty(n, dtype=torch.long, device=flat.device)
    for start in range(0, n, rows):
        part = flat[start:start + rows]
        best = torch.full((part.shape[0],), float("inf"), device=flat.device)
        best_index = torch.zeros(part.shape[0], dtype=torch.long, device=flat.device)
        for first in range(0, k, cols):
            codes = codebook[first:first + cols]
            scores = buffer[: part.shape[0] * codes.shape[0]].view(part.shape[0], codes.shape[0])
            torch.addmm(sq_norms[first:first + cols], part, codes.t(), alpha=-2.0, out=scores)
            value, index = scores.min(dim=1)
            nearer = value < best  # strictly: an equal score in a later tile loses the tie
            best = torch.where(nearer, value, best)
            best_index = torch.where(nearer, index + first, best_index)
        indices[start:start + rows] = best_index
    return indices


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
        self._steps = 0  # training steps seen, for the collapse check once per usage window

    # hooks for subclasses --------------------------------------------------------------------
    def _make_codebook(self) -> None:
        """Create the (K, D) codebook (a parameter or buffers); called once by ``__init__``."""
        raise NotImplementedError

    @property
    def codebook(self) -> Tensor:
        """(K, D) code vectors, as the lookup sees them."""
        raise NotImplementedError

    def _set_codes(self, mask: Tensor, values: Tensor) -> None:
        """Overwrite the codes where ``mask`` (K,) bool is set with the rows of ``values`` (K, D),
        outside autograd (k-means and restarts). Masks rather than row lists keep shapes fixed,
        so restarts need not read the number of dead codes back to the host."""
        raise NotImplementedError

    def _update_codebook(self, inputs: Tensor, indices: Tensor, counts: Tensor, finite: Tensor) -> None:
        """Training-time codebook update other than by gradient (EMA); default none. ``finite``
        () bool is False for a batch holding NaN or inf on some rank: then nothing may change."""

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
            if not bool(self.initialized):  # one read, on the first training step only
                self._kmeans(inputs.detach())
            self._init_checked = True
        codebook = self.codebook
        indices = nearest_code(inputs.detach(), codebook.detach())
        counts = self.histogram(indices, self.codebook_size)
        finite = counts.new_ones((), dtype=torch.bool)
        if self.training:
            # Rows holding NaN or inf (none on CPU, where forward has raised already) travel with
            # the histogram: one all-reduce, and every rank knows whether to skip this batch.
            bad = (~torch.isfinite(inputs.detach())).any(1).sum(dtype=torch.float32)
            summed = distributed.all_reduce_sum(torch.cat([counts, bad[None]]))  # global histogram (VQ-17)
            counts, finite = summed[:-1], summed[-1] == 0
        codes = F.embedding(indices, codebook.float())
        # Paper Eq. 3: the codebook term moves codes toward sg[z_e]; the commitment term, weighed
        # by beta in `loss`, pulls the encoder toward sg[z_q]. Swapping them is a common bug.
        commitment_loss = F.mse_loss(inputs, codes.detach())
        if self.learned_by_gradient:
            codebook_loss = F.mse_loss(codes, inputs.detach())
        else:
            codebook_loss = commitment_loss.new_zeros(())
        if self.training:
            self._update_codebook(inputs.detach(), indices, counts, finite)
            self._track_usage(inputs.detach(), counts, finite)
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
    def _track_usage(self, inputs: Tensor, counts: Tensor, finite: Tensor) -> None:
        rate = (1.0 - self.usage_decay) * finite.float()  # 0 for a non-finite batch: no change
        self.usage.lerp_(counts / counts.sum().clamp_min(1), rate)
        if self.restart_dead_codes:
            self._restart(inputs, finite)  # revives what would collapse; its count is in usage_stats()
        elif not self._collapse_warned and not is_compiling():
            self._steps += 1
            # Reading the perplexity back stalls an accelerator, so look once per usage window,
            # not every step. Collapse: under 5% of K (and under 1.5 codes for small K).
            if self._steps % max(1, round(1.0 / (1.0 - self.usage_decay))) == 0:
                perplexity = float(self.perplexity_of(self.usage))
                if perplexity < max(0.05 * self.codebook_size, 1.5):
                    self._collapse_warned = True  # once per module, not once per window
                    warnings.warn(f"codebook usage collapsed: windowed perplexity {perplexity:.2f} of"
                                  f" {self.codebook_size} codes; consider kmeans_init=True or"
                                  " restart_dead_codes=True", RuntimeWarning, stacklevel=6)  # the caller of the module

    @torch.no_grad()
    def _restart(self, inputs: Tensor, finite: Tensor) -> None:
        # `usage` is the same on every rank (built from all-reduced counts), so every rank finds
        # the same dead codes; all shapes are fixed, so no rank waits alone and nothing is read
        # back to the host.
        k, n = self.codebook_size, inputs.shape[0]
        dead = (self.usage < self.dead_code_threshold / k) & finite  # (K,)
        # Encoder outputs drawn from the batch land where the data is dense, so restarted codes
        # split the busiest clusters. The j-th dead code takes the j-th row of a random order of
        # the batch: distinct rows while there are enough, then round again.
        slot = (torch.cumsum(dead, 0) - 1).clamp_min(0) % n  # (K,)
        order = torch.randperm(n, device=inputs.device)
        values = distributed.broadcast(inputs[order[slot]].contiguous())  # (K, D), rank 0's rows on every rank
        self._set_codes(dead, values)
        self.usage.copy_(torch.where(dead, 1.0 / k, self.usage))  # a grace window before it can die again
        self.restarts += dead.sum()

    @torch.no_grad()
    def _kmeans(self, inputs: Tensor) -> None:
        """Lloyd's k-means on ``inputs`` (N, D), pooled over ranks; identical result on every rank.

        Runs once, on the first training step, in the memory of the blocked search (no (N, K)
        matrix; no subsampling is needed). Every row seeds a code while codes remain (then rows
        drawn again at random), and the loop stops when no row changes its cluster: with no more
        rows than codes each row is its own centre, the k-means optimum, and two searches end it.
        """
        check_finite(inputs, "latents")  # the forward pass leaves this to the device elsewhere
        n, k = inputs.shape[0], self.codebook_size
        order = torch.randperm(n, device=inputs.device)
        picks = order[:k] if n >= k else torch.cat([order, torch.randint(0, n, (k - n,), device=inputs.device)])
        centers = distributed.broadcast(inputs[picks].contiguous())  # rank 0's seeds
        previous: Tensor | None = None
        for _ in range(self.kmeans_iters):
            assign = nearest_code(inputs, centers)
            if previous is not None:
                changed = distributed.all_reduce_sum((assign != previous).sum(dtype=torch.float32))
                if float(changed) == 0:  # the same total on every rank, so every rank stops together
                    break
            previous = assign
            counts = self.histogram(assign, k)
            sums = torch.zeros_like(centers).index_add_(0, assign, inputs)
            distributed.all_reduce_sum(counts)  # each rank's batch counts: k-means on the pooled data
            distributed.all_reduce_sum(sums)
            means = self._prepare(sums / counts.clamp_min(1)[:, None])
            # An empty cluster keeps its centre (restarts can move it later). Rank 0's centres on
            # every rank, bit-identical whatever the reduction order.
            centers = distributed.broadcast(torch.where(counts[:, None] > 0, means, centers))
        self._set_codes(torch.ones(k, dtype=torch.bool, device=inputs.device), centers)
        self.initialized.fill_(True)
