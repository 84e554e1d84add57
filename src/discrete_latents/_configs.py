"""Frozen, strictly validated configuration dataclasses.

A config is plain data: it names components by registry key and never by import path, so a
config file can never choose code to run. Construction checks every field's type and range;
`Config.from_dict` also rejects unknown and missing keys.

Examples:
    >>> cfg = VQVAEConfig(channels=(8, 16))
    >>> VQVAEConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ._checks import NAME_PATTERN
from ._files import read_json, write_json
from .errors import ConfigError

FORMAT_VERSION = 1  # bump when a saved config changes meaning; older files are migrated in from_dict

C = TypeVar("C", bound="Config")


INT64_RANGE = (-(2**63), 2**63 - 1)  # torch sizes and seeds are 64-bit; larger JSON integers are refused
MAX_DEPTH = 32


def _check_int64(value: int, where: str) -> None:
    if not INT64_RANGE[0] <= value <= INT64_RANGE[1]:
        raise ConfigError(f"{where}: {value} does not fit a 64-bit integer")


def _json_copy(value: Any, where: str, depth: int = 0) -> Any:
    """A deep copy of a JSON value (tuples as lists), or ConfigError for anything JSON cannot hold.

    The copy keeps a frozen config from sharing mutable containers with its caller.
    """
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        _check_int64(value, where)
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_copy(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        copy = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: keys must be strings, got {key!r}")
            copy[key] = _json_copy(item, f"{where}.{key}", depth + 1)
        return copy
    raise ConfigError(f"{where}: {type(value).__name__} is not a JSON value")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` (lists turned into tuples where a tuple is expected) or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return _json_copy(value, where)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(annotation)}, got {type(value).__name__} {value!r}")
    if annotation is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if annotation is int:
        # bool is a subclass of int in Python; `true` for a size is a mistake, not a 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        _check_int64(value, where)
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            raise ConfigError(f"{where}: {value} is out of the range of a float") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return str(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {type(value).__name__} {value!r}")
        copy = _json_copy(value, where)
        value_type = typing.get_args(annotation)[1] if len(typing.get_args(annotation)) == 2 else Any
        if value_type is not Any:
            copy = {key: _check_type(item, value_type, f"{where}.{key}") for key, item in copy.items()}
        return copy
    raise TypeError(f"unsupported config annotation {annotation!r} for {where}")  # a bug in a config class


@dataclass(frozen=True)
class Config:
    """Base class of every config: typed fields, range checks, strict dict/JSON round trips."""

    _hints: ClassVar[dict[type, dict[str, Any]]] = {}
    # Fields added after format version 1 was released: a saved file without them is read with
    # the default (the behaviour before the field existed). Every other key stays required.
    _added_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        hints = self._field_types()
        for f in dataclasses.fields(self):
            value = _check_type(getattr(self, f.name), hints[f.name], f"{type(self).__name__}.{f.name}")
            object.__setattr__(self, f.name, value)  # frozen: normalise lists to tuples in place
        self.validate()

    @classmethod
    def _field_types(cls) -> dict[str, Any]:
        if cls not in Config._hints:
            Config._hints[cls] = typing.get_type_hints(cls)
        return Config._hints[cls]

    def validate(self) -> None:
        """Range checks of a subclass; raise `ConfigError` through `_require`."""

    def _require(self, condition: bool, name: str, expected: str) -> None:
        if not condition:
            raise ConfigError(f"{type(self).__name__}.{name}: expected {expected}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict with ``_class_name`` and ``_version`` added."""
        data: dict[str, Any] = {"_class_name": type(self).__name__, "_version": FORMAT_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = _json_copy(value, f.name)  # a copy: editing it never changes the frozen config
        return data

    @classmethod
    def from_dict(cls: type[C], data: Any, *, source: str | None = None) -> C:
        """Build a config from a dict, strictly.

        Raises:
            ConfigError: on unknown keys (with a "did you mean"), missing keys, wrong types,
                out-of-range values, another class's config or a newer format version.
        """
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}expected a JSON object for {cls.__name__}, got {type(data).__name__}")
        bad_keys = [key for key in data if not isinstance(key, str)]
        if bad_keys:
            raise ConfigError(f"{where}keys of a {cls.__name__} must be strings, got {bad_keys[:5]!r}")
        data = dict(data)
        class_name = data.pop("_class_name", cls.__name__)
        if class_name != cls.__name__:
            raise ConfigError(f"{where}this is a {class_name!r} config, expected {cls.__name__!r}")
        version = data.pop("_version", FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(f"{where}_version must be a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise ConfigError(
                f"{where}written by a newer discrete_latents (format version {version}, this one reads up to"
                f" {FORMAT_VERSION}); upgrade discrete_latents to load it"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, names, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"{where}unknown key(s) for {cls.__name__}: {', '.join(hints)}; known keys: {names}")
        missing = [name for name in names if name not in data and name not in cls._added_fields]
        if missing:
            raise ConfigError(f"{where}missing key(s) for {cls.__name__}: {missing}")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{where}{err}") from None

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed, validated like a new config."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown field(s) for {type(self).__name__}: {unknown}")
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON (atomically)."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Read a config written by `save`, strictly."""
        return cls.from_dict(read_json(path), source=str(path))


