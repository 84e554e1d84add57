"""Safe reading and writing of tensors: safetensors only, checked before it is trusted.

A weights file is inspected byte by byte before ``safetensors`` maps it: a truncated file can
crash a memory-mapped reader with SIGBUS, and a header can claim absurd sizes. Then the tensors
are matched against the model they are for: names, shapes, dtypes and finiteness, listing every
mismatch at once. There is no fallback to pickle-based formats.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor, nn

from .errors import CheckpointFormatError, NonFiniteError
from .files import atomic_write_bytes

MAX_HEADER_BYTES = 25_000_000
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # added by DistributedDataParallel and torch.compile


def _describe_foreign(head: bytes) -> str | None:
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the weights: fetch the real file (git lfs pull)"
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page (a failed download?), not a safetensors file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a torch.save pickle?); pickled weights are never loaded, convert them to safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle; pickled weights are never loaded, convert them to safetensors"
    return None


def inspect_safetensors(path: str | os.PathLike[str]) -> dict[str, dict[str, object]]:
    """Validate the layout of a safetensors file without mapping it; return its tensor entries.

    Raises:
        CheckpointFormatError: naming the file and the first problem found.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            foreign = _describe_foreign(head + handle.read(56))
            if foreign:
                raise CheckpointFormatError(f"{path}: {foreign}")
            if size < 8:
                raise CheckpointFormatError(f"{path}: {size} bytes is too short for a safetensors file"
                                            " (expected at least 8)")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > MAX_HEADER_BYTES:
                raise CheckpointFormatError(f"{path}: header claims {header_len} bytes, over the"
                                            f" {MAX_HEADER_BYTES}-byte limit")
            if 8 + header_len > size:
                raise CheckpointFormatError(f"{path}: truncated: the header needs {8 + header_len} bytes,"
                                            f" the file has {size}")
            handle.seek(8)
            raw = handle.read(header_len)
    except FileNotFoundError:
        raise CheckpointFormatError(f"{path.name} not found in {path.parent}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointFormatError(f"{path}: the header is not UTF-8 JSON ({err.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise CheckpointFormatError(f"{path}: the header must be a JSON object, got {type(header).__name__}")
    header.pop("__metadata__", None)
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointFormatError(f"{path}: tensor {name!r} has a malformed header entry")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise CheckpointFormatError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise CheckpointFormatError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise CheckpointFormatError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
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
            raise CheckpointFormatError(f"{path}: tensor {name!r} starts at byte {begin}, expected {position}"
                                        " (overlapping or gapped data_offsets)")
        position = end
    expected = 8 + header_len + position
    if size != expected:
        kind = "truncated" if size < expected else "trailing bytes"
        raise CheckpointFormatError(f"{path}: {kind}: expected {expected} bytes, found {size}")
    return header


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Load every tensor of a validated safetensors file to CPU."""
    inspect_safetensors(path)
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError
        raise CheckpointFormatError(f"{path}: cannot be read as safetensors ({err})") from None


def write_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, Tensor],
                      metadata: dict[str, str] | None = None) -> None:
    """Write tensors (made contiguous, on CPU) atomically."""
    data = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    atomic_write_bytes(path, safetensors.torch.save(data, metadata=metadata))


def strip_wrapper_prefix(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop a ``module.`` / ``_orig_mod.`` prefix, but only when every key carries it."""
    for prefix in WRAPPER_PREFIXES:
        if tensors and all(k.startswith(prefix) for k in tensors):
            return {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def save_module(module: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write a module's state dict (parameters and persistent buffers) as safetensors, atomically."""
    write_safetensors(path, module.state_dict())


def load_module(module: nn.Module, path: str | os.PathLike[str], *, strict: bool = True,
                check_finite: bool = True) -> tuple[list[str], list[str]]:
    """Load weights into ``module``, checking names, shapes, dtypes and finiteness first.

    Args:
        module: the model to fill.
        path: a ``model.safetensors`` file.
        strict: raise on missing or unexpected names; with ``False`` they are returned instead.
        check_finite: raise :class:`NonFiniteError` on NaN/inf weights.

    Returns:
        (missing, unexpected) key lists (empty when ``strict``).

    Raises:
        CheckpointFormatError: listing every mismatch; the module is left unchanged.
    """
    tensors = strip_wrapper_prefix(read_safetensors(path))
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    problems = []
    if strict and (missing or unexpected):
        problems.append(f"missing keys {missing}, unexpected keys {unexpected}")
    for name in sorted(set(expected) & set(tensors)):
        want, got = expected[name], tensors[name]
        if want.shape != got.shape:
            problems.append(f"{name!r}: shape {tuple(got.shape)} in the file, the model expects {tuple(want.shape)}")
        elif want.dtype != got.dtype:
            problems.append(f"{name!r}: dtype {got.dtype} in the file, the model expects {want.dtype}")
        elif want.numel() == 0 and got.numel() == 0 and want.ndim == 0:
            problems.append(f"{name!r}: empty tensor")
    if problems:
        raise CheckpointFormatError(f"{path}: does not match the model: " + "; ".join(problems))
    if check_finite:
        bad = [n for n, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise NonFiniteError(f"{path}: NaN or infinite values in {bad} (pass check_finite=False to load anyway)")
    module.load_state_dict({k: v for k, v in tensors.items() if k in expected}, strict=False)
    return ([], []) if strict else (missing, unexpected)
