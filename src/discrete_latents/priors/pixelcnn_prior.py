"""The paper's prior: a gated PixelCNN over the code grid (van den Oord et al. 2016).

"Conditional Image Generation with PixelCNN Decoders", https://arxiv.org/abs/1606.05328. Each
layer has a vertical stack (every row above, all columns within reach) and a horizontal stack
(the current row, columns to the left), joined by a 1x1 link from vertical to horizontal. The
split removes the blind spot of the original masked-convolution PixelCNN, where codes up and to
the right of a position were never seen (paper §2.2, Fig. 1).

Causality comes from padding and kernel shapes, not from masked weights, so every weight is used:

* vertical: kernel (r + 1, k) padded r on top and r left/right; row i sees rows i - r .. i. It
  reaches the horizontal stack shifted one row down, so position (i, j) sees rows < i only;
* horizontal: kernel (1, r + 1) padded r on the left; column j sees columns j - r .. j. In the
  first layer the kernel is (1, r) and shifted one column, so it sees columns j - r .. j - 1
  (mask "A": the current code is never an input to its own prediction).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .._configs import PixelCNNPriorConfig
from .base import PRIORS, BasePrior

FIRST_KERNEL = 7  # the paper's first layer is a 7x7 masked convolution (§2.1, following PixelRNN)


def gate(x: Tensor) -> Tensor:
    """tanh(a) * sigmoid(b) over the two channel halves: the gated unit of paper Eq. 2."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def shift_down(x: Tensor) -> Tensor:
    """(B, C, h, w) -> same shape, row i holding row i - 1 (zeros in row 0)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, : x.shape[2]]


class GatedLayer(nn.Module):
    """One gated layer with vertical and horizontal stacks (paper Fig. 2).

    Args:
        in_channels: width of the incoming stacks (the code embedding for the first layer).
        channels: width p of each stack; the convolutions produce 2p features for the gate.
        kernel_size: odd k; the reach r = k // 2 rows up and columns left/right.
        first: mask "A" (exclude the current code, no residual) instead of mask "B".
        num_classes: > 0 adds a learned per-class bias to both gates (paper Eq. 4, V^T h).
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, first: bool, num_classes: int) -> None:
        super().__init__()
        self.reach, self.first = kernel_size // 2, first
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (self.reach + 1, kernel_size))
        # Mask A needs r >= 1 (k >= 3) so the first layer sees at least one code to its left.
        self.horizontal = nn.Conv2d(in_channels, 2 * channels, (1, self.reach if first else self.reach + 1))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        # Row num_classes is the "no label" id used by label dropout and unconditional sampling.
        self.class_bias = nn.Embedding(num_classes + 1, 2 * channels) if num_classes else None
        if self.class_bias is not None:
            # Small class biases: an untrained conditional model starts close to unconditional.
            nn.init.normal_(self.class_bias.weight, std=0.02)

    def forward(self, v: Tensor, h: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, C_in, h, w) stacks and (B,) labels -> (B, p, h, w) stacks."""
        r, width = self.reach, h.shape[3]
        v_pre = self.vertical(F.pad(v, (r, r, r, 0)))  # row i sees rows i - r .. i
        h_pre = self.horizontal(F.pad(h, (r, 0)))  # column j sees columns j - r .. j
        if self.first:  # kernel width r: w + 1 outputs; output j sees j - r .. j - 1, drop the last
            h_pre = h_pre[..., :width]
        # The vertical stack reaches row i only from row i - 1, else it would see codes to the right.
        h_pre = h_pre + self.v_to_h(shift_down(v_pre))
        if self.class_bias is not None and cond is not None:
            bias = self.class_bias(cond)[:, :, None, None]  # (B, 2p, 1, 1), same at every position
            v_pre, h_pre = v_pre + bias, h_pre + bias
        h_new = self.h_out(gate(h_pre))
        # Residual on the horizontal stack only (paper §2.2); the first layer's input is the code
        # at (i, j) itself, so adding it would leak the target.
        return gate(v_pre), h_new if self.first else h + h_new


@PRIORS.register("pixelcnn")
class PixelCNNPrior(BasePrior):
    """Gated PixelCNN over code grids, the prior used in the VQ-VAE paper (arXiv 1711.00937 §3.3).

    Codes are embedded, passed through a mask-"A" 7x7 gated layer and ``n_layer`` mask-"B" gated
    layers of ``kernel_size``, then two 1x1 convolutions give K logits per position. With
    ``num_classes > 0`` each gated layer adds a learned class bias (id ``num_classes`` = no label).
    Sampling recomputes the network on the rows filled so far at every step (no cache; the
    ``use_cache`` flag of `sample` is accepted and ignored).

    Args:
        config: a `PixelCNNPriorConfig`; default 128 channels and 8 gated
            layers of 3x3 after the first 7x7, over 7x7 grids of 100 codes.

    Examples:
        >>> import torch
        >>> from discrete_latents import PixelCNNPriorConfig
        >>> prior = PixelCNNPrior(PixelCNNPriorConfig(codebook_size=16, grid_size=(4, 4),
        ...                                           hidden_channels=8, n_layer=2))
        >>> prior(torch.randint(0, 16, (2, 4, 4))).logits.shape
        torch.Size([2, 4, 4, 16])
        >>> prior.sample(2).shape
        torch.Size([2, 4, 4])
    """

    config_class = PixelCNNPriorConfig
    config: PixelCNNPriorConfig

    def __init__(self, config: PixelCNNPriorConfig | None = None) -> None:
        super().__init__(config if config is not None else PixelCNNPriorConfig())
        cfg, width = self.config, self.config.hidden_channels
        self.embedding = nn.Embedding(cfg.codebook_size, width)
        self.layers = nn.ModuleList(
            [GatedLayer(width, width, FIRST_KERNEL, first=True, num_classes=cfg.num_classes)]
            + [GatedLayer(width, width, cfg.kernel_size, first=False, num_classes=cfg.num_classes)
               for _ in range(cfg.n_layer)]
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU(),
                                  nn.Conv2d(width, cfg.codebook_size, 1))

    def _stacks(self, indices: Tensor, cond: Tensor | None) -> Tensor:
        """(B, rows, w) codes -> (B, C, rows, w) horizontal stack of the last layer."""
        x = rearrange(self.embedding(indices), "b h w c -> b c h w")
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return h

    def _net(self, indices: Tensor, cond: Tensor | None) -> Tensor:
        """(B, rows, w) codes -> (B, rows, w, K) logits; any number of leading rows works."""
        return rearrange(self.head(self._stacks(indices, cond)), "b k h w -> b h w k")

    def _logits(self, indices: Tensor, cond: Tensor | None) -> Tensor:
        return self._net(indices, cond)

    def _features(self, indices: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        # The head's last 1x1 convolution is a linear layer applied at every position.
        hidden = rearrange(self.head[:-1](self._stacks(indices, cond)), "b c h w -> b h w c")
        last = cast(nn.Conv2d, self.head[-1])
        return hidden, last.weight.flatten(1), last.bias  # (K, C, 1, 1) -> (K, C)

    def _next_logits(self, codes: Tensor, position: int, cond: Tensor | None, state: Any) -> Tensor:
        # No kernel looks down, so rows below the current one cannot change its logits: compute
        # rows 0..row only (same logits, less work).
        row, col = divmod(position, self.grid_size[1])
        rows = rearrange(codes[:, : (row + 1) * self.grid_size[1]], "b (h w) -> b h w", w=self.grid_size[1])
        return self._net(rows, cond)[:, row, col]
