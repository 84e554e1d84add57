"""The seed's prior: a decoder-only transformer over raster-scanned codes (nanoGPT-shaped)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .._configs import CausalPriorConfig
from .base import PRIORS, BasePrior


class KVCache:
    """Keys and values of every layer for positions already seen, preallocated to full length.

    One tensor (n_layer, 2, B, H, L, hd) holds keys and values, so a step writes both with one copy.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, length: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.kv = torch.empty((n_layer, 2, batch, n_head, length, head_dim), device=device, dtype=dtype)
        self.length = 0  # positions filled so far (advanced once all layers have written)

    def extend(self, layer: int, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Store (2, B, H, T, hd) new keys/values of ``layer``; return all keys and values up to them."""
        end = self.length + kv.shape[3]
        self.kv[layer, :, :, :, self.length:end] = kv
        return self.kv[layer, 0, :, :, :end], self.kv[layer, 1, :, :, :end]  # (B, H, end, hd) each


def attention(q: Tensor, k: Tensor, v: Tensor, **kwargs: Any) -> Tensor:
    """``F.scaled_dot_product_attention``, in float32 under CPU autocast.

    On CPU, torch's bfloat16 flash-attention backward is about 12x slower than its float32 one
    for the prior's short sequences and 16-wide heads (measured with torch 2.13 on a Sapphire
    Rapids Xeon), so under CPU autocast only the attention itself runs in float32 while the
    linear layers keep bf16. Elsewhere this is plain SDPA.
    """
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: CausalPriorConfig, layer: int) -> None:
        super().__init__()
        self.layer, self.n_head, self.dropout = layer, config.n_head, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """(B, T, C) -> (B, T, C); with a cache, x holds only the positions after the cached ones."""
        batch, steps, width = x.shape
        # Plain view/permute instead of einops here: this runs once per layer per sampled code,
        # where per-call overhead is most of the cost at small batch.
        qkv = self.c_attn(x).view(batch, steps, 3, self.n_head, width // self.n_head)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, H, T, hd)
        q = qkv[0]
        dropout = self.dropout if self.training else 0.0
        if cache is None:
            y = attention(q, qkv[1], qkv[2], is_causal=True, dropout_p=dropout)
        else:
            start = cache.length
            k, v = cache.extend(self.layer, qkv[1:])
            if steps == 1:  # the newest position may see every cached one: no mask at all
                y = attention(q, k, v)
            else:
                # The query block is shorter than the keys, so is_causal=True would align the
                # triangle to the wrong corner; query i sits at absolute position start + i.
                keys = torch.arange(start + steps, device=x.device)
                queries = torch.arange(start, start + steps, device=x.device)
                y = attention(q, k, v, attn_mask=keys[None, :] <= queries[:, None])
        y = y.transpose(1, 2).reshape(batch, steps, width)  # (B, H, T, hd) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: CausalPriorConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: CausalPriorConfig, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


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
        self.apply(self._init_weights)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: residual projections scaled by depth
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

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
