"""The transformer pieces the causal and the masked prior share (nanoGPT-shaped, pre-norm)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._configs import TransformerPriorConfig


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


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``causal`` lets each position see only itself and earlier ones."""

    def __init__(self, config: TransformerPriorConfig, layer: int, causal: bool = True) -> None:
        super().__init__()
        self.layer, self.n_head, self.dropout, self.causal = layer, config.n_head, config.dropout, causal
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
            y = attention(q, qkv[1], qkv[2], is_causal=self.causal, dropout_p=dropout)
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
    def __init__(self, config: TransformerPriorConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: TransformerPriorConfig, layer: int, causal: bool = True) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = SelfAttention(config, layer, causal)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


def init_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by depth."""

    def init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    model.apply(init)
    for name, param in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))
