"""Whole datasets as uint8 tensors, so a batch is one index operation (no DataLoader workers)."""

from __future__ import annotations

from torch import Tensor

from .config import TrainConfig


def load_split(config: TrainConfig, split: str) -> tuple[Tensor, Tensor]:
    """(images uint8 (N, C, H, W), labels int64 (N,)) of ``split`` for the configured dataset."""
    root = config.data_dir or None
    if config.dataset == "mnist":
        from ..datasets.mnist import load_mnist

        images, labels = load_mnist(root, split, download=config.download)
    elif config.dataset == "cifar10":
        from ..datasets.cifar10 import load_cifar10

        images, labels = load_cifar10(root, split, download=config.download)  # type: ignore[arg-type]
    else:
        from ..datasets.image_folder import load_image_folder

        images, labels = load_image_folder(config.data_dir, split)  # type: ignore[attr-defined]
    limit = config.limit_train if split == "train" else config.limit_test
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels
