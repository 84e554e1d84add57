"""The convolutional encoder: images to a grid of continuous latents z_e."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ._layers import AttentionBlock, Downsample, ResBlock
from ._registry import ENCODERS


@ENCODERS.register("conv")
class Encoder(nn.Module):
    """Strided 2x2 convolutions, residual blocks, then a 1x1 projection to the code width.

    With the defaults (the seed's MNIST encoder): (B, 1, 28, 28) -> 14x14 -> (B, 32, 7, 7).
    Every 2x2 stride-2 convolution halves the resolution, so ``len(channels)`` sets the
    down-sampling factor (two for MNIST's 7x7 grid, two for CIFAR-10's 8x8).

    Args:
        in_channels: C of the input images. Default 1.
        channels: width after each down-sampling. Default (64, 128).
        latent_dim: D, the width of the output latents. Default 32.
        num_res_blocks: residual blocks at the lowest resolution. Default 1.
        norm_groups: GroupNorm groups in the residual blocks. Default 8.
        attention: a self-attention block after the residual blocks. Default False.

    Examples:
        >>> import torch
        >>> Encoder(channels=(8, 16))(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 32, 7, 7])
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (64, 128), latent_dim: int = 32,
                 num_res_blocks: int = 1, norm_groups: int = 8, attention: bool = False) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.down = nn.ModuleList(Downsample(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.res = nn.Sequential(*(ResBlock(widths[-1], norm_groups) for _ in range(num_res_blocks)))
        # Optional global attention at the lowest resolution (VQGAN); Identity keeps old weight names.
        self.attention = AttentionBlock(widths[-1], norm_groups) if attention else nn.Identity()
        self.proj = nn.Conv2d(widths[-1], latent_dim, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C, H, W) inputs (already normalised to [-1, 1]; H and W may differ) to (B, D, H / 2^n, W / 2^n)."""
        for down in self.down:
            x = F.silu(down(x))
        return self.proj(self.attention(self.res(x)))
