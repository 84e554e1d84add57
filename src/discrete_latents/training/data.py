"""Whole datasets as uint8 tensors, so a batch is one index operation (no DataLoader workers)."""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import Tensor

from .._presets import vqvae_preset
from .config import TrainConfig


def load_split(config: TrainConfig, split: str) -> tuple[Tensor, Tensor]:
    """(images uint8 (N, C, H, W), labels int64 (N,)) of ``split`` for the configured dataset."""
    root = config.data_dir or None
    if config.dataset == "mnist":
        from ..datasets import load_mnist

        images, labels = load_mnist(root, split, download=config.download)
    elif config.dataset == "cifar10":
        from ..datasets import load_cifar10

        images, labels = load_cifar10(root, split, download=config.download)
    else:
        images, labels = _load_folder(config, split)
    limit = config.limit_train if split == "train" else config.limit_test
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def _load_folder(config: TrainConfig, split: str) -> tuple[Tensor, Tensor]:
    """A folder of the user's images: ``<data_dir>/train`` and ``<data_dir>/test`` if present."""
    from ..datasets import ImageFolderDataset

    if not config.data_dir:
        raise ValueError("data_dir: the 'folder' dataset needs data_dir, the folder of your images")
    root = Path(config.data_dir)
    folder = root / split if (root / split).is_dir() else root
    if folder == root and split == "test":
        warnings.warn(f"{root} has no test/ sub-folder; evaluating on the training images", stacklevel=3)
    model = vqvae_preset(config.preset).replace(**config.vqvae_overrides)
    return ImageFolderDataset(folder, model.image_size, channels=model.in_channels).as_tensors()
