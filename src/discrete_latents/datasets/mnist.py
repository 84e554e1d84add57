"""MNIST from its four original IDX files (big-endian headers, uint8 pixels)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DatasetFormatError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetFormatError(f"{path}: corrupt or truncated gzip ({err})") from None


def read_idx(path: str | os.PathLike[str], magic: int) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) with the given magic number into a uint8 array."""
    path = Path(path)
    data = _read_maybe_gzip(path)
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFormatError(f"{path}: {len(data)} bytes is too short for an IDX header")
    (found,) = struct.unpack(">i", data[:4])
    if found != magic:
        raise DatasetFormatError(f"{path}: magic number {found}, expected {magic}")
    dims = struct.unpack(f">{ndim}i", data[4:header])
    if any(d < 0 for d in dims) or (ndim == 3 and dims[1:] != (28, 28)):
        raise DatasetFormatError(f"{path}: dimensions {dims}, expected (N, 28, 28)" if ndim == 3 else
                                 f"{path}: dimensions {dims}")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DatasetFormatError(f"{path}: expected {expected} bytes for dimensions {dims}, found {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name}(.gz) not found in {root}")


def load_mnist(root: str | os.PathLike[str], split: str = "train") -> tuple[Tensor, Tensor]:
    """Load a split as (images (N, 1, 28, 28) uint8, labels (N,) int64).

    Args:
        root: folder holding the IDX files, gzipped or not.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
    """
    if split not in FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    root = Path(root)
    image_file, label_file = (_find(root, name) for name in FILES[split])
    images = read_idx(image_file, IMAGES_MAGIC)
    labels = read_idx(label_file, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DatasetFormatError(f"{root}: {len(images)} images but {len(labels)} labels in the {split} split")
    if labels.size and labels.max() > 9:
        raise DatasetFormatError(f"{label_file}: label {int(labels.max())} outside 0-9")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
