"""Turning image tensors into PIL images, grids and PNG files.

Images are float tensors in [0, 1], (B, C, H, W) with C = 1 (grayscale) or 3 (RGB), as every
model in the library returns them. Values are rounded to 8 bits; tiny overshoots outside [0, 1]
are clipped, but NaN or infinity is an error rather than a black pixel.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ._checks import check_finite, check_float, check_int
from ._files import atomic_write_bytes

_MODES = {1: "L", 3: "RGB"}


def _as_batch(images: object) -> Tensor:
    """Validate and return (B, C, H, W) floats on the CPU; a single (C, H, W) image gets B = 1."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images: expected a torch.Tensor (B, C, H, W) in [0, 1], got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images: expected a float tensor with values in [0, 1], got dtype {images.dtype}"
                        " (convert uint8 images with images.float() / 255)")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"images: expected shape (B, C, H, W) or (C, H, W) with B, H, W >= 1,"
                         f" got {tuple(images.shape)}")
    if images.shape[1] not in _MODES:
        raise ValueError(f"images: expected 1 (grayscale) or 3 (RGB) channels, got {images.shape[1]}"
                         f" (shape {tuple(images.shape)})")
    check_finite(images, "images")
    return images.detach().to("cpu", torch.float32)


def _to_pil(image: Tensor) -> Image.Image:
    """(C, H, W) floats in [0, 1] -> one PIL image ("L" or "RGB")."""
    channels, height, width = image.shape
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    data = pixels.permute(1, 2, 0).contiguous()  # (H, W, C): PIL's interleaved row-major layout
    return Image.frombytes(_MODES[channels], (width, height), data.numpy().tobytes())


def to_pil_images(images: Tensor) -> list[Image.Image]:
    """Convert a batch of images to PIL images.

    Args:
        images: (B, C, H, W) or (C, H, W) floats in [0, 1]; C = 1 gives mode ``"L"``, C = 3
            gives ``"RGB"``.

    Returns:
        A list of B PIL images of size W x H.

    Raises:
        TypeError: not a float tensor.
        ValueError: wrong rank or channel count; `NonFiniteError`
            for NaN or infinite values.

    Examples:
        >>> import torch
        >>> from discrete_latents.images import to_pil_images
        >>> [im.size for im in to_pil_images(torch.rand(2, 1, 28, 28))]
        [(28, 28), (28, 28)]
    """
    return [_to_pil(image) for image in _as_batch(images)]


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 0.0) -> Image.Image:
    """Tile a batch of images into one PIL image, row by row.

    Args:
        images: (B, C, H, W) or (C, H, W) floats in [0, 1].
        nrow: images per row; default ``ceil(sqrt(B))`` (a square-ish grid).
        padding: pixels between images and around the border. Default 2.
        pad_value: gray level of the padding, in [0, 1]. Default 0 (black).

    Returns:
        One PIL image (mode ``"L"`` or ``"RGB"``).

    Examples:
        >>> import torch
        >>> from discrete_latents.images import make_grid
        >>> make_grid(torch.rand(16, 1, 28, 28), nrow=4).size
        (122, 122)
    """
    batch = _as_batch(images)
    count, channels, height, width = batch.shape
    if nrow is None:
        nrow = math.ceil(math.sqrt(count))
    check_int("nrow", nrow, 1)
    check_int("padding", padding, 0)
    check_float("pad_value", pad_value, 0.0, 1.0)
    ncol = min(nrow, count)
    nrows = math.ceil(count / ncol)
    canvas = torch.full((channels, nrows * (height + padding) + padding, ncol * (width + padding) + padding),
                        float(pad_value))
    for i, image in enumerate(batch):
        top = padding + (i // ncol) * (height + padding)
        left = padding + (i % ncol) * (width + padding)
        canvas[:, top: top + height, left: left + width] = image
    return _to_pil(canvas)


def save_grid(images: Tensor, path: str | os.PathLike[str], nrow: int | None = None, padding: int = 2,
              pad_value: float = 0.0) -> Path:
    """Write a grid of images (see `make_grid`) as a PNG file, atomically.

    The PNG is encoded in memory and written to a temporary sibling that is renamed over
    ``path``, so an interrupted save never leaves half an image.

    Args:
        images: (B, C, H, W) or (C, H, W) floats in [0, 1].
        path: where to write; the parent folder must exist.
        nrow, padding, pad_value: as in `make_grid`.

    Returns:
        ``path`` as a `pathlib.Path`.

    Examples:
        >>> import tempfile, torch
        >>> from discrete_latents.images import save_grid
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_grid(torch.rand(4, 3, 32, 32), f"{tmp}/samples.png").name
        'samples.png'
    """
    path = Path(path)
    atomic_write_bytes(path, grid_png(images, nrow=nrow, padding=padding, pad_value=pad_value))
    return path


def grid_png(images: Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 0.0) -> bytes:
    """The PNG file `save_grid` writes, as bytes (to validate or upload before writing).

    Examples:
        >>> import torch
        >>> grid_png(torch.rand(2, 1, 8, 8))[:4]
        b'\\x89PNG'
    """
    buffer = io.BytesIO()
    make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value).save(buffer, format="PNG")
    return buffer.getvalue()
