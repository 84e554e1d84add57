"""The trainer's data: MNIST and CIFAR-10 held in memory, image folders streamed from disk.

Both kinds are an `ImageSource`: given the index tensors of the batches to come, it
yields (uint8 images (B, C, H, W), int64 labels (B,)). The stage loop decides the order (a
seeded permutation per epoch, `epoch_plan`) and a source only fetches, so the in-memory
fast path (one index operation per batch) and the streamed path (a DataLoader with worker
processes) run the same loop and see the same images in the same order, from any resume point.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .. import _distributed as distributed
from .._presets import vqvae_preset
from ..datasets import ImageFolderDataset
from ..errors import DatasetFormatError
from .config import TrainConfig

Batch = tuple[Tensor, Tensor]


def epoch_plan(size: int, batch_size: int, accum: int, seed: int, epoch: int, start_step: int) -> list[list[Tensor]]:
    """For each optimizer step from ``start_step`` to the epoch's end, the index tensors of its micro-batches.

    The order is ``randperm(size)`` seeded by ``seed * 1009 + epoch``; step ``s`` takes the
    ``accum`` consecutive micro-batches ``s * accum ...`` of ``batch_size`` (the ragged rest of
    the epoch is dropped), and each rank of a distributed run takes its share of each.
    """
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 1009 + epoch))
    plan = []
    for step in range(start_step, steps_per_epoch(size, batch_size, accum)):
        micro = [order[(step * accum + m) * batch_size:(step * accum + m + 1) * batch_size] for m in range(accum)]
        plan.append([m[distributed.rank()::distributed.world_size()] for m in micro if len(m)])
    return plan


def steps_per_epoch(size: int, batch_size: int, accum: int = 1) -> int:
    """Optimizer steps per epoch: whole groups of ``accum`` batches; at least one."""
    return max(1, size // (batch_size * accum))


class ImageSource:
    """Images and labels fetched by index, batch by batch."""

    labels: Tensor  # int64 (N,), all of them (cheap even for a large folder)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def item_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image."""
        raise NotImplementedError

    def batches(self, indices: Sequence[Tensor], epoch: int = 0) -> Iterator[Batch]:
        """(images, labels) for each index tensor, in order; ``epoch`` seeds augmentations."""
        raise NotImplementedError

    def in_order(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        """The first ``limit`` (default all) images in file order, ``batch_size`` at a time."""
        count = len(self) if limit is None else min(limit, len(self))
        return self.batches(torch.arange(count).split(batch_size))


class InMemory(ImageSource):
    """Tensors already in memory (on the training device for speed): a batch is one index operation."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def batches(self, indices: Sequence[Tensor], epoch: int = 0) -> Iterator[Batch]:
        for index in indices:
            index = index.to(self.images.device)
            yield self.images[index], self.labels[index.to(self.labels.device)]


class Streamed(ImageSource):
    """An image folder decoded by ``num_workers`` DataLoader processes; memory flat in the folder's size."""

    def __init__(self, dataset: ImageFolderDataset, num_workers: int, pin_memory: bool = False) -> None:
        self.dataset, self.num_workers, self.pin_memory = dataset, num_workers, pin_memory
        self.labels = dataset.labels

    @property
    def item_shape(self) -> tuple[int, ...]:
        return (self.dataset.channels, *self.dataset.image_shape)

    def batches(self, indices: Sequence[Tensor], epoch: int = 0) -> Iterator[Batch]:
        self.dataset.set_epoch(epoch)  # workers start per call and copy the dataset with this epoch
        plan = [index.tolist() for index in indices]
        # A generator of its own: a DataLoader draws its workers' base seed from the one it is
        # given, and drawing from the global one would shift the training RNG stream, so a resumed
        # run (which starts one loader more mid-epoch) would diverge from an uninterrupted one.
        loader = DataLoader(_Pixels(self.dataset), batch_sampler=plan, num_workers=self.num_workers,
                            collate_fn=_join, prefetch_factor=4 if self.num_workers else None,
                            generator=torch.Generator().manual_seed(epoch))
        for data, labels in loader:
            images = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(len(labels), *self.item_shape)
            yield (images.pin_memory() if self.pin_memory else images), torch.tensor(labels, dtype=torch.long)


def _join(items: list[tuple[bytes, int]]) -> tuple[bytes, list[int]]:
    """Collate in the worker into one bytes object: it crosses the pipe as plain data, with no
    shared-memory handles that a worker would still be serving when the trainer stops (Ctrl-C)."""
    return b"".join(pixels for pixels, _ in items), [label for _, label in items]


class _Pixels(Dataset[tuple[bytes, int]]):
    """uint8 image bytes (a quarter of the bytes of floats through the workers' pipes)."""

    def __init__(self, dataset: ImageFolderDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        return self.dataset.pixels(index).numpy().tobytes(), self.dataset._labels[index]


def load_split(config: TrainConfig, split: str, device: torch.device | None = None) -> ImageSource:
    """The ``split`` of the configured dataset: MNIST and CIFAR-10 in memory, a folder streamed."""
    limit = config.limit_train if split == "train" else config.limit_test
    if config.dataset == "folder":
        dataset = folder_dataset(config, split)
        if limit:
            dataset = dataset.select(range(min(limit, len(dataset))))
        pin = device is not None and device.type == "cuda"
        return Streamed(dataset, config.num_workers, pin_memory=pin)
    root = config.data_dir or None
    if config.dataset == "mnist":
        from ..datasets import load_mnist

        images, labels = load_mnist(root, split, download=config.download)
    else:
        from ..datasets import load_cifar10

        images, labels = load_cifar10(root, split, download=config.download)
    if limit:
        images, labels = images[:limit], labels[:limit]
    return InMemory(images.to(device) if device is not None else images, labels)


def folder_dataset(config: TrainConfig, split: str) -> ImageFolderDataset:
    """``<data_dir>/train`` or ``<data_dir>/test`` if present, else ``data_dir``, every file checked.

    Augmentations (``crop``, ``hflip``) apply to the training split only. Bad files stop the run
    here, before training, listing every one (``bad_files="fail"``), or are left out with a
    warning that names each (``bad_files="skip"``).
    """
    if not config.data_dir:
        raise ValueError("data_dir: the 'folder' dataset needs data_dir, the folder of your images")
    root = Path(config.data_dir)
    folder = root / split if (root / split).is_dir() else root
    if folder == root and split == "test":
        warnings.warn(f"{root} has no test/ sub-folder; evaluating on the training images", stacklevel=3)
    model = vqvae_preset(config.preset).replace(**config.vqvae_overrides)
    train = split == "train"
    dataset = ImageFolderDataset(folder, model.image_shape, channels=model.in_channels,
                                 crop=config.crop if train else "center", hflip=config.hflip and train,
                                 seed=config.seed)
    bad = dataset.find_bad_files(config.num_workers)
    if not bad:
        return dataset
    listing = "\n".join(f"  {path}: {reason}" for path, reason in bad)
    if config.bad_files == "fail":
        raise DatasetFormatError(f"{len(bad)} of the files in {folder} cannot be read; fix or remove them, or pass"
                                 f" --bad_files=skip to train on the rest:\n{listing}")
    warnings.warn(f"skipping {len(bad)} unreadable file(s) in {folder}:\n{listing}", stacklevel=3)
    return dataset.without(path for path, _ in bad)
