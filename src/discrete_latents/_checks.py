"""Input checks for public entry points: a clear message instead of an error from deep in torch."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence

import torch
from torch import Tensor

from ._memory import available_memory
from .errors import NonFiniteError

# Registry keys and bundled pipeline names: never an import path such as "pkg.mod:Cls".
NAME_PATTERN = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")


def check_images(images: object, channels: int, size: int | Sequence[int] | None = None, name: str = "images",
                 dtype: torch.dtype | None = None) -> Tensor:
    """Check ``images`` is a finite float tensor (B, channels, H, W) with B >= 1.

    ``size`` is (H, W), or one int for square images, or ``None`` for any size.

    Float images of another precision (float64, float16, bfloat16) are converted to ``dtype``,
    the model's, when it is given: a convolution refuses to mix them with its weights.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, {channels}, H, W), got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"{name}: expected a float tensor with values in [0, 1], got dtype {images.dtype}"
                        " (convert uint8 images with images.float() / 255)")
    if dtype is not None and images.dtype != dtype:
        images = images.to(dtype)
    shape = (size, size) if isinstance(size, int) else tuple(size) if size is not None else None
    expected = f"(B, {channels}, {shape[0]}, {shape[1]})" if shape else f"(B, {channels}, H, W)"
    if images.ndim != 4:
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name}: the batch is empty (shape {tuple(images.shape)})")
    if images.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channel(s), shape {expected}, got {tuple(images.shape)}")
    if shape is not None and tuple(images.shape[2:]) != shape:
        raise ValueError(f"{name}: expected {shape[0]}x{shape[1]} images (height x width), shape {expected},"
                         f" got {tuple(images.shape)}")
    check_finite(images, name)
    low, high = float(images.min()), float(images.max())
    if low < -0.01 or high > 1.01:  # a little slack for resampling overshoot
        hint = " (divide uint8-range pixels by 255)" if high > 1.5 else ""
        raise ValueError(f"{name}: expected pixel values in [0, 1], got values in [{low:.3g}, {high:.3g}]{hint}")
    return images


def check_finite(tensor: Tensor, name: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        raise NonFiniteError(f"{name}: holds NaN or infinite values")


def check_indices(indices: object, codebook_size: int, grid_size: Sequence[int] | None = None,
                  name: str = "indices", trailing: tuple[int, ...] = ()) -> Tensor:
    """Check ``indices`` is an integer tensor (B, h, w, *trailing) with values in [0, codebook_size)."""
    if not isinstance(indices, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of int64 code ids, got {type(indices).__name__}")
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise TypeError(f"{name}: expected an integer tensor of code ids, got dtype {indices.dtype}")
    grid = tuple(grid_size) if grid_size is not None else None
    expected = f"(B, {grid[0]}, {grid[1]}{''.join(f', {t}' for t in trailing)})" if grid else "(B, h, w)"
    if indices.ndim != 3 + len(trailing) or indices.shape[0] == 0:
        raise ValueError(f"{name}: expected shape {expected} with B >= 1, got {tuple(indices.shape)}")
    if grid is not None and tuple(indices.shape[1:3]) != grid:
        raise ValueError(f"{name}: expected a {grid[0]}x{grid[1]} grid, shape {expected}, got {tuple(indices.shape)}")
    if trailing and tuple(indices.shape[3:]) != trailing:
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(indices.shape)}")
    if indices.numel() == 0:
        raise ValueError(f"{name}: expected shape {expected} without empty axes, got {tuple(indices.shape)}")
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= codebook_size:
        raise ValueError(f"{name}: code ids must lie in [0, {codebook_size}), got values in [{low}, {high}]")
    return indices.long()


def check_labels(labels: object, num_classes: int, batch: int | None = None, name: str = "labels") -> Tensor:
    """Check class labels: an int tensor (or sequence) of shape (B,) with values in [0, num_classes)."""
    if isinstance(labels, int) and not isinstance(labels, bool):
        labels = torch.tensor([labels])
    elif isinstance(labels, Sequence) and not isinstance(labels, (str, bytes)):
        try:
            labels = torch.as_tensor(list(labels))
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name}: expected a sequence of integer class ids, got {list(labels)[:10]!r}") from None
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name}: expected an integer tensor of class ids, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.ndim != 1:
        raise TypeError(f"{name}: expected a 1-D integer tensor of class ids, got dtype {labels.dtype},"
                        f" shape {tuple(labels.shape)}")
    if batch is not None and labels.shape[0] != batch:
        raise ValueError(f"{name}: expected {batch} labels, got {labels.shape[0]}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{name}: class ids must lie in [0, {num_classes}), got {labels.tolist()[:10]}")
    return labels.long()


def check_positive_int(value: object, name: str) -> int:
    """``value`` as a Python int >= 1: an int, a NumPy integer or a 0-d integer tensor; never a bool or float."""
    if isinstance(value, Tensor) and value.ndim == 0 and not value.is_floating_point() and not value.is_complex() \
            and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        shown = f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}" if isinstance(value, Tensor) \
            else repr(value)
        raise ValueError(f"{name}: expected a positive integer, got {shown}")
    return int(value)


def check_fits_in_memory(num_bytes: int, device: torch.device, name: str, what: str) -> None:
    """Refuse a request whose result alone would not fit in the memory now free on ``device``.

    A clear error before the work starts, instead of the allocator failing part-way (or the
    system swapping for minutes). Devices whose free memory is unknown are not checked.
    """
    free = available_memory(device)
    if free is not None and num_bytes > free:
        raise ValueError(f"{name}: {what} need {_gigabytes(num_bytes)}, more than the {_gigabytes(free)} of memory"
                         f" free on {device}; ask for less at a time")


def _gigabytes(num_bytes: int) -> str:
    return f"{num_bytes / 1e9:.3g} GB"


def check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return value


def check_float(name: str, value: object, low: float, high: float, high_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (low <= value <= high) or (high_open and value == high):  # type: ignore[operator]
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name}: expected a number in {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return value


def check_choice(name: str, value: object, choices: object) -> str:
    options = sorted(choices)  # type: ignore[call-overload]
    if value not in options:
        raise ValueError(f"{name}: expected one of {options}, got {value!r}")
    return value  # type: ignore[return-value]


def check_device(name: object, what: str = "device") -> torch.device:
    """``name`` as a ``torch.device`` that exists here: ``"garbage"``, or ``"cuda"`` without CUDA, is a
    ``ValueError`` now rather than an error from deep in torch once work has started."""
    if isinstance(name, torch.device):
        device = name
    else:
        try:
            device = torch.device(name)  # type: ignore[call-overload]
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"{what}: {name!r} is not a device; expected cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{what}: {name!r} needs CUDA, which this torch {torch.__version__} cannot use (built"
                             " without CUDA, or no GPU visible); use cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{what}: {name!r} does not exist; {count} GPU(s) visible (cuda:0 to cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{what}: {name!r} needs Apple's Metal (MPS), which is not available here; use cpu")
    return device
