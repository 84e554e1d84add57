"""A bigram prior: each code predicted from the previous code in raster order, and the class.

The smallest autoregressive model of a code grid worth having: a (K + 1, K) table holds the
logits of the next code for each previous code (row K for the start token, which precedes the
first code). A per-position bias, a per-class bias and a small bag-of-earlier-codes term are
added, so it is a usable baseline and a readable template for your own prior.

Registered by the entry point ``bigram`` (see this package's ``pyproject.toml``), never by a
decorator: discrete_latents imports this module on the first ``PRIORS.get("bigram")``, and a
pipeline saved with this prior names it ``"bigram"`` in ``pipeline.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discrete_latents import BasePrior, PriorConfig


@dataclass(frozen=True)
class BigramPriorConfig(PriorConfig):
    """Configuration of :class:`BigramPrior`.

    Inherits ``codebook_size``, ``grid_size``, ``num_classes`` and ``label_dropout`` from
    :class:`discrete_latents.PriorConfig`; like every config it is frozen, type-checked
    and saved as strict JSON.
    """

    # Width of the summary of all earlier codes (the mean of their embeddings). 0 = a pure
    # bigram (Markov) model, which sees only the previous code.
    context_dim: int = 16
    position_bias: bool = True  # a learned (h * w, K) table of per-position logits

    def validate(self) -> None:
        super().validate()
        self._require(self.context_dim >= 0, "context_dim", ">= 0")


class BigramPrior(BasePrior):
    """Next-code logits = table[previous code] + position bias + class bias + context term.

    Position ``p`` of the raster-scanned grid (``p = i * w + j``) sees code ``p - 1`` (the start
    token ``K`` for ``p = 0``) through the bigram table, and the mean embedding of codes
    ``0 .. p - 1`` through a linear map (when ``context_dim > 0``). With ``num_classes > 0`` a
    class row is added; its last row (id ``num_classes``) is the "no label" used by label
    dropout and classifier-free guidance, both handled by :class:`~discrete_latents.BasePrior`.

    Args:
        config: a :class:`BigramPriorConfig`; default 100 codes on a 7x7 grid, unconditional.

    Example:
        >>> import torch
        >>> prior = BigramPrior(BigramPriorConfig(codebook_size=16, grid_size=(4, 4), num_classes=10))
        >>> prior(torch.randint(0, 16, (2, 4, 4)), torch.tensor([3, 7])).logits.shape
        torch.Size([2, 4, 4, 16])
        >>> prior.sample(2, labels=torch.tensor([3, 7]), guidance_scale=2.0).shape
        torch.Size([2, 4, 4])
    """

    api_version: ClassVar[int] = 1  # the plugin contract this class was written against
    config_class = BigramPriorConfig
    config: BigramPriorConfig

    def __init__(self, config: BigramPriorConfig | None = None) -> None:
        super().__init__(config if config is not None else BigramPriorConfig())
        cfg, k = self.config, self.config.codebook_size
        self.transition = nn.Embedding(k + 1, k)  # row = previous code, or K for the start token
        self.position = nn.Embedding(self.num_codes, k) if cfg.position_bias else None
        self.class_bias = nn.Embedding(cfg.num_classes + 1, k) if cfg.num_classes else None
        self.context_embedding = nn.Embedding(k, cfg.context_dim) if cfg.context_dim else None
        self.context_head = nn.Linear(cfg.context_dim, k, bias=False) if cfg.context_dim else None
        for table in (self.transition, self.position, self.class_bias, self.context_embedding):
            if table is not None:
                # Small logits: an untrained prior starts near uniform (and near unconditional).
                nn.init.normal_(table.weight, std=0.02)

    def _flat_logits(self, flat: Tensor, cond: Tensor | None) -> Tensor:
        """(B, L) raster-scanned codes and (B,) labels -> (B, L, K) logits; position p sees codes < p."""
        batch, length = flat.shape
        start = torch.full((batch, 1), self.codebook_size, dtype=torch.long, device=flat.device)
        previous = torch.cat([start, flat[:, :-1]], dim=1)  # (B, L): the start token, then codes shifted by one
        logits = self.transition(previous)  # (B, L, K)
        if self.position is not None:
            logits = logits + self.position.weight  # (L, K) broadcast over the batch
        if self.class_bias is not None and cond is not None:
            logits = logits + self.class_bias(cond)[:, None]  # (B, 1, K)
        if self.context_embedding is not None and self.context_head is not None:
            # Mean embedding of the codes before p: a cumulative sum over codes 0 .. L-2, shifted
            # one step right, so position p never sees code p (nor, exactly, anything after it).
            embedded = self.context_embedding(flat[:, :-1])  # (B, L - 1, C)
            before = F.pad(embedded.cumsum(dim=1), (0, 0, 1, 0))  # (B, L, C), zeros at p = 0
            count = torch.arange(length, device=flat.device).clamp_min(1)  # codes before p (1 at p = 0)
            logits = logits + self.context_head(before / count[:, None])
        return logits

    def _logits(self, indices: Tensor, cond: Tensor | None) -> Tensor:
        flat = rearrange(indices, "b h w -> b (h w)")
        return rearrange(self._flat_logits(flat, cond), "b (h w) k -> b h w k", h=self.grid_size[0])

    def _next_logits(self, codes: Tensor, position: int, cond: Tensor | None, state: Any) -> Tensor:
        # The whole (B, L) buffer is scored and one position read off: codes after `position` are
        # placeholders that cannot reach it, and the arithmetic is exactly the training path's,
        # so sampled codes match forward() bit for bit. L is small (49 for MNIST); no cache needed.
        return self._flat_logits(codes, cond)[:, position]