def check_component_name(config: Config, name: str) -> None:
    value = getattr(config, name)
    if not NAME_PATTERN.match(value):
        raise ConfigError(
            f"{type(config).__name__}.{name}: {value!r} is not a registry name (lowercase letters, digits,"
            " '_', '.', '-'); components are chosen by registered name, never by import path"
        )


@dataclass(frozen=True)
class VQVAEConfig(Config):
    """Configuration of a `VQVAE`.

    The defaults are the seed's model as it describes it: 1x28x28 images, two 2x2 stride-2
    down-samplings (widths 64 and 128) to a 7x7 grid, one residual block, 100 codes of 32
    dimensions and the paper's plain ``vq`` quantizer. The bundled pipeline's VQ-VAE is
    ``VQVAE.from_preset("mnist")``: the same shape, widened to (128, 192), with EMA codes,
    k-means initialisation and dead-code restarts.
    """

    _added_fields: ClassVar[tuple[str, ...]] = ("attention",)

    # data
    in_channels: int = 1  # 1 grey (MNIST), 3 RGB (CIFAR-10), 4 RGBA; any count works on tensors
    # side of square images, or (height, width); each must be divisible by 2 ** len(channels)
    image_size: int | tuple[int, int] = 28
    # architecture
    channels: tuple[int, ...] = (64, 128)  # width after each 2x2 stride-2 down-sampling
    num_res_blocks: int = 1  # residual blocks at the lowest resolution, in encoder and decoder
    norm_groups: int = 8  # GroupNorm groups in the residual blocks; must divide channels[-1]
    attention: bool = False  # a self-attention block at the lowest resolution (as in VQGAN, arXiv 2012.09841)
    latent_dim: int = 32  # D, the width of a code vector
    # components, by registry name
    encoder: str = "conv"
    decoder: str = "conv"
    quantizer: str = "vq"
    quantizer_kwargs: dict[str, Any] = field(default_factory=lambda: {"codebook_size": 100})

    def validate(self) -> None:
        self._require(self.in_channels >= 1, "in_channels", ">= 1")
        self._require(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "channels", "positive widths")
        factor = 2 ** len(self.channels)
        self._require(all(side >= 1 and side % factor == 0 for side in self.image_shape), "image_size",
                      f"a positive multiple of 2 ** len(channels) = {factor}, or (height, width) of such multiples")
        self._require(self.num_res_blocks >= 0, "num_res_blocks", ">= 0")
        self._require(self.norm_groups >= 1 and self.channels[-1] % self.norm_groups == 0, "norm_groups",
                      f"a positive divisor of channels[-1] = {self.channels[-1]}")
        self._require(self.latent_dim >= 1, "latent_dim", ">= 1")
        for name in ("encoder", "decoder", "quantizer"):
            check_component_name(self, name)
        # Every other quantizer option is checked by the quantizer's constructor, where it is defined.
        self._require("dim" not in self.quantizer_kwargs, "quantizer_kwargs",
                      f"no 'dim' (it is set by latent_dim = {self.latent_dim})")

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the images: ``image_size`` twice when it is one int."""
        size = self.image_size
        return (size, size) if isinstance(size, int) else (size[0], size[1])

    @property
    def grid_size(self) -> tuple[int, int]:
        """(h, w) of the code grid: (H / f, W / f) with f = 2 ** len(channels)."""
        factor = 2 ** len(self.channels)
        return (self.image_shape[0] // factor, self.image_shape[1] // factor)


@dataclass(frozen=True)
class PriorConfig(Config):
    """Fields every prior shares: the code vocabulary, the grid and optional class conditioning."""

    codebook_size: int = 100  # K; the start token's id is K
    grid_size: tuple[int, int] = (7, 7)  # (h, w) of the code grid, scanned in raster order
    num_classes: int = 0  # 0 = unconditional; otherwise labels in [0, num_classes)
    label_dropout: float = 0.1  # chance a label is replaced by "no label" in training (for guidance)
    # Share of each class in the training set (the trainer fills it in); sampling without labels
    # draws classes from it. Empty = uniform.
    class_frequencies: tuple[float, ...] = ()

    def validate(self) -> None:
        self._require(self.codebook_size >= 2, "codebook_size", ">= 2")
        self._require(all(s >= 1 for s in self.grid_size), "grid_size", "two positive sizes")
        self._require(self.num_classes >= 0, "num_classes", ">= 0")
        self._require(0.0 <= self.label_dropout < 1.0, "label_dropout", "a probability in [0, 1)")
        freqs = self.class_frequencies
        self._require(not freqs or (len(freqs) == self.num_classes and all(f >= 0 for f in freqs) and sum(freqs) > 0),
                      "class_frequencies", f"empty, or {self.num_classes} non-negative weights (one per class)"
                      " with a positive sum")


@dataclass(frozen=True)
class TransformerPriorConfig(PriorConfig):
    """The transformer settings the causal and the masked prior share."""

    n_layer: int = 3
    n_head: int = 8
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True

    def validate(self) -> None:
        super().validate()
        self._require(self.n_layer >= 1, "n_layer", ">= 1")
        self._require(self.n_head >= 1, "n_head", ">= 1")
        self._require(self.n_embd >= 1 and self.n_embd % self.n_head == 0, "n_embd",
                      f"a multiple of n_head = {self.n_head}")
        self._require(0.0 <= self.dropout < 1.0, "dropout", "a probability in [0, 1)")


@dataclass(frozen=True)
class CausalPriorConfig(TransformerPriorConfig):
    """Configuration of `CausalPrior`; defaults are the seed's 128/8/3."""


