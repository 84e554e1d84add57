"""A dataset over a folder of the user's own PNG and JPEG images."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DatasetFormatError, DatasetNotFoundError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_MODES = {1: "L", 3: "RGB"}


class ImageFolderDataset(Dataset[tuple[Tensor, int]]):
    """Every PNG/JPEG under ``root`` (recursively), as square float images in [0, 1].

    Each image is turned upright (EXIF orientation), converted to RGB or grayscale, resized so
    its shorter side is ``image_size`` (bicubic, antialiased) and center-cropped to
    ``image_size`` x ``image_size``. Files and folders whose names start with ``.`` are skipped
    (``.DS_Store``, macOS ``._*`` companions). Images are decoded lazily, in ``__getitem__``.

    Args:
        root: the folder to search.
        image_size: side of the returned square images, in pixels.
        channels: 3 for RGB (alpha is dropped), 1 for grayscale. Default 3.
        class_folders: label each image with the index of its first-level sub-folder in
            sorted order (``root/cat/1.png`` -> class ``"cat"``). Default False: label 0 for all.
        extensions: file suffixes to include, case-insensitive. Default ``.png``, ``.jpg``,
            ``.jpeg``.

    Attributes:
        files: the image paths, sorted.
        classes: the sub-folder names with ``class_folders=True``, else ``()``.

    Raises:
        DatasetFormatError: no image found; with ``class_folders``, an image directly in
            ``root``; from ``__getitem__``, a file that does not decode (naming it).

    Examples:
        >>> dataset = ImageFolderDataset("photos", image_size=64)  # doctest: +SKIP
        >>> image, label = dataset[0]  # doctest: +SKIP
        >>> image.shape, image.dtype, label  # doctest: +SKIP
        (torch.Size([3, 64, 64]), torch.float32, 0)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int,
        *,
        channels: int = 3,
        class_folders: bool = False,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
    ) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size: expected a positive int, got {image_size!r}")
        if channels not in _MODES:
            raise ValueError(f"channels: expected 1 (grayscale) or 3 (RGB), got {channels!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"{self.root}: not a folder")
        self.image_size = image_size
        self.channels = channels
        suffixes = {s.lower() if s.startswith(".") else f".{s.lower()}" for s in extensions}
        self.files: tuple[Path, ...] = tuple(
            sorted(
                path
                for path in self.root.rglob("*")
                if path.suffix.lower() in suffixes
                and not any(part.startswith(".") for part in path.relative_to(self.root).parts)
                and path.is_file()
            )
        )
        if not self.files:
            raise DatasetFormatError(f"{self.root}: no images found (searched recursively for {sorted(suffixes)})")
        self.classes: tuple[str, ...] = ()
        self._labels = [0] * len(self.files)
        if class_folders:
            top_level = [p for p in self.files if p.parent == self.root]
            if top_level:
                raise DatasetFormatError(
                    f"{top_level[0]}: with class_folders=True every image must sit in a class sub-folder of {self.root}"
                )
            self.classes = tuple(sorted({p.relative_to(self.root).parts[0] for p in self.files}))
            index = {name: i for i, name in enumerate(self.classes)}
            self._labels = [index[p.relative_to(self.root).parts[0]] for p in self.files]

    def as_tensors(self) -> tuple[Tensor, Tensor]:
        """Every image decoded at once: (uint8 images (N, C, S, S), int64 labels (N,)), like ``load_mnist``."""
        pairs = [self[i] for i in range(len(self))]
        images = torch.stack([image for image, _ in pairs]).mul(255).round().to(torch.uint8)
        return images, torch.tensor([label for _, label in pairs], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        """Return (image (C, H, W) float32 in [0, 1], label)."""
        path = self.files[index]
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened).convert(_MODES[self.channels])
        # Pillow signals bad data with OSError (incl. UnidentifiedImageError), SyntaxError or
        # ValueError depending on the codec; a decompression bomb has its own class.
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise DatasetFormatError(f"{path}: cannot decode image ({err})") from None
        image = self._resize_and_crop(image)
        pixels = np.array(image, dtype=np.uint8)  # a copy: torch wants writable memory
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
        return torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255.0), self._labels[index]

    def _resize_and_crop(self, image: Image.Image) -> Image.Image:
        size = self.image_size
        width, height = image.size
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        if new != image.size:
            image = image.resize(new, Image.Resampling.BICUBIC)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return image.crop((left, top, left + size, top + size))
