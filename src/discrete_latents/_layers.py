"""Building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection; GroupNorm after the addition, then SiLU.

    The seed places the normalisation after the residual sum rather than inside the branch.
    Shape-preserving: (B, C, H, W) -> (B, C, H, W).

    Args:
        channels: C.
        groups: GroupNorm groups; must divide ``channels``.
    """

    def __init__(self, channels: int, groups: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.norm = nn.GroupNorm(groups, channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.silu(self.conv1(x)))
        return F.silu(self.norm(x + h))


class Downsample(nn.Module):
    """A 2x2 stride-2 convolution: (B, C_in, H, W) -> (B, C_out, H/2, W/2); patches do not overlap."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """A 2x2 stride-2 transposed convolution, the mirror of `Downsample`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over all positions of a feature map, with a skip connection.

    VQGAN (Esser et al., arXiv 2012.09841) puts one at the lowest resolution of its encoder and
    decoder, where a grid cell can then draw on the whole image instead of its receptive field.
    Shape-preserving: (B, C, H, W) -> (B, C, H, W); H and W may differ.

    Args:
        channels: C.
        groups: GroupNorm groups of the pre-normalisation; must divide ``channels``.
    """

    def __init__(self, channels: int, groups: int = 8) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.proj = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        height = x.shape[2]
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three c) h w -> three b 1 (h w) c", three=3)
        attended = F.scaled_dot_product_attention(q, k, v)  # (B, 1, h*w, C): one head
        return x + self.proj(rearrange(attended, "b 1 (h w) c -> b c h w", h=height))
