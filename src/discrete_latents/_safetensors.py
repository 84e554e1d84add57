"""Safe reading and writing of tensors: safetensors only, checked before it is trusted.

A weights file is inspected byte by byte before ``safetensors`` maps it: a truncated file can
crash a memory-mapped reader with SIGBUS, and a header can claim absurd sizes. Then the tensors
are matched against the model they are for: names, shapes, dtypes and finiteness, listing every
mismatch at once. Names, shapes and dtypes are checked from the header alone, so a file that does
not fit the model is refused before any tensor data is read. There is no fallback to
pickle-based formats.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from ._files import atomic_write_bytes, loads_json
from .errors import CheckpointFormatError, ConfigError, NonFiniteError

MAX_HEADER_BYTES = 25_000_000
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                "BOOL": torch.bool}
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # added by DistributedDataParallel and torch.compile
MAX_LISTED = 100  # names shown in one message; the lists returned by load_module are always complete


def _describe_foreign(head: bytes) -> str | None:
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head  # an HTML page may start with a BOM
    if text.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the weights: fetch the real file (git lfs pull)"
    if text.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page (a failed download?), not a safetensors file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a torch.save pickle?); pickled weights are never loaded, convert them to safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle; pickled weights are never loaded, convert them to safetensors"
    return None


def _listing(names: list[str]) -> str:
    if len(names) <= MAX_LISTED:
        return repr(names)
    return f"{names[:MAX_LISTED]!r} and {len(names) - MAX_LISTED} more"


def inspect_safetensors(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Validate the layout of a safetensors file without mapping it; return its tensor entries.

    Checks, in order: not a known foreign format (Git LFS pointer, HTML page, pickle), at least 8
    bytes, a header length under `MAX_HEADER_BYTES` that fits the file, a UTF-8 JSON object
    header with well-formed entries (supported dtype, non-negative integer shape, ordered
    ``data_offsets`` whose span equals shape x dtype size), contiguous data regions without gaps or
    overlaps, and a file size of exactly 8 + header + data.

    Returns:
        ``{name: {"dtype", "shape", "data_offsets"}}`` (``__metadata__`` left out).

    Raises:
        CheckpointFormatError: naming the file and the first problem found.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode) and not path.is_dir():  # a FIFO or device would block or
            raise CheckpointFormatError(f"{path} is not a regular file")  # never end
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(64)
            foreign = _describe_foreign(head)
            if foreign:
                raise CheckpointFormatError(f"{path}: {foreign}")
            if size < 8:
                raise CheckpointFormatError(f"{path}: truncated or not a safetensors file: expected at least 8"
                                            f" bytes, found {size}")
            (header_len,) = struct.unpack("<Q", head[:8])
            if header_len > MAX_HEADER_BYTES:
                raise CheckpointFormatError(f"{path}: not a safetensors file (or corrupted): its header length"
                                            f" field claims {header_len} bytes, over the {MAX_HEADER_BYTES}-byte"
                                            " limit")
            if 8 + header_len > size:
                raise CheckpointFormatError(f"{path}: truncated: expected at least {8 + header_len} bytes,"
                                            f" found {size} (its header alone claims {header_len} bytes)")
            handle.seek(8)
            raw = handle.read(header_len)
    except FileNotFoundError:
        raise CheckpointFormatError(f"{path.name} not found in {path.parent}") from None
    except IsADirectoryError:
        raise CheckpointFormatError(f"{path} is a directory, expected a safetensors file") from None
    if len(raw) != header_len:  # the file shrank while being read
        raise CheckpointFormatError(f"{path}: truncated: expected at least {8 + header_len} bytes, found"
                                    f" {8 + len(raw)}")
    try:
        header = loads_json(raw, source=str(path), max_bytes=MAX_HEADER_BYTES)
    except ConfigError as err:
        raise CheckpointFormatError(f"{err}; not a safetensors file, or corrupted") from None
    if not isinstance(header, dict):
        raise CheckpointFormatError(f"{path}: the header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointFormatError(f"{path}: __metadata__ must map names to strings")
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointFormatError(f"{path}: tensor {name!r} has a malformed header entry (expected exactly"
                                        " 'dtype', 'shape' and 'data_offsets')")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise CheckpointFormatError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}"
                                        f" (supported: {sorted(DTYPE_BYTES)})")
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise CheckpointFormatError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise CheckpointFormatError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}"
                                        " (expected [begin, end] with 0 <= begin <= end)")
        count = 1
        for s in shape:  # Python ints cannot overflow; the product is compared, never allocated
            count *= s
        if count * DTYPE_BYTES[dtype] != offsets[1] - offsets[0]:
            raise CheckpointFormatError(f"{path}: tensor {name!r} of shape {shape} and dtype {dtype} needs"
                                        f" {count * DTYPE_BYTES[dtype]} bytes, its data_offsets span"
                                        f" {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            kind = "overlaps the previous tensor" if begin < position else "leaves a gap after the previous tensor"
            raise CheckpointFormatError(f"{path}: tensor {name!r} starts at data byte {begin}, expected"
                                        f" {position}: it {kind} (corrupted data_offsets)")
        position = end
    expected = 8 + header_len + position
    if size != expected:
        kind = "truncated" if size < expected else "trailing bytes after the last tensor"
        raise CheckpointFormatError(f"{path}: {kind}: expected {expected} bytes, found {size}")
    return header


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Load every tensor of a validated safetensors file to CPU.

    Raises:
        CheckpointFormatError: the file is missing, malformed or truncated (see `inspect_safetensors`).
    """
    inspect_safetensors(path)
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError
        raise CheckpointFormatError(f"{path}: cannot be read as safetensors ({err})") from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` strings of a validated safetensors file (empty if it has none)."""
    inspect_safetensors(path)
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as handle:
            return dict(handle.metadata() or {})
    except Exception as err:
        raise CheckpointFormatError(f"{path}: cannot be read as safetensors ({err})") from None


def fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, shapes, dtypes and bytes): equal exactly when the weights are."""
    digest = hashlib.sha256()
    hash_state(digest, module)
    return digest.hexdigest()


def hash_state(digest: Any, module: nn.Module) -> None:
    """Feed every state tensor of ``module`` (name, shape, dtype, raw bytes) to a hashlib ``digest``."""
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def _read_tensors(path: str | os.PathLike[str], names: Mapping[str, str]) -> dict[str, Tensor]:
    """Read only the tensors ``names`` ({key in result: name in file}) of a validated file."""
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(name) for key, name in names.items()}
    except Exception as err:
        raise CheckpointFormatError(f"{path}: cannot be read as safetensors ({err})") from None


def _storage_key(tensor: Tensor) -> tuple[Any, ...] | None:
    """Identity of the memory a tensor views; ``None`` for empty tensors (they share nothing)."""
    if tensor.numel() == 0:
        return None
    if tensor.is_meta:  # no memory to compare: only the very same tensor object is the same tensor
        return ("meta", id(tensor))
    return (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tuple(tensor.stride()), tensor.dtype)


def _alias_groups(state: Mapping[str, Tensor]) -> dict[str, list[str]]:
    """For each name, every name of the state dict that is the very same tensor (tied weights)."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name, tensor in state.items():
        key = _storage_key(tensor)
        if key is not None:
            groups.setdefault(key, []).append(name)
    return {name: group for group in groups.values() for name in group}


def write_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, Tensor],
                      metadata: dict[str, str] | None = None) -> None:
    """Write tensors (made contiguous, on CPU) atomically.

    Every name is stored; a tensor sharing memory with an earlier one is stored as a copy
    (safetensors refuses shared memory). `save_module` stores tied weights once instead.
    """
    data: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.numel():
            pointer = tensor.untyped_storage().data_ptr()
            if pointer in seen:
                tensor = tensor.clone()
            else:
                seen.add(pointer)
        data[name] = tensor
    atomic_write_bytes(path, safetensors.torch.save(data, metadata=metadata))


def _strip_names(names: Iterable[str]) -> dict[str, str]:
    """{name without wrapper prefixes: name in file}; a prefix goes only when every name has it."""
    mapping = {name: name for name in names}
    stripped = True
    while stripped and mapping:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in mapping):
                mapping = {key[len(prefix):]: name for key, name in mapping.items()}
                stripped = True
    return mapping


def save_module(module: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write a module's state dict (parameters and persistent buffers) as safetensors, atomically.

    Tied weights (one tensor under several names) are stored once, under the first name;
    `load_module` restores the sharing because the module it loads into ties them again.
    """
    kept: dict[str, Tensor] = {}
    seen: set[tuple[Any, ...]] = set()
    for name, tensor in module.state_dict().items():
        key = _storage_key(tensor)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        kept[name] = tensor
    write_safetensors(path, kept)


def match_header(module: nn.Module, header: Mapping[str, Any], path: str | os.PathLike[str]) -> dict[str, str]:
    """Check a file's tensor names, shapes and dtypes (its header) against ``module`` (also on the meta device).

    Returns:
        ``{name in the module: name in the file}`` for every tensor to read.

    Raises:
        CheckpointFormatError: listing every missing, unexpected or mismatched tensor.
    """
    in_file = _strip_names(header)
    expected = module.state_dict(keep_vars=True)  # the parameters themselves: tied ones are one object
    aliases = _alias_groups(expected)
    # A tied weight is stored once (see save_module): any one of its names fills all of them.
    missing = sorted(n for n in expected if not any(a in in_file for a in aliases.get(n, [n])))
    unexpected = sorted(set(in_file) - set(expected))
    problems = []
    if missing or unexpected:
        problem = f"missing keys {_listing(missing)}, unexpected keys {_listing(unexpected)}"
        for prefix in WRAPPER_PREFIXES:
            carrying = sum(key.startswith(prefix) for key in in_file)
            if carrying:
                problem += (f" ({carrying} of {len(in_file)} names start with {prefix!r}; such a wrapper prefix is"
                            " removed only when every name carries it)")
        problems.append(problem)
    for name in sorted(set(expected) & set(in_file)):
        want, entry = expected[name], header[in_file[name]]
        shape, dtype = tuple(entry["shape"]), TORCH_DTYPES[entry["dtype"]]
        if shape != tuple(want.shape):
            empty = " (an empty tensor)" if 0 in shape and want.numel() else ""
            problems.append(f"{name!r}: shape {shape}{empty} in the file, the model expects {tuple(want.shape)}")
        elif dtype != want.dtype:
            problems.append(f"{name!r}: dtype {dtype} ({entry['dtype']}) in the file, the model expects"
                            f" {want.dtype}; convert the file explicitly, it is never cast on load")
    if problems:
        raise CheckpointFormatError(f"{path}: does not match the model: " + "; ".join(problems))
    return {name: in_file[name] for name in expected if name in in_file}


def load_module(module: nn.Module, path: str | os.PathLike[str], *, check_finite: bool = True) -> None:
    """Load weights into ``module`` strictly, checking names, shapes, dtypes and finiteness first.

    A ``module.`` or ``_orig_mod.`` prefix (DistributedDataParallel, ``torch.compile``) is removed
    when every name in the file carries it. Names, shapes and dtypes are compared from the file's
    header before any tensor is read; values are never cast to another dtype.

    Raises:
        CheckpointFormatError: listing every mismatch; the module is left unchanged.
        NonFiniteError: NaN or infinite weights (with ``check_finite``); the module is left unchanged.
    """
    names = match_header(module, inspect_safetensors(path), path)
    tensors = _read_tensors(path, names)
    if check_finite:
        bad = [n for n, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise NonFiniteError(f"{path}: NaN or infinite values in {_listing(bad)} (pass check_finite=False to"
                                 " load anyway)")
    module.load_state_dict(tensors, strict=False)
