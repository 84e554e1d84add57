"""MNIST from its four original IDX files: find them, verify them, fetch them on request, parse them.

Files are looked for in ``root`` when it is given, else in ``$DISCRETE_LATENTS_DATA_DIR/mnist``,
else in ``~/.cache/discrete_latents/mnist``, each as ``<name>.gz`` or unpacked ``<name>``. No
network is used unless ``download=True``. IDX is big-endian: a magic number (2051 for images,
2049 for labels), the dimensions, then one uint8 per pixel or label.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import sys
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ChecksumMismatchError, DatasetFormatError, DatasetNotFoundError
from . import checksums
from ._download import download_file
from ._paths import DATA_DIR_ENV, dataset_folder

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MAX_UNPACKED_BYTES = 1 << 31  # bounds what an unverified (user's own) IDX file may unpack to
_GZIP_MAGIC = b"\x1f\x8b"


def _gunzip(raw: bytes, limit: int, source: Path) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as handle:
            data = handle.read(limit + 1)  # one byte over the limit is enough to tell
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetFormatError(f"{source}: gzip: corrupt or truncated ({err})") from None
    if len(data) > limit:
        raise DatasetFormatError(f"{source}: gzip: unpacks to more than {limit} bytes")
    return data


def _read_unpacked(path: Path, limit: int = MAX_UNPACKED_BYTES) -> bytes:
    """The IDX bytes of ``path``, gunzipped when it starts with the gzip magic."""
    if path.stat().st_size > limit:
        raise DatasetFormatError(f"{path}: {path.stat().st_size} bytes is over the {limit}-byte limit")
    raw = path.read_bytes()
    return _gunzip(raw, limit, path) if raw[:2] == _GZIP_MAGIC else raw


def _parse_idx(data: bytes, magic: int, source: Path | str) -> np.ndarray:
    ndim = 3 if magic == IMAGES_MAGIC else 1
    what = "images" if magic == IMAGES_MAGIC else "labels"
    if len(data) < 4:
        raise DatasetFormatError(f"{source}: magic: file is {len(data)} bytes, too short for an IDX header")
    zero, dtype, found_ndim = struct.unpack(">HBB", data[:4])
    found = struct.unpack(">i", data[:4])[0]
    # Bytes 0-1 are zero and byte 2 is 0x08 (unsigned byte) in every MNIST file.
    if zero != 0 or dtype != 0x08:
        raise DatasetFormatError(f"{source}: magic: {found} (0x{found:08x}), expected {magic} (0x{magic:08x}, uint8)")
    if found_ndim != ndim:
        hint = (
            " (is this a labels file?)" if found_ndim == 1 else " (is this an images file?)" if found_ndim == 3 else ""
        )
        raise DatasetFormatError(
            f"{source}: ndim: magic {found} declares {found_ndim} dimensions, expected {ndim}{hint}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFormatError(f"{source}: header: {len(data)} bytes, an IDX {what} header needs {header}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if ndim == 3 and dims[1] != 28:
        raise DatasetFormatError(f"{source}: rows: {dims[1]}, expected 28")
    if ndim == 3 and dims[2] != 28:
        raise DatasetFormatError(f"{source}: cols: {dims[2]}, expected 28")
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) < expected:
        raise DatasetFormatError(
            f"{source}: count: header declares {dims[0]} {what} ({expected} bytes), file has only {len(data)} bytes"
        )
    if len(data) > expected:
        raise DatasetFormatError(
            f"{source}: trailing bytes: {len(data) - expected} bytes after the {dims[0]} {what} the header declares"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike[str], magic: int) -> np.ndarray:
    """Parse one MNIST IDX file, gzipped or not, into a uint8 array.

    Args:
        path: the file.
        magic: 2051 (images: returns (N, 28, 28)) or 2049 (labels: returns (N,)).

    Raises:
        DatasetFormatError: corrupt gzip, wrong magic, ndim, rows, cols, a count that does not
            match the file's length, or trailing bytes; the message names the file and the field.

    Examples:
        >>> read_idx("t10k-labels-idx1-ubyte.gz", 2049).shape  # doctest: +SKIP
        (10000,)
    """
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise ValueError(f"magic: expected {IMAGES_MAGIC} (images) or {LABELS_MAGIC} (labels), got {magic!r}")
    path = Path(path)
    return _parse_idx(_read_unpacked(path), magic, path)


def _read_verified(path: Path, name: str) -> bytes:
    """Unpacked bytes of an official MNIST file; anything else raises ChecksumMismatchError."""
    packed, unpacked = checksums.MNIST_FILES[f"{name}.gz"], checksums.MNIST_UNPACKED[name]
    size = path.stat().st_size
    if size > max(packed.size, unpacked.size):  # bigger than either official form: do not even read it
        raise ChecksumMismatchError(
            f"{path}: {size} bytes, more than the official {name} ({unpacked.size} bytes, {packed.size} gzipped)"
        )
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        if size == packed.size and hashlib.sha256(raw).hexdigest() == packed.sha256:
            return _gunzip(raw, unpacked.size, path)
        # A re-compressed copy (e.g. ../shared/data/mnist) differs only in its gzip bytes.
        data = _gunzip(raw, unpacked.size, path)
    else:
        data = raw
    actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if len(data) != unpacked.size or actual != unpacked.md5:
        raise ChecksumMismatchError(
            f"{path}: not the official {name}: unpacked {len(data)} bytes with md5 {actual}, "
            f"expected {unpacked.size} bytes with md5 {unpacked.md5}"
        )
    return data


def _read_local(folder: Path, name: str, verify: bool) -> tuple[Path, bytes] | None:
    """The first good copy of ``name`` in ``folder`` (``.gz`` first), None when there is none."""
    candidates = [p for p in (folder / f"{name}.gz", folder / name) if p.is_file()]
    if not verify:
        return (candidates[0], _read_unpacked(candidates[0])) if candidates else None
    errors: list[Exception] = []
    for path in candidates:
        try:
            return path, _read_verified(path, name)
        except (ChecksumMismatchError, DatasetFormatError) as err:
            errors.append(err)
    if errors:
        raise errors[0]
    return None


def _missing_message(split: str, folder: Path, why: str, names: list[str], mirrors: Sequence[str]) -> str:
    lines = [f"MNIST {split!r}: {len(names)} file(s) missing from {folder} ({why}):"]
    for name in names:
        f = checksums.MNIST_FILES[f"{name}.gz"]
        lines.append(f"  {f.name}  ({f.size} bytes, sha256 {f.sha256}), or unpacked as {name}")
    lines.append(
        f"Fix: pass download=True to fetch them from {mirrors[0] if mirrors else 'a mirror'}, or copy these "
        f"files (gzipped or unpacked) into {folder}, or point root= at a folder that holds them "
        f"(root=None reads ${DATA_DIR_ENV}/mnist when that variable is set)."
    )
    return "\n".join(lines)


def _collect(
    root: str | os.PathLike[str] | None,
    names: Sequence[str],
    label: str,
    *,
    download: bool,
    verify: bool,
    mirrors: Sequence[str] | None,
    allow_http: bool,
    timeout: float,
) -> list[tuple[Path, bytes]]:
    folder, why = dataset_folder(root, "mnist")
    if mirrors is None:
        mirrors = checksums.MNIST_MIRRORS + (checksums.MNIST_HTTP_MIRRORS if allow_http else ())
    found: dict[str, tuple[Path, bytes]] = {}
    missing: list[str] = []
    for name in names:
        try:
            local = _read_local(folder, name, verify)
        except (ChecksumMismatchError, DatasetFormatError) as err:
            if not download:
                raise type(err)(
                    f"{err}\nFix: delete it and pass download=True to fetch a good copy, "
                    "or pass verify=False if these are your own IDX files."
                ) from None
            warnings.warn(f"{err}; downloading it again", stacklevel=3)
            local = None
        if local is not None:
            found[name] = local
        elif download:
            remote = checksums.MNIST_FILES[f"{name}.gz"]
            path = download_file(
                [m.rstrip("/") + "/" + remote.name for m in mirrors],
                folder / remote.name,
                size=remote.size,
                sha256=remote.sha256,
                timeout=timeout,
                allow_http=allow_http,
                progress=sys.stderr.isatty(),
            )
            found[name] = path, (_read_verified(path, name) if verify else _read_unpacked(path))
        else:
            missing.append(name)
    if missing:
        raise DatasetNotFoundError(_missing_message(label, folder, why, missing, mirrors))
    return [found[name] for name in names]


def mnist_files(
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
    mirrors: Sequence[str] | None = None,
    allow_http: bool = False,
    timeout: float = 30.0,
) -> dict[str, Path]:
    """Make sure the four MNIST files are present (and good), and return their paths.

    Args:
        root: folder holding the files (``<name>.gz`` or unpacked). Default None: use
            ``$DISCRETE_LATENTS_DATA_DIR/mnist``, else ``~/.cache/discrete_latents/mnist``.
        download: fetch missing files, and re-fetch ones that fail verification, from the
            mirrors. Default False: no network at all.
        verify: check each file is the official one (size + SHA-256 of the ``.gz``, or size + MD5
            of the unpacked bytes, so re-compressed copies pass). Default True; pass False for
            your own IDX files (their structure is still checked).
        mirrors: base URLs to fetch from, in order. Default: the two HTTPS mirrors of
            `checksums` (plus LeCun's http site with ``allow_http``).
        allow_http: allow plain-http mirrors (an explicit opt-in). Default False.
        timeout: network timeout in seconds. Default 30.

    Returns:
        ``{"train-images-idx3-ubyte": path, ...}`` for the four files.

    Raises:
        FileNotFoundError: files missing and ``download=False``; says which files go where.
        ChecksumMismatchError: a file is not the official one and ``download=False``.
        DatasetFormatError: a file is not valid gzip.
        DownloadError: a download failed on every mirror.

    Examples:
        >>> paths = mnist_files("../shared/data/mnist")  # doctest: +SKIP
        >>> sorted(paths)[0]  # doctest: +SKIP
        't10k-images-idx3-ubyte'
    """
    names = FILES["train"] + FILES["test"]
    found = _collect(
        root,
        names,
        "train+test",
        download=download,
        verify=verify,
        mirrors=mirrors,
        allow_http=allow_http,
        timeout=timeout,
    )
    return {name: path for name, (path, _) in zip(names, found)}


def load_mnist(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    download: bool = False,
    verify: bool = True,
    mirrors: Sequence[str] | None = None,
    allow_http: bool = False,
    timeout: float = 30.0,
) -> tuple[Tensor, Tensor]:
    """Load one MNIST split as (images (N, 1, 28, 28) uint8, labels (N,) int64).

    Args:
        root: folder holding the IDX files, gzipped or not. Default None: see `mnist_files`.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        download: fetch missing or corrupt files. Default False (no network).
        verify: accept only the official files. Default True; False for your own IDX files.
        mirrors: base URLs to fetch from, in order. Default: the HTTPS mirrors.
        allow_http: allow plain-http mirrors (explicit opt-in). Default False.
        timeout: network timeout in seconds. Default 30.

    Raises:
        FileNotFoundError: files missing and ``download=False`` (says which files go where).
        ChecksumMismatchError: a file is not the official one (with ``verify=True``).
        DatasetFormatError: bad gzip or IDX content, image/label counts that differ, a label
            outside 0-9; the message names the file and the field.

    Examples:
        >>> images, labels = load_mnist("../shared/data/mnist", "test")  # doctest: +SKIP
        >>> images.shape, images.dtype, labels.shape  # doctest: +SKIP
        (torch.Size([10000, 1, 28, 28]), torch.uint8, torch.Size([10000]))
    """
    if split not in FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    (image_file, image_bytes), (label_file, label_bytes) = _collect(
        root,
        FILES[split],
        split,
        download=download,
        verify=verify,
        mirrors=mirrors,
        allow_http=allow_http,
        timeout=timeout,
    )
    images = _parse_idx(image_bytes, IMAGES_MAGIC, image_file)
    labels = _parse_idx(label_bytes, LABELS_MAGIC, label_file)
    if len(images) != len(labels):
        raise DatasetFormatError(f"{label_file}: count: {len(labels)} labels but {image_file} has {len(images)} images")
    if labels.size and labels.max() > 9:
        index = int(np.argmax(labels > 9))
        raise DatasetFormatError(f"{label_file}: label: {int(labels[index])} at index {index}, expected 0-9")
    # copy(): frombuffer views read-only bytes, and torch wants writable memory.
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
