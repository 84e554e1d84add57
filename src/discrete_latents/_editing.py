"""Editing images with any prior: redraw a region of an image's code grid given the rest (inpainting).

A pixel mask marks what to redraw; a code is redrawn where any pixel of its footprint is marked
(the VQ-VAE's downsampling factor in each direction), so the whole masked region is always
covered. The prior's `fill` redraws those codes: a masked prior
conditions on every kept code, a raster-order prior on the codes before each position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from einops import reduce
from torch import Tensor

from ._checks import check_images

if TYPE_CHECKING:  # the pipeline calls into this module, never the other way round at run time
    from ._pipeline import VQVAEPipeline


def check_pixel_mask(mask: object, batch: int, size: tuple[int, int]) -> Tensor:
    """A (B, 1, H, W) mask of bools or 0/1 numbers -> a bool tensor, true where pixels are redrawn.

    Raises:
        TypeError: not a tensor, or a dtype that is neither bool nor a number.
        ValueError: the wrong shape, values other than 0 and 1, or an image with nothing to redraw.
    """
    expected = f"(B, 1, H, W) = ({batch}, 1, {size[0]}, {size[1]})"
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask: expected a torch.Tensor {expected} of bools (true = redraw), got {type(mask).__name__}")
    if tuple(mask.shape) != (batch, 1, *size):
        raise ValueError(f"mask: expected shape {expected}, one channel matching the images, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if mask.is_complex():
            raise TypeError(f"mask: expected bools or 0/1 numbers, got dtype {mask.dtype}")
        if not bool(((mask == 0) | (mask == 1)).all()):
            values = torch.unique(mask.detach().float().cpu())[:6].tolist()
            raise ValueError(f"mask: expected bools or only the values 0 and 1 (1 = redraw), got values {values}")
        mask = mask != 0
    empty = (~mask.flatten(1).any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"mask: nothing to redraw in image(s) {empty[:10]} (all pixels kept); mark the region to"
                         " redraw with true / 1")
    return mask


def code_mask(mask: Tensor, grid_size: tuple[int, int]) -> Tensor:
    """(B, 1, H, W) bool pixel mask -> (B, h, w) bool: true where any pixel of a code's footprint is.

    Examples:
        >>> mask = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
        >>> mask[:, :, 16:] = True  # the bottom 12 rows of pixels
        >>> code_mask(mask, (7, 7))[0, :, 0].tolist()  # the last three rows of codes
        [False, False, False, False, True, True, True]
    """
    height, width = mask.shape[-2:]
    if height % grid_size[0] or width % grid_size[1]:
        raise ValueError(f"mask: {height}x{width} pixels do not split into a {grid_size[0]}x{grid_size[1]} grid")
    return reduce(mask[:, 0], "b (h p) (w q) -> b h w", "max", h=grid_size[0], w=grid_size[1])


@torch.no_grad()
def inpaint(pipe: VQVAEPipeline, images: Tensor, mask: Tensor, labels: Tensor | None = None,
            guidance_scale: float = 1.0, generator: torch.Generator | None = None, **sampling: Any) -> Tensor:
    """Redraw the masked region of each image with the pipeline's prior, given the kept region.

    Args:
        pipe: the pipeline whose VQ-VAE and prior are used.
        images: (B, C, H, W) floats in [0, 1].
        mask: (B, 1, H, W) bools (or 0/1), true where the image is redrawn.
        labels: (B,) classes for a conditional prior; ``None`` uses its "no label" mode, so no
            class is imposed that could contradict the kept region.
        guidance_scale: classifier-free guidance (with labels); 1 = plain conditional.
        generator: a ``torch.Generator`` on the prior's device, for reproducible completions.
        **sampling: ``temperature``, ``top_k``, ``top_p``; ``steps`` and ``choice_temperature``
            for a masked prior.

    Returns:
        (B, C, H, W) images in [0, 1] decoded from the grid whose kept codes are the images' own.
    """
    vqvae = pipe.vqvae
    images = check_images(images, vqvae.config.in_channels, vqvae.config.image_size)
    pixels = check_pixel_mask(mask, images.shape[0], tuple(images.shape[2:]))  # type: ignore[arg-type]
    # 1. The kept context: the images' own codes, and the codes to redraw.
    codes = pipe.encode(images)
    redraw = code_mask(pixels.to(codes.device), vqvae.grid_size)
    # 2. Redraw with the prior (a clear error if it cannot condition on kept codes), then decode.
    filled = pipe.prior.fill(codes, redraw, labels=labels, guidance_scale=guidance_scale, generator=generator,
                             **sampling)
    return pipe.decode(filled)
