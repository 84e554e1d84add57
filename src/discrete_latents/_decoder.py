"""The convolutional decoder: a grid of (quantized) latents back to images."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ._layers import AttentionBlock, ResBlock, Upsample
from ._registry import DECODERS


@DECODERS.register("conv")
class Decoder(nn.Module):
    """The mirror of `Encoder`: 1x1 projection, residual blocks, then
    2x2 stride-2 transposed convolutions back to full resolution.

    With the defaults: (B, 32, 7, 7) -> 14x14 -> (B, 1, 28, 28).

    Args:
        in_channels: C of the output images (named as in the encoder, so one config builds both).
        channels: the encoder's widths; traversed in reverse. Default (64, 128).
        latent_dim: D, the width of the input latents. Default 32.
        num_res_blocks: residual blocks at the lowest resolution. Default 1.
        norm_groups: GroupNorm groups in the residual blocks. Default 8.
        attention: a self-attention block after the residual blocks. Default False.

    Examples:
        >>> import torch
        >>> Decoder(channels=(8, 16))(torch.rand(2, 32, 7, 7)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (64, 128), latent_dim: int = 32,
                 num_res_blocks: int = 1, norm_groups: int = 8, attention: bool = False) -> None:
        super().__init__()
        widths = [in_channels, *channels][::-1]  # e.g. [128, 64, 1]
        self.proj = nn.Conv2d(latent_dim, widths[0], kernel_size=1)
        self.res = nn.Sequential(*(ResBlock(widths[0], norm_groups) for _ in range(num_res_blocks)))
        # Optional global attention at the lowest resolution (VQGAN); Identity keeps old weight names.
        self.attention = AttentionBlock(widths[0], norm_groups) if attention else nn.Identity()
        self.up = nn.ModuleList(Upsample(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, z: Tensor) -> Tensor:
        """Map (B, D, h, w) latents to (B, C, h * 2^n, w * 2^n) images on the [-1, 1] scale."""
        x = self.attention(self.res(F.silu(self.proj(z))))
        for i, up in enumerate(self.up):
            x = up(x)
            if i < len(self.up) - 1:  # no activation on the output: it regresses pixel values
                x = F.silu(x)
        return x
