"""CIFAR-10 from its binary version (``cifar-10-binary.tar.gz``); the pickled python version is refused.

``cifar-10-batches-bin/`` holds ``data_batch_1.bin`` ... ``data_batch_5.bin`` and
``test_batch.bin``: 10,000 records of 3,073 bytes each, a label byte (0-9) then 1,024 bytes each
of the R, G and B planes, row-major 32x32. The python version stores the same data as pickles,
which can run arbitrary code when loaded, so it is never read (DL-14).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._files import fsync_directory
from ..errors import ChecksumMismatchError, DatasetFormatError, DatasetNotFoundError
from . import checksums
from ._download import download_file, verify_file
from ._paths import DATA_DIR_ENV, dataset_folder
from ._safe_tar import extract_members

BATCHES_DIR = "cifar-10-batches-bin"
PYTHON_DIR = "cifar-10-batches-py"
SPLITS = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
META_FILE = "batches.meta.txt"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Largest size accepted per archive member: the archive's own headers are not trusted (tar bombs).
_ARCHIVE_LIMITS = {
    **{f"{BATCHES_DIR}/{name}": checksums.CIFAR10_BATCH_BYTES for names in SPLITS.values() for name in names},
    f"{BATCHES_DIR}/{META_FILE}": 4096,
    f"{BATCHES_DIR}/readme.html": 1 << 16,  # shipped in the archive; harmless, kept
}
_ARCHIVE_REQUIRED = frozenset(name for name in _ARCHIVE_LIMITS if not name.endswith("readme.html"))


def _python_version_error(path: Path) -> DatasetFormatError:
    binary = checksums.CIFAR10_BINARY
    return DatasetFormatError(
        f"{path} is the python (pickle) version of CIFAR-10, which discrete_latents never reads: loading "
        f"a pickle can run arbitrary code. Use the binary version instead: {binary.name} "
        f"({checksums.CIFAR10_MIRRORS[0]}{binary.name}, sha256 {binary.sha256}), extracted to "
        f"{BATCHES_DIR}/, or call load_cifar10(..., download=True)."
    )


def read_cifar10_batch(path: str | os.PathLike[str], *, strict_size: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read one binary CIFAR-10 batch file.

    Args:
        path: a ``.bin`` batch file.
        strict_size: require exactly 30,730,000 bytes (10,000 records), as every official batch
            has. Default True; False accepts any non-zero multiple of 3,073 bytes.

    Returns:
        (images (N, 3, 32, 32) uint8 in R, G, B order, labels (N,) int64).

    Raises:
        DatasetFormatError: a wrong size or a label over 9, naming the file and the record.

    Examples:
        >>> images, labels = read_cifar10_batch("cifar-10-batches-bin/test_batch.bin")  # doctest: +SKIP
        >>> images.shape  # doctest: +SKIP
        (10000, 3, 32, 32)
    """
    path = Path(path)
    record, expected = checksums.CIFAR10_RECORD_BYTES, checksums.CIFAR10_BATCH_BYTES
    size = path.stat().st_size
    if strict_size and size != expected:
        raise DatasetFormatError(
            f"{path}: size: {size} bytes, expected {expected} (10,000 records of {record} bytes); "
            "a truncated file, or pass strict_size=False for batches of another length"
        )
    if size == 0 or size % record:
        raise DatasetFormatError(f"{path}: size: {size} bytes is not a positive multiple of the {record}-byte record")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size != size:  # the file changed under us
        raise DatasetFormatError(f"{path}: size: read {raw.size} bytes, expected {size}")
    rows = raw.reshape(-1, record)  # (N, 3073): label, then R, G, B planes
    labels = rows[:, 0]
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DatasetFormatError(f"{path}: label: {int(labels[bad[0]])} in record {int(bad[0])}, expected 0-9")
    # Each plane is row-major 32x32, so (N, 3*1024) -> (N, C, H, W) is a plain reshape.
    images = np.ascontiguousarray(rows[:, 1:]).reshape(-1, 3, 32, 32)
    return images, labels.astype(np.int64)


