"""Decoding one image file into uint8 pixels of a chosen channel count, and fitting it to (H, W).

Every mode Pillow opens is mapped explicitly, so what a model sees does not depend on how a file
happened to be saved:

- 16-bit grey (modes ``I;16*`` and ``I``, e.g. scanner output) is scaled to 8 bits (x / 257,
  rounded). Pillow's own ``convert("L")`` clips every value above 255 to white instead.
- Alpha (RGBA, LA, a palette or grey/RGB with a transparent colour) is kept for 2 and 4
  channels; for 1 and 3 channels the image is composited over black, so a transparent
  background reads as black (the background of MNIST) rather than as whatever colour the
  hidden pixels happen to hold.
- Grey is replicated into RGB; RGB becomes grey by the ITU-R 601 luma Pillow uses.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}  # channels -> the Pillow mode the pixels are read in
_SIXTEEN_BIT = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def to_channels(image: Image.Image, channels: int) -> Image.Image:
    """``image`` upright (EXIF orientation) in the mode of ``channels`` (see the module docstring)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT:
        wide = np.asarray(image).astype(np.int64).clip(0, 65535)
        image = Image.fromarray(((wide + 128) // 257).astype(np.uint8), mode="L")
    transparent = image.mode in _ALPHA_MODES or "transparency" in image.info
    if channels in (2, 4):
        return image.convert(MODES[channels])  # an opaque image gets alpha 255
    if transparent:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image.convert(MODES[channels])


def fit(image: Image.Image, height: int, width: int, offset: tuple[float, float] = (0.5, 0.5)) -> Image.Image:
    """Scale ``image`` to cover height x width (bicubic, keeping its aspect ratio), then crop.

    ``offset`` places the crop in the scaled image: (0.5, 0.5) is the centre, (0, 0) the top
    left corner, (1, 1) the bottom right; a random crop draws it uniformly.
    """
    old_width, old_height = image.size
    scale = max(height / old_height, width / old_width)
    new = (max(width, round(old_width * scale)), max(height, round(old_height * scale)))
    if new != image.size:
        image = image.resize(new, Image.Resampling.BICUBIC)
    left = round((new[0] - width) * offset[1])
    top = round((new[1] - height) * offset[0])
    return image.crop((left, top, left + width, top + height))


def to_array(image: Image.Image) -> np.ndarray:
    """(C, H, W) uint8, contiguous and writable (torch wants writable memory)."""
    pixels = np.array(image, dtype=np.uint8)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    return np.ascontiguousarray(pixels)
