"""A dataset over a folder of the user's own PNG and JPEG images, decoded lazily (streamable)."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..errors import DatasetFormatError, DatasetNotFoundError
from ._pixels import MODES, fit, to_array, to_channels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CROPS = ("center", "random")
# Pillow signals bad data with OSError (incl. UnidentifiedImageError and "image file is
# truncated"), SyntaxError or ValueError depending on the codec; a decompression bomb has its own class.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageFolderDataset(Dataset[tuple[Tensor, int]]):
    """Every PNG/JPEG under ``root`` (recursively), as float images in [0, 1] of one size.

    Each image is turned upright (EXIF orientation), read as grey, grey + alpha, RGB or RGBA
    (``channels`` 1, 2, 3, 4; 16-bit grey scaled, transparency composited over black for 1 and
    3 channels: see ``datasets/_pixels.py``), scaled to cover (H, W) (bicubic, keeping its aspect
    ratio) and cropped to (H, W), in the centre or at random. Files and folders whose names start
    with ``.`` are skipped (``.DS_Store``, macOS ``._*`` companions).

    Nothing is decoded up front: an image is read in ``__getitem__``, so a DataLoader with
    worker processes streams a folder of any size in flat memory. `find_bad_files`
    checks every file before training; `without` drops the ones it finds.

    Args:
        root: the folder to search.
        image_size: side of square images, or (height, width), in pixels.
        channels: 3 for RGB (default), 1 grey, 4 RGBA, 2 grey + alpha.
        class_folders: label each image with the index of its first-level sub-folder in
            sorted order (``root/cat/1.png`` -> class ``"cat"``). Default False: label 0 for all.
        extensions: file suffixes to include, case-insensitive. Default ``.png``, ``.jpg``,
            ``.jpeg``.
        crop: ``"center"`` (default) or ``"random"`` (a new place each epoch, see `set_epoch`).
        hflip: mirror half of the images left to right, drawn anew each epoch. Default False.
        seed: seed of the random crops and flips; image ``i`` in epoch ``e`` draws from
            ``(seed, e, i)`` only, so any worker count and any resume point give the same pixels.

    Attributes:
        files: the image paths, sorted.
        not_files: paths named like an image that are not regular files (directories, say).
        classes: the sub-folder names with ``class_folders=True``, else ``()``.

    Raises:
        DatasetFormatError: no image found; with ``class_folders``, an image directly in
            ``root``; from ``__getitem__``, a file that does not decode (naming it).

    Examples:
        >>> dataset = ImageFolderDataset("photos", image_size=(48, 64), crop="random", hflip=True)  # doctest: +SKIP
        >>> image, label = dataset[0]  # doctest: +SKIP
        >>> image.shape, image.dtype, label  # doctest: +SKIP
        (torch.Size([3, 48, 64]), torch.float32, 0)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int | Sequence[int],
        *,
        channels: int = 3,
        class_folders: bool = False,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        crop: str = "center",
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        self.image_shape = _check_size(image_size)
        if isinstance(channels, bool) or channels not in MODES:
            raise ValueError(f"channels: expected 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA), got {channels!r}")
        if crop not in CROPS:
            raise ValueError(f"crop: expected one of {CROPS}, got {crop!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"{self.root}: not a folder")
        self.channels, self.crop, self.hflip, self.seed, self.epoch = channels, crop, bool(hflip), seed, 0
        suffixes = {s.lower() if s.startswith(".") else f".{s.lower()}" for s in extensions}
        named = sorted(path for path in self.root.rglob("*") if path.suffix.lower() in suffixes
                       and not any(part.startswith(".") for part in path.relative_to(self.root).parts))
        self.files: tuple[Path, ...] = tuple(path for path in named if path.is_file())
        self.not_files: tuple[Path, ...] = tuple(path for path in named if not path.is_file())
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

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the returned images."""
        return self.image_shape

    @property
    def labels(self) -> Tensor:
        """The labels of all images, int64 (N,)."""
        return torch.tensor(self._labels, dtype=torch.long)

    def set_epoch(self, epoch: int) -> None:
        """Draw the random crops and flips of ``epoch`` (call before iterating a DataLoader over it)."""
        self.epoch = epoch

    def find_bad_files(self, num_workers: int = 0) -> list[tuple[Path, str]]:
        """Every path that cannot be trained on, with the reason, by decoding every file in full.

        Finds zero-byte files, corrupt and truncated files, and paths named like an image that
        are not files (a directory ``cat.png/``). ``num_workers`` processes share the work.
        """
        bad = [(path, "not a file (a directory or a special file named like an image)") for path in self.not_files]
        checker = _FileChecker(self.files, self.channels)
        loader = DataLoader(checker, batch_size=64, num_workers=num_workers, collate_fn=list,
                            generator=torch.Generator())  # leaves the global RNG stream alone
        reasons = [reason for batch in loader for reason in batch]
        bad += [(path, reason) for path, reason in zip(self.files, reasons) if reason]
        return sorted(bad)

    def without(self, paths: Iterable[str | os.PathLike[str]]) -> ImageFolderDataset:
        """A copy of this dataset without ``paths`` (the bad files `find_bad_files` named)."""
        drop = {Path(p) for p in paths}
        return self.select([i for i, path in enumerate(self.files) if path not in drop])

    def select(self, indices: Iterable[int]) -> ImageFolderDataset:
        """A copy of this dataset holding only the images at ``indices``, in that order."""
        chosen = list(indices)
        subset = copy.copy(self)
        subset.files = tuple(self.files[i] for i in chosen)
        subset._labels = [self._labels[i] for i in chosen]
        subset.not_files = ()
        if not subset.files:
            raise DatasetFormatError(f"{self.root}: no images left to train on")
        return subset

    def as_tensors(self) -> tuple[Tensor, Tensor]:
        """Every image decoded at once: (uint8 images (N, C, H, W), int64 labels (N,)), like ``load_mnist``.

        For small sets (a test split); stream large folders through a DataLoader instead.
        """
        images = torch.stack([self.pixels(i) for i in range(len(self))])
        return images, self.labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        """Return (image (C, H, W) float32 in [0, 1], label)."""
        return self.pixels(index).float().div_(255.0), self._labels[index]

    def pixels(self, index: int) -> Tensor:
        """Image ``index`` as uint8 (C, H, W): a quarter of the bytes of floats to pass between processes."""
        path = self.files[index]
        try:
            with Image.open(path) as opened:
                image = to_channels(opened, self.channels)
        except _DECODE_ERRORS as err:
            raise DatasetFormatError(f"{path}: cannot decode image ({err})") from None
        offset, flip = (0.5, 0.5), False
        if self.crop == "random" or self.hflip:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            draws = rng.random(3)
            offset = (float(draws[0]), float(draws[1])) if self.crop == "random" else offset
            flip = self.hflip and bool(draws[2] < 0.5)
        image = fit(image, *self.image_shape, offset=offset)
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return torch.from_numpy(to_array(image))


class _FileChecker(Dataset[str]):
    """Decodes file ``i`` in full; returns "" if it is fine, else why not."""

    def __init__(self, files: Sequence[Path], channels: int) -> None:
        self.files, self.channels = files, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> str:
        path = self.files[index]
        try:
            if path.stat().st_size == 0:
                return "empty file (0 bytes)"
            with Image.open(path) as opened:
                opened.load()  # the whole file: a truncated one fails here, not in a training worker
                to_channels(opened, self.channels)
        except _DECODE_ERRORS as err:
            return f"cannot decode ({type(err).__name__}: {err})"
        return ""


def _check_size(image_size: object) -> tuple[int, int]:
    """(H, W) from an int or a pair of ints, or ValueError."""
    sides = [image_size] if isinstance(image_size, int) else image_size
    if not isinstance(sides, Sequence) or isinstance(sides, str) or len(sides) not in (1, 2) or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sides):
        raise ValueError(f"image_size: expected a positive int or (height, width), got {image_size!r}")
    return (sides[0], sides[-1])
