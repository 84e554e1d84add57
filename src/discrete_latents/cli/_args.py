"""Command-line settings for a config dataclass: an optional JSON/TOML preset, then ``--key=value``.

Values are parsed as JSON where the field is not a string (``--vqvae_epochs=5``,
``--vqvae_overrides='{"channels": [8, 16]}'``), a bare ``--flag`` means ``true``; the result goes
through the config's strict ``from_dict``, so a typo or a wrong type is a ConfigError naming the
field. Nothing is evaluated or imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any, TypeVar

from .._configs import Config
from .._files import loads_json
from ..errors import ConfigError

C = TypeVar("C", bound=Config)


def read_settings_file(path: str) -> dict[str, Any]:
    """A JSON or TOML file of settings (TOML by the ``.toml`` suffix)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read settings file {path}: {err.strerror}") from None
    if file.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"{path}: invalid TOML ({err})") from None
    else:
        data = loads_json(raw, source=path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table/object of settings, got {type(data).__name__}")
    return data


def _parse_value(config_class: type[Config], key: str, text: str | None) -> Any:
    hints = typing.get_type_hints(config_class)
    if key not in hints:
        return text  # from_dict reports the unknown key with a suggestion
    if text is None:
        return True
    if hints[key] is str:
        return text
    try:
        return loads_json(text, source=f"--{key}")
    except ConfigError:
        return text  # let the type check explain what was expected


def parse_overrides(config_class: type[Config], args: list[str]) -> dict[str, Any]:
    """``["--a=1", "--flag"]`` -> ``{"a": 1, "flag": True}`` typed by ``config_class``'s fields."""
    settings: dict[str, Any] = {}
    for arg in args:
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; settings are given as --key=value")
        key, sep, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        settings[key] = _parse_value(config_class, key, value if sep else None)
    return settings


def build_config(config_class: type[C], args: list[str], settings_file: str | None = None) -> C:
    """Defaults, then the settings file, then the flags, checked strictly."""
    data = {f.name: getattr(config_class(), f.name) for f in dataclasses.fields(config_class)}
    if settings_file:
        data.update(read_settings_file(settings_file))
    data.update(parse_overrides(config_class, args))
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
    return config_class.from_dict(json.loads(json.dumps(data)))


# argparse types: a bad value is reported when the command line is parsed, before any work.
def positive_int(text: str) -> int:
    """An integer >= 1 (``--num-samples``, ``--num``, ``--nrow``, ``--top-k``)."""
    return _int_in_range(text, 1, None, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (``--limit``, where 0 means all); a negative one is never used as a slice."""
    return _int_in_range(text, 0, None, "an integer >= 0")


def seed(text: str) -> int:
    """A seed a ``torch.Generator`` accepts: an integer in [0, 2**64)."""
    return _int_in_range(text, 0, 2**64 - 1, "an integer in [0, 2**64)")


def _int_in_range(text: str, low: int, high: int | None, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value
