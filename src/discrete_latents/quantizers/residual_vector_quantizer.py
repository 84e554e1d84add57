"""Residual vector quantization: several codebooks applied in turn, their codes summed."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .._checks import check_choice, check_float, check_int
from .._outputs import QuantizerOutput
from .base import GRADIENT_ESTIMATORS, QUANTIZERS, BaseQuantizer
from .codebook import CodebookQuantizer


@QUANTIZERS.register("rvq")
class ResidualVectorQuantizer(BaseQuantizer):
    """Residual VQ (Zeghidour et al. 2021, SoundStream, arXiv 2107.03312, Algorithm 1).

    Stage 1 quantizes z_e; stage q quantizes what the previous stages left over,
    r_q = z_e - (e_1 + ... + e_{q-1}); the output is e_1 + ... + e_Q with a straight-through
    gradient to z_e. Each stage is a full codebook quantizer (by default the paper's ``"vq"``)
    with its own codebook-health state; each stage's losses are taken on its own residual and
    summed, so ``loss = codebook_loss + beta * commitment_loss`` still holds. Indices carry a
    trailing codebook axis, (B, h, w, Q), so a prior over one (B, h, w) grid cannot model them.

    Args:
        dim: D, the width of a code vector.
        num_quantizers: Q, the number of stages. Default 4.
        codebook_size: K of every stage. Default 512.
        beta: commitment weight of every stage. Default 0.25.
        stage: registry name of the stage quantizer; a codebook quantizer that works in the
            input space (``"vq"`` or ``"vq_ema"``; not ``"vq_cosine"``, whose unit-norm codes
            cannot add up to a residual). Default ``"vq"``.
        gradient: ``"ste"`` (default) or ``"rotation"``: how the gradient crosses from the
            summed codes to z_e (see `CodebookQuantizer`).
        **stage_kwargs: passed to every stage, e.g. ``kmeans_init=True``,
            ``restart_dead_codes=True``, or ``decay`` for ``"vq_ema"``.

    Examples:
        >>> import torch
        >>> rvq = ResidualVectorQuantizer(dim=8, num_quantizers=3, codebook_size=16)
        >>> out = rvq(torch.randn(2, 8, 4, 4))
        >>> out.indices.shape, rvq.index_shape
        (torch.Size([2, 4, 4, 3]), (3,))
    """

    def __init__(self, dim: int, num_quantizers: int = 4, codebook_size: int = 512, beta: float = 0.25,
                 stage: str = "vq", gradient: str = "ste", **stage_kwargs: Any) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, 1)
        self.num_quantizers = check_int("num_quantizers", num_quantizers, 1)
        self.codebook_size = check_int("codebook_size", codebook_size, 2)
        self.beta = check_float("beta", beta, 0.0, float("inf"))
        self.index_shape = (num_quantizers,)  # per instance: Q is a constructor argument
        self.stage = stage
        self.gradient = check_choice("gradient", gradient, GRADIENT_ESTIMATORS)
        try:
            stage_cls = QUANTIZERS.get(stage)
        except LookupError as err:
            raise ValueError(f"stage: {err}") from None
        # A stage must quantize in the input space: residuals are differences of input vectors.
        if not issubclass(stage_cls, CodebookQuantizer) or stage_cls._prepare is not CodebookQuantizer._prepare:
            raise ValueError(f"stage: {stage!r} cannot be a residual stage; use a codebook quantizer working in"
                             " the input space, such as 'vq' or 'vq_ema'")
        self.stages = nn.ModuleList(
            stage_cls(dim=dim, codebook_size=codebook_size, beta=beta, **stage_kwargs) for _ in range(num_quantizers)
        )

    def _stage_list(self) -> list[CodebookQuantizer]:
        return cast(list[CodebookQuantizer], list(self.stages))

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize latents with Q codebooks in turn.

        Args:
            z: (B, D, h, w) float latents.

        Returns:
            `QuantizerOutput` with ``quantized`` (B, D, h, w), the sum of
            the stage codes; ``indices`` (B, h, w, Q); losses summed over stages; ``perplexity``
            the mean of the stages' batch perplexities.
        """
        z = self.check_latents(z)
        b, _, h, w = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = rearrange(z, "b d h w -> (b h w) d").float()
            residual, steps = flat, []
            for stage in self._stage_list():
                step = stage.quantize_flat(residual)
                steps.append(step)
                residual = residual - step.codes.detach()  # the next stage sees what is left over
            quantized = GRADIENT_ESTIMATORS[self.gradient](flat, _sum_codes([s.codes for s in steps]))
            codebook_loss = torch.stack([s.codebook_loss for s in steps]).sum()
            commitment_loss = torch.stack([s.commitment_loss for s in steps]).sum()
            perplexity = torch.stack([self.perplexity_of(s.counts) for s in steps]).mean()
            indices = torch.stack([s.indices for s in steps], dim=-1)  # (b*h*w, Q)
        return QuantizerOutput(
            quantized=rearrange(quantized, "(b h w) d -> b d h w", b=b, h=h, w=w).to(z.dtype),
            indices=rearrange(indices, "(b h w) q -> b h w q", b=b, h=h, w=w),
            loss=codebook_loss + self.beta * commitment_loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            perplexity=perplexity,
        )

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """(B, h, w, Q) int ids -> (B, D, h, w), the sum of the stage codes (exactly ``quantized`` in eval).

        Raises:
            ValueError: wrong shape, or an id outside [0, K).
        """
        indices = self.check_indices(indices)
        codes = [F.embedding(indices[..., q], stage.codebook.float()) for q, stage in enumerate(self._stage_list())]
        return rearrange(_sum_codes(codes), "b h w d -> b d h w")

    def usage_stats(self) -> dict[str, float]:
        """Windowed usage of each stage (``stage{q}_active_codes``, ``stage{q}_perplexity``), their
        means (``active_codes``, ``perplexity``) and the total ``restarts``."""
        per_stage = [stage.usage_stats() for stage in self._stage_list()]
        stats = {"active_codes": sum(s["active_codes"] for s in per_stage) / len(per_stage),
                 "perplexity": sum(s["perplexity"] for s in per_stage) / len(per_stage),
                 "restarts": sum(s["restarts"] for s in per_stage)}
        for q, s in enumerate(per_stage):
            stats[f"stage{q}_active_codes"] = s["active_codes"]
            stats[f"stage{q}_perplexity"] = s["perplexity"]
        return stats


def _sum_codes(codes: list[Tensor]) -> Tensor:
    # One fixed order of additions, shared by forward and indices_to_codes, so both agree bit-for-bit.
    total = codes[0]
    for c in codes[1:]:
        total = total + c
    return total
