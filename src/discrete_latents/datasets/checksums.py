"""The official dataset files: names, sizes and hashes, and the mirrors they are fetched from.

Every download is checked against this table (size, then SHA-256) before it gets its final
name. The values are those of ``reliability-cases.md`` section 5; ``tests/test_datasets.py``
pins them, so a change here is a deliberate, reviewed change.

Provenance, as recorded there: MNIST SHA-256 and sizes are cross-checked (tensorflow/datasets
``url_checksums/mnist.txt`` and torchvision's prototype ``mnist.py``); the MNIST ``.gz`` MD5s come
from torchvision only; the unpacked MD5s are the published checksums of the original files. The
CIFAR-10 binary SHA-256 is cross-checked (tensorflow/datasets, gomlx), its size comes from
tensorflow/datasets and its MD5 from the authors' page.

Examples:
    >>> from discrete_latents.datasets.checksums import MNIST_FILES
    >>> MNIST_FILES["t10k-labels-idx1-ubyte.gz"].size
    4542
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class RemoteFile:
    """One published file: what a complete, uncorrupted copy looks like.

    Args:
        name: file name on the mirrors, e.g. ``"train-images-idx3-ubyte.gz"``.
        size: exact length in bytes.
        sha256: lower-case hex digest; this, with ``size``, decides whether a copy is good.
        md5: lower-case hex digest, kept because it is what older tools publish; never relied on
            alone for a download.

    Examples:
        >>> RemoteFile("a.gz", 3, "0" * 64, "0" * 32).size
        3
    """

    name: str
    size: int
    sha256: str
    md5: str


@dataclass(frozen=True)
class UnpackedFile:
    """An IDX file after gunzip: lets a re-compressed copy (same bytes inside) pass verification.

    Args:
        name: file name without ``.gz``.
        size: exact length in bytes once unpacked.
        md5: lower-case hex MD5 of the unpacked bytes (the checksum the MNIST authors published).

    Examples:
        >>> MNIST_UNPACKED["t10k-labels-idx1-ubyte"].size
        10008
    """

    name: str
    size: int
    md5: str


# HTTPS mirrors, tried in order. LeCun's own site is plain HTTP and is used only when a caller
# passes allow_http=True (the SHA-256 check still applies, but the transfer is not private).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_HTTP_MIRRORS: tuple[str, ...] = ("http://yann.lecun.com/exdb/mnist/",)

MNIST_FILES: Mapping[str, RemoteFile] = MappingProxyType(
    {
        f.name: f
        for f in (
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                9912422,
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                28881,
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "d53e105ee54ea40749a09fcbcd1e9432",
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                1648877,
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "9fb629c4189551a2d022fa330f9573f3",
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                4542,
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
        )
    }
)

# Unpacked sizes are 16 (images) or 8 (labels) header bytes plus one byte per pixel or label.
MNIST_UNPACKED: Mapping[str, UnpackedFile] = MappingProxyType(
    {
        f.name: f
        for f in (
            UnpackedFile("train-images-idx3-ubyte", 47040016, "6bbc9ace898e44ae57da46a324031adb"),
            UnpackedFile("train-labels-idx1-ubyte", 60008, "a25bea736e30d166cdddb491f175f624"),
            UnpackedFile("t10k-images-idx3-ubyte", 7840016, "2646ac647ad5339dbf082846283269ea"),
            UnpackedFile("t10k-labels-idx1-ubyte", 10008, "27ae3e4e09519cfbb04c329615203637"),
        )
    }
)

CIFAR10_MIRRORS: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)

# The binary version is the only one read: the python version's batches are pickles.
CIFAR10_BINARY = RemoteFile(
    "cifar-10-binary.tar.gz",
    170052171,
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    "c32a1d4ab5d03f1284b67883e8d87530",
)
CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32  # label byte, then the R, G and B planes
CIFAR10_BATCH_BYTES = 10_000 * CIFAR10_RECORD_BYTES  # 30,730,000

# The python (pickle) version, recorded only so it can be recognised and refused, never read.
# Its size is unofficial (download logs); the member MD5s are those of the pickled batches.
CIFAR10_PYTHON = RemoteFile(
    "cifar-10-python.tar.gz",
    170498071,
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    "c58f30108f718f92721af3b95e74349a",
)
CIFAR10_PYTHON_MEMBER_MD5: Mapping[str, str] = MappingProxyType(
    {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    }
)
