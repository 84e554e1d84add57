"""Extract a fixed set of regular files from a tar archive without trusting its paths or sizes.

Nothing is ever written from a member's own name: each expected member maps to
``dest_dir / basename``, and anything unexpected (links, devices, ``..``, absolute paths, extra
or duplicate members, oversized members) stops the extraction (DL-12, DL-13).
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from collections.abc import Collection, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

from .._files import atomic_write_bytes
from ..errors import DatasetFormatError


def _check_safe_name(archive: Path, name: str) -> None:
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or ".." in parts or "\\" in name:
        raise DatasetFormatError(f"{archive}: member {name!r} has an unsafe path (absolute or '..'); refusing it")


def extract_members(
    archive: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    allowed: Mapping[str, int],
    *,
    required: Collection[str],
    directories: Collection[str] = (),
) -> dict[str, Path]:
    """Extract the expected regular files of ``archive`` into ``dest_dir`` (flat, by base name).

    Args:
        archive: a tar file, compressed or not.
        dest_dir: existing folder the files are written to (each atomically).
        allowed: member name -> largest size accepted, in bytes. Any other file is an error.
        required: the names of ``allowed`` that must be present.
        directories: directory entries that may appear (they are skipped, not created).

    Returns:
        member name -> extracted path.

    Raises:
        DatasetFormatError: a link, device or fifo member; an absolute or ``..`` path; an
            unexpected, duplicate, oversized or missing member; a corrupt archive.

    Examples:
        >>> extract_members("a.tar.gz", "out", {"d/x.bin": 100}, required={"d/x.bin"})  # doctest: +SKIP
        {'d/x.bin': PosixPath('out/x.bin')}
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    written: dict[str, Path] = {}
    seen: set[str] = set()
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.issym() or member.islnk():
                    raise DatasetFormatError(
                        f"{archive}: member {name!r} is a link to {member.linkname!r}; only regular files are read"
                    )
                if not (member.isreg() or member.isdir()):
                    raise DatasetFormatError(
                        f"{archive}: member {name!r} is a device, fifo or other special file; "
                        "only regular files are read"
                    )
                _check_safe_name(archive, name)
                if name in seen:
                    raise DatasetFormatError(f"{archive}: member {name!r} appears twice")
                seen.add(name)
                if member.isdir():
                    if name not in directories:
                        raise DatasetFormatError(f"{archive}: unexpected directory {name!r}")
                    continue
                if name not in allowed:
                    raise DatasetFormatError(f"{archive}: unexpected member {name!r}; expected only {sorted(allowed)}")
                if member.size > allowed[name]:
                    raise DatasetFormatError(
                        f"{archive}: member {name!r} is {member.size} bytes, over its {allowed[name]}-byte limit"
                    )
                handle = tar.extractfile(member)
                if handle is None:  # only for non-regular members, already refused above
                    raise DatasetFormatError(f"{archive}: member {name!r} cannot be read")
                with handle:
                    data = handle.read(member.size + 1)
                if len(data) != member.size:
                    raise DatasetFormatError(f"{archive}: member {name!r} is truncated")
                target = dest_dir / PurePosixPath(name).name
                atomic_write_bytes(target, data)
                written[name] = target
    except DatasetFormatError:
        raise
    # Write errors (a full disk) are OSErrors too, but not gzip.BadGzipFile: they propagate as is.
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DatasetFormatError(f"{archive}: corrupt or truncated tar archive ({err})") from None
    missing = sorted(set(required) - set(written))
    if missing:
        raise DatasetFormatError(f"{archive}: member missing: {missing}")
    return written