@dataclass(frozen=True)
class PixelCNNPriorConfig(PriorConfig):
    """Configuration of `PixelCNNPrior` (gated PixelCNN, arXiv 1606.05328)."""

    hidden_channels: int = 128
    n_layer: int = 8  # gated layers after the first masked 7x7 layer
    kernel_size: int = 3  # odd; receptive field grows by kernel_size // 2 per layer

    def validate(self) -> None:
        super().validate()
        self._require(self.hidden_channels >= 1, "hidden_channels", ">= 1")
        self._require(self.n_layer >= 1, "n_layer", ">= 1")
        self._require(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "kernel_size", "an odd size >= 1")


@dataclass(frozen=True)
class MaskedPriorConfig(TransformerPriorConfig):
    """Configuration of :class:`~discrete_latents.MaskedPrior` (MaskGIT, arXiv 2202.04200).

    The causal prior's transformer settings, for a bidirectional transformer, and the shape of
    the training masks.
    """

    _added_fields: ClassVar[tuple[str, ...]] = ("box_mask_prob",)

    # Chance that a training grid hides one random box of codes (the shape of an inpainting mask)
    # instead of the paper's scattered cosine-schedule share.
    box_mask_prob: float = 0.0

    def validate(self) -> None:
        super().validate()
        self._require(0.0 <= self.box_mask_prob <= 1.0, "box_mask_prob", "a probability in [0, 1]")