def extract_cifar10(archive: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """Safely extract ``cifar-10-binary.tar.gz`` into ``root/cifar-10-batches-bin``.

    Only the expected regular files are read (no links, devices, absolute or ``..`` paths, no
    extra members, bounded sizes), into a temporary sibling folder renamed into place at the
    end, so nothing is ever written outside ``root`` and a failure leaves no half folder. The
    archive's checksum is not checked here: `load_cifar10` does that first.

    Args:
        archive: the binary archive.
        root: folder receiving ``cifar-10-batches-bin/``.

    Returns:
        The ``cifar-10-batches-bin`` folder.

    Raises:
        DatasetFormatError: an unsafe, unexpected, oversized or missing member, or a corrupt archive.

    Examples:
        >>> extract_cifar10("data/cifar-10-binary.tar.gz", "data")  # doctest: +SKIP
        PosixPath('data/cifar-10-batches-bin')
    """
    root = Path(root)
    final = root / BATCHES_DIR
    tmp = root / f".{BATCHES_DIR}.{secrets.token_hex(8)}.tmp"
    tmp.mkdir(parents=True)
    try:
        extract_members(archive, tmp, _ARCHIVE_LIMITS, required=_ARCHIVE_REQUIRED, directories={BATCHES_DIR})
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            # Another process extracted the same archive first; its copy is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_directory(root)
    return final


def _find_batches(folder: Path) -> Path | None:
    if folder.name == BATCHES_DIR and folder.is_dir():
        return folder
    if (folder / BATCHES_DIR).is_dir():
        return folder / BATCHES_DIR
    return None


def _fetch_archive(folder: Path, mirrors: Sequence[str], allow_http: bool, timeout: float) -> Path:
    binary = checksums.CIFAR10_BINARY
    return download_file(
        [m.rstrip("/") + "/" + binary.name for m in mirrors],
        folder / binary.name,
        size=binary.size,
        sha256=binary.sha256,
        timeout=timeout,
        allow_http=allow_http,
        progress=sys.stderr.isatty(),
    )


def _prepare(folder: Path, why: str, download: bool, mirrors: Sequence[str], allow_http: bool, timeout: float) -> Path:
    """Verify (or fetch) the archive in ``folder`` and extract it; return the batches folder."""
    binary = checksums.CIFAR10_BINARY
    archive = folder / binary.name
    if archive.is_file():
        try:
            verify_file(archive, size=binary.size, sha256=binary.sha256)
        except ChecksumMismatchError as err:
            if not download:
                raise ChecksumMismatchError(
                    f"{err}\nFix: delete it and pass download=True to fetch a good copy."
                ) from None
            warnings.warn(f"{err}; downloading it again", stacklevel=3)
            _fetch_archive(folder, mirrors, allow_http, timeout)
    elif download:
        _fetch_archive(folder, mirrors, allow_http, timeout)
    else:
        if (folder / PYTHON_DIR).exists() or (folder / checksums.CIFAR10_PYTHON.name).exists():
            raise _python_version_error(folder / PYTHON_DIR)
        raise DatasetNotFoundError(
            f"CIFAR-10: neither {BATCHES_DIR}/ nor {binary.name} found in {folder} ({why}).\n"
            f"Fix: pass download=True to fetch {binary.name} ({binary.size} bytes, sha256 {binary.sha256}) from "
            f"{mirrors[0] if mirrors else 'a mirror'}, or put that file (or its extracted {BATCHES_DIR}/ folder) "
            f"into {folder}, or point root= at a folder that holds it "
            f"(root=None reads ${DATA_DIR_ENV}/cifar10 when that variable is set)."
        )
    return extract_cifar10(archive, folder)


def load_cifar10(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    download: bool = False,
    strict_size: bool = True,
    mirrors: Sequence[str] | None = None,
    allow_http: bool = False,
    timeout: float = 30.0,
) -> tuple[Tensor, Tensor]:
    """Load one CIFAR-10 split as (images (N, 3, 32, 32) uint8 RGB, labels (N,) int64).

    Looks for ``cifar-10-batches-bin/`` in ``root`` (or ``root`` being that folder); else
    verifies ``cifar-10-binary.tar.gz`` there (size + SHA-256) and extracts it safely; else,
    with ``download=True``, fetches the archive first.

    Args:
        root: folder holding ``cifar-10-batches-bin/`` or the archive. Default None:
            ``$DISCRETE_LATENTS_DATA_DIR/cifar10``, else ``~/.cache/discrete_latents/cifar10``.
        split: ``"train"`` (50,000 images, five batches) or ``"test"`` (10,000).
        download: fetch the archive when missing or corrupt. Default False (no network).
        strict_size: require the official 30,730,000 bytes per batch. Default True; False
            accepts other multiples of 3,073 bytes (your own or test batches).
        mirrors: base URLs to fetch the archive from. Default: the authors' HTTPS site.
        allow_http: allow plain-http mirrors (explicit opt-in). Default False.
        timeout: network timeout in seconds. Default 30.

    Raises:
        DatasetFormatError: the python (pickle) version was given; a batch of the wrong size,
            a label over 9, a missing batch; an unsafe or malformed archive.
        ChecksumMismatchError: the archive on disk is not the official one (``download=False``).
        FileNotFoundError: nothing found and ``download=False``; says which file goes where.
        DownloadError: the download failed on every mirror.

    Examples:
        >>> images, labels = load_cifar10("data", "test", download=True)  # doctest: +SKIP
        >>> images.shape, labels[:3]  # doctest: +SKIP
        (torch.Size([10000, 3, 32, 32]), tensor([3, 8, 8]))
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    folder, why = dataset_folder(root, "cifar10")
    if mirrors is None:
        mirrors = checksums.CIFAR10_MIRRORS
    if folder.name == PYTHON_DIR or (folder / "data_batch_1").is_file() or folder.name == checksums.CIFAR10_PYTHON.name:
        raise _python_version_error(folder)
    if folder.is_file():
        raise ValueError(f"root: {folder} is a file; pass the folder that holds {BATCHES_DIR}/ or the archive")
    batches = _find_batches(folder) or _prepare(folder, why, download, mirrors, allow_http, timeout)
    files = [batches / name for name in SPLITS[split]]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise DatasetFormatError(
            f"{batches}: member missing: {missing}; delete the folder and load again to re-extract the archive"
        )
    parts = [read_cifar10_batch(path, strict_size=strict_size) for path in files]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)
