"""The seed's prior: a decoder-only transformer over raster-scanned codes (nanoGPT-shaped)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .._configs import CausalPriorConfig
from ._transformer import Block, KVCache, init_weights
from .base import PRIORS, BasePrior


@PRIORS.register("causal_transformer")
class CausalPrior(BasePrior):
    """A GPT over the raster-scanned code grid; the seed's prior with the ``mnist`` preset.

    The sequence is ``[class token] [start token K] c_0 ... c_{L-2}`` and position ``i`` of the
    codes predicts ``c_i``; the class token is present only when ``num_classes > 0`` (its id
    ``num_classes`` means "no label"). The output head is tied to the token embedding.

    Args:
        config: a `CausalPriorConfig`; default the seed's 128 wide,
            8 heads, 3 blocks over 7x7 grids of 100 codes.

    Examples:
        >>> import torch
        >>> prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(3, 3), n_layer=1,
        ...                                       n_head=2, n_embd=16))
        >>> out = prior(torch.randint(0, 16, (2, 3, 3)))
        >>> out.logits.shape
        torch.Size([2, 3, 3, 16])
    """

    config_class = CausalPriorConfig
    config: CausalPriorConfig

    def __init__(self, config: CausalPriorConfig | None = None) -> None:
        super().__init__(config if config is not None else CausalPriorConfig())
        cfg = self.config
        self.prefix = 2 if cfg.num_classes else 1  # [class token] + start token
        self.wte = nn.Embedding(cfg.codebook_size + 1, cfg.n_embd)  # codes + start token
        self.wpe = nn.Embedding(self.num_codes - 1 + self.prefix, cfg.n_embd)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, cfg.n_embd) if cfg.num_classes else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        init_weights(self, cfg.n_layer)

    def _embed(self, tokens: Tensor, cond: Tensor | None, start: int) -> Tensor:
        """Embed (B, T) token ids at absolute positions start..start+T-1 (class token at 0)."""
        x = self.wte(tokens)
        if cond is not None and start == 0:
            x = torch.cat([self.class_emb(cond)[:, None], x], dim=1)  # type: ignore[misc]
        return self.drop(x + self.wpe.weight[start: start + x.shape[1]])  # rows of positions start.. (T, C)

    def _hidden(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """(B, T, C) embeddings -> (B, T, C) states before the output layer."""
        for block in self.blocks:
            x = block(x, cache)
        if cache is not None:
            cache.length += x.shape[1]
        return self.ln_f(x)

    def _run(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        # Tied head: logits against the code embeddings only (the start token is never predicted).
        return F.linear(self._hidden(x, cache), self.wte.weight[: self.codebook_size])

    def _tokens(self, codes: Tensor, upto: int) -> Tensor:
        """Start token followed by the first ``upto`` codes of (B, L): (B, upto + 1)."""
        start = torch.full((codes.shape[0], 1), self.codebook_size, dtype=torch.long, device=codes.device)
        return torch.cat([start, codes[:, :upto]], dim=1)

    def _features(self, indices: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        flat = rearrange(indices, "b h w -> b (h w)")
        hidden = self._hidden(self._embed(self._tokens(flat, self.num_codes - 1), cond, 0))
        hidden = hidden[:, self.prefix - 1:]  # (B, L, C): outputs at the start token onward
        hidden = rearrange(hidden, "b (h w) c -> b h w c", h=self.grid_size[0])
        return hidden, self.wte.weight[: self.codebook_size], None  # the tied head, no bias

    def _logits(self, indices: Tensor, cond: Tensor | None) -> Tensor:
        hidden, weight, _ = self._features(indices, cond)
        return F.linear(hidden, weight)  # (B, h, w, K), the tied head

    def _start_sampling(self, batch: int, cond: Tensor | None, use_cache: bool) -> Any:
        if not use_cache:
            return None
        param = self.wte.weight
        return KVCache(self.config.n_layer, batch, self.config.n_head, self.num_codes - 1 + self.prefix,
                       self.config.n_embd // self.config.n_head, param.device, param.dtype)

    def _next_logits(self, codes: Tensor, position: int, cond: Tensor | None, state: Any) -> Tensor:
        if state is None:  # recompute the whole prefix
            return self._run(self._embed(self._tokens(codes, position), cond, 0))[:, -1]
        if position == 0:  # the prefix: [class token] start token
            return self._run(self._embed(self._tokens(codes, 0), cond, 0), state)[:, -1]
        step = codes[:, position - 1: position]  # only the newest code is new
        return self._run(self._embed(step, None, state.length), state)[:, -1]
