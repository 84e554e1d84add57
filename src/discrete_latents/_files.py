"""Crash-safe file and folder writes, and the one strict JSON reader.

A file write goes to a temporary sibling, is flushed to disk, then renamed over the final name;
a folder save (`save_folder`) is written whole beside its target and switched in with one
rename. A crash leaves either the previous file or folder or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import shutil
import stat
import sys
import tempfile
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from .errors import ConfigError

MAX_JSON_BYTES = 1_000_000  # configs are a few kB; a cap stops a 50 MB file before parsing
MAX_JSON_DEPTH = 64  # configs nest two or three levels; deeper input is refused


def fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    fsync_directory(path.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # a libc without it (glibc < 2.28, musl)
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: the kernel or file system cannot exchange
        return False
    raise OSError(error, os.strerror(error), str(a))


def _switch(staging: Path, target: Path) -> Path | None:
    """Put the complete folder ``staging`` at ``target``; return where the replaced folder now is."""
    if not target.exists():
        os.rename(staging, target)
        return None
    if _exchange(staging, target):
        return staging
    # Two renames: a crash between them leaves the previous save beside the target, under a
    # name that says so, never a mixed folder.
    backup = target.with_name(f".{target.name}.previous-{uuid.uuid4().hex[:8]}")
    os.rename(target, backup)
    try:
        os.rename(staging, target)
    except BaseException:
        with contextlib.suppress(OSError):  # never mask the first error; the next save restores the backup
            os.rename(backup, target)
        raise
    return backup


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        else:
            fsync_directory(path)
    fsync_directory(root)


def save_folder(target: str | os.PathLike[str], write: Callable[[Path], object],
                written_names: Collection[str]) -> Path:
    """Save a folder as a unit: ``write(staging)`` fills a new sibling folder, which then replaces ``target``.

    A save that fails or is killed at any point leaves the previous folder as it was (and no
    half-written one at ``target``). A folder holding files that no save writes is refused
    rather than replaced, so that nothing of the user's is ever deleted.

    Args:
        target: the folder to create or replace.
        write: fills the (empty) folder it is given.
        written_names: top-level names a save may leave in ``target``; anything else there is refused.

    Returns:
        ``target`` as a `Path`.

    Raises:
        NotADirectoryError: ``target`` is a file.
        FileExistsError: ``target`` holds files no save writes (they are listed).
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} is a file; pass a folder to save into")
    if target.is_dir():
        foreign = sorted(p.name for p in target.iterdir() if p.name not in written_names)
        if foreign:
            raise FileExistsError(f"{target} holds files that no save writes ({foreign[:10]}); save into a new or"
                                  " empty folder, or move them away first (a save replaces the whole folder)")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.saving-*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    for backup in target.parent.glob(f".{target.name}.previous-*"):  # killed between the two renames
        if target.exists():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.rename(backup, target)  # the previous save comes back before anything else happens
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        write(staging)
        _fsync_tree(staging)
        replaced = _switch(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # The new save is in place: what follows only tidies up, and cannot undo it.
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    fsync_directory(target.parent)
    return target


def discard(path: Path) -> None:
    """Remove a temporary file if it is there. A failure is ignored: cleanup after a failed write
    must never replace the error that made it necessary (a full disk, say) with its own."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def dumps_json(obj: Any) -> str:
    """The one JSON layout the library writes: sorted keys, 2-space indent, no NaN, newline."""
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_bytes(path, dumps_json(obj).encode("utf-8"))


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ConfigError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> float:
    raise ConfigError(f"{name} is not valid JSON; configs must hold finite numbers")


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e400 parses to inf in Python's json
        raise ConfigError(f"the number {literal[:40]} is out of the range of a finite float")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def loads_json(text: str | bytes, source: str = "<string>", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse JSON strictly: no duplicate keys, no NaN/Infinity, bounded size and depth.

    Policy on a byte-order mark: a leading UTF-8 BOM (written by some Windows editors) is accepted
    and dropped, in bytes and in text alike; any other encoding (UTF-16, Latin-1) is refused.

    Raises:
        ConfigError: naming ``source`` and what is wrong.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise ConfigError(f"{source}: expected JSON text, got {type(text).__name__}")
    if len(text) > max_bytes:
        raise ConfigError(f"{source}: {len(text)} bytes is over the {max_bytes}-byte limit")
    if isinstance(text, (bytes, bytearray)):
        try:
            # utf-8-sig: a byte-order mark written by some Windows editors is accepted and dropped.
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{source}: not UTF-8 text ({err})") from None
    elif text.startswith("\ufeff"):
        text = text[1:]  # the same BOM policy for text that was decoded without utf-8-sig
    if not text.strip():
        raise ConfigError(f"{source}: the file is empty, expected a JSON object")
    try:
        value = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant,
                           parse_float=_parse_float)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except RecursionError:
        raise ConfigError(f"{source}: JSON nested too deeply") from None
    except ValueError as err:  # json.JSONDecodeError, an integer of more than 4300 digits
        raise ConfigError(f"{source}: invalid JSON ({err})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ConfigError(f"{source}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file strictly (see `loads_json`); a missing file is a ``ConfigError``."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{path} is not a regular file")  # reading a FIFO or a device could hang
        size = info.st_size
        if size > MAX_JSON_BYTES:
            raise ConfigError(f"{path}: {size} bytes is over the {MAX_JSON_BYTES}-byte limit for a config")
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{path.name} not found in {path.parent}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, expected a JSON file") from None
    return loads_json(data, source=str(path))
