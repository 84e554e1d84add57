"""Argument checks shared by the quantizer constructors: a ``ValueError`` naming the argument."""

from __future__ import annotations

import math


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
