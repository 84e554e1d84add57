"""Datasets: MNIST (IDX), CIFAR-10 (binary version, never pickles) and folders of your own images.

Nothing touches the network unless a loader is called with ``download=True``; downloads come
from HTTPS mirrors and are checked by size and SHA-256 before they get their final name.

Examples:
    >>> from discrete_latents.datasets import load_mnist
    >>> images, labels = load_mnist("../shared/data/mnist", "test")  # doctest: +SKIP
"""

from ._download import download_file as download_file
from ._download import verify_file as verify_file
from ._paths import DATA_DIR_ENV as DATA_DIR_ENV
from ._paths import default_data_dir as default_data_dir
from .cifar10 import CIFAR10_CLASSES as CIFAR10_CLASSES
from .cifar10 import extract_cifar10 as extract_cifar10
from .cifar10 import load_cifar10 as load_cifar10
from .cifar10 import read_cifar10_batch as read_cifar10_batch
from .image_folder import ImageFolderDataset as ImageFolderDataset
from .mnist import load_mnist as load_mnist
from .mnist import mnist_files as mnist_files
from .mnist import read_idx as read_idx

__all__ = [
    "CIFAR10_CLASSES",
    "DATA_DIR_ENV",
    "ImageFolderDataset",
    "default_data_dir",
    "download_file",
    "extract_cifar10",
    "load_cifar10",
    "load_mnist",
    "mnist_files",
    "read_cifar10_batch",
    "read_idx",
    "verify_file",
]
