"""Name -> class registries for swappable components, with lazy entry-point plugins.

Built-ins register themselves on import with a decorator. Third-party packages declare entry
points, for example in their ``pyproject.toml``::

    [project.entry-points."discrete_latents.quantizers"]
    fsq_plus = "my_package.fsq:FSQPlus"

Plugins are found lazily: listing names reads package metadata only, and a plugin is imported on
the first ``get`` of its name. A plugin that fails to import never breaks ``import
discrete_latents``; its name then raises `PluginLoadError` carrying the import error.
Set ``DISCRETE_LATENTS_DISABLE_PLUGINS=1`` to turn discovery off.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from ._checks import NAME_PATTERN
from .errors import PluginConflictError, PluginLoadError, UnknownComponentError

T = TypeVar("T", bound=type)
DISABLE_ENV = "DISCRETE_LATENTS_DISABLE_PLUGINS"


def plugins_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


class Registry(Generic[T]):
    """A named collection of component classes that all derive from ``base``.

    Args:
        kind: plural noun used in messages, e.g. ``"quantizers"``.
        base: every registered class must be a subclass of it.
        group: the entry-point group searched for plugins.

    Examples:
        >>> from discrete_latents import QUANTIZERS
        >>> "vq" in QUANTIZERS.names()
        True
    """

    def __init__(self, kind: str, base: type, group: str) -> None:
        self.kind = kind
        self.base = base
        self.group = group
        self._classes: dict[str, T] = {}
        self._plugins: dict[str, metadata.EntryPoint] | None = None  # discovered, not yet imported
        self._failed: dict[str, BaseException] = {}

    # registration -------------------------------------------------------------------------
    def register(self, name: str, *, override: bool = False) -> Callable[[T], T]:
        """Class decorator registering ``cls`` under ``name``."""

        def decorator(cls: T) -> T:
            self.add(name, cls, override=override)
            return cls

        return decorator

    def add(self, name: str, cls: T, *, override: bool = False) -> None:
        """Register ``cls`` under ``name``; a taken name raises unless ``override=True``."""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ValueError(f"invalid {self.kind} name {name!r}: use lowercase letters, digits, '_', '.', '-'")
        self._check_class(name, cls)
        if name in self._classes and not override and self._classes[name] is not cls:
            raise ValueError(f"{self.kind} name {name!r} is already taken by {self._classes[name].__qualname__};"
                             " pass override=True to replace it")
        self._classes[name] = cls

    def _check_class(self, name: str, cls: Any) -> None:
        base = f"{self.base.__module__}.{self.base.__qualname__}"
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginLoadError(f"{self.kind[:-1]} {name!r} must be a class derived from {base}, got {cls!r}")
        wanted = getattr(self.base, "api_version", None)
        if wanted is not None and getattr(cls, "api_version", None) != wanted:
            raise PluginLoadError(
                f"{self.kind[:-1]} {name!r} ({cls.__module__}.{cls.__qualname__}) is built for plugin API version"
                f" {getattr(cls, 'api_version', None)!r}, but {base} requires api_version = {wanted}; upgrade the"
                " plugin or discrete_latents so that they match")

    # lookup -------------------------------------------------------------------------------
    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names of built-in and plugin components matching the fnmatch ``pattern``."""
        return sorted(n for n in set(self._classes) | set(self._discover()) if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def as_mapping(self) -> Mapping[str, T]:
        """A read-only view of the components imported so far."""
        return MappingProxyType(self._classes)

    def get(self, name: str) -> T:
        """The class registered as ``name``, importing its plugin on first use.

        Raises:
            UnknownComponentError: no such name (the message lists the known ones).
            PluginLoadError: the plugin providing ``name`` failed to import or breaks the contract.
        """
        if not isinstance(name, str):
            raise TypeError(f"{self.kind[:-1]} name: expected a string, got {type(name).__name__} {name!r}")
        if name in self._classes:
            return self._classes[name]
        plugins = self._discover()
        failure = None if plugins_disabled() else self._failed.get(name)
        if isinstance(failure, PluginConflictError):
            raise PluginConflictError(str(failure))
        if failure is not None:
            raise PluginLoadError(f"the plugin providing {self.kind[:-1]} {name!r} failed to load: {failure!r}") \
                from failure
        entry = plugins.get(name)
        if entry is None:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            off = (f" (plugin discovery is off: {DISABLE_ENV} is set; unset it to use installed plugins)"
                   if plugins_disabled() else "")
            raise UnknownComponentError(f"unknown {self.kind[:-1]} {name!r}{hint}; known {self.kind}: {known}{off}")
        return self._load(name, entry)

    def name_of(self, cls: type) -> str:
        """The first name ``cls`` itself was registered under (aliases added later do not change it).

        Raises:
            UnknownComponentError: ``cls`` is not registered (a subclass of a registered class is not).
        """
        for name, registered in self._classes.items():  # dicts keep insertion order
            if registered is cls:
                return name
        raise UnknownComponentError(
            f"{cls.__qualname__} is not registered in {self.kind.upper()}, so a saved model could not name it;"
            f" register it with @{self.kind.upper()}.register('my_name') (or an entry point in {self.group!r})")

    def create(self, name: str, **kwargs: Any) -> Any:
        """Instantiate the component ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    # plugins ------------------------------------------------------------------------------
    def _discover(self) -> dict[str, metadata.EntryPoint]:
        if plugins_disabled():
            return {}
        if self._plugins is None:
            try:
                entries = list(metadata.entry_points(group=self.group))
            except Exception as err:  # broken metadata of some installed package
                warnings.warn(f"could not read {self.group} entry points: {err!r}", RuntimeWarning, stacklevel=3)
                entries = []
            candidates: dict[str, list[metadata.EntryPoint]] = {}
            for entry in entries:
                name, value = getattr(entry, "name", None), getattr(entry, "value", None)
                if not isinstance(name, str) or not NAME_PATTERN.match(name) or not isinstance(value, str):
                    warnings.warn(f"skipping the {self.group} entry point {name!r} = {value!r}: a name must be"
                                  " lowercase letters, digits, '_', '.', '-'", RuntimeWarning, stacklevel=3)
                    continue
                if name in self._classes:
                    cls = self._classes[name]
                    if (getattr(entry, "module", None) == cls.__module__
                            and getattr(entry, "attr", None) == cls.__qualname__):
                        continue  # this very plugin, already imported (e.g. before reset_plugins())
                    # Built-ins always win, so installing a package can never silently change a model.
                    warnings.warn(f"plugin {value!r} reuses the built-in {self.kind[:-1]} name {name!r};"
                                  " the built-in is kept", RuntimeWarning, stacklevel=3)
                    continue
                same = candidates.setdefault(name, [])
                if all(other.value != value for other in same):  # one package seen twice is no conflict
                    same.append(entry)
            found: dict[str, metadata.EntryPoint] = {}
            for name, options in candidates.items():
                if len(options) > 1:
                    providers = " and ".join(repr(option.value) for option in options)
                    self._failed[name] = PluginConflictError(
                        f"{len(options)} plugins register {self.kind[:-1]} {name!r}: {providers}; uninstall all but"
                        " one of them")
                else:
                    found[name] = options[0]
            self._plugins = found
        return self._plugins

    def _load(self, name: str, entry: metadata.EntryPoint) -> T:
        try:
            cls = entry.load()
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as err:  # SyntaxError, SystemExit ... in third-party code must not escape
            self._failed[name] = err
            warnings.warn(f"plugin {entry.value!r} for {self.kind[:-1]} {name!r} failed to import: {err!r}",
                          RuntimeWarning, stacklevel=3)
            raise PluginLoadError(f"the plugin {entry.value!r} providing {self.kind[:-1]} {name!r} failed to import:"
                                  f" {err!r}") from err
        try:
            self._check_class(name, cls)
        except PluginLoadError as err:
            self._failed[name] = err
            raise
        if name in self._classes and self._classes[name] is not cls:  # registered itself under the name on import
            raise PluginConflictError(f"{self.kind[:-1]} {name!r} registered twice while loading {entry.value!r}")
        self._classes[name] = cls
        return cls

    def failed_plugins(self) -> dict[str, BaseException]:
        """Plugins that could not be loaded, with their errors."""
        self._discover()
        return dict(self._failed)

    def reset_plugins(self) -> None:
        """Forget discovered plugins so the next lookup scans entry points again."""
        self._plugins = None
        self._failed.clear()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


from torch import nn  # noqa: E402  (kept next to the instances that need it)

ENCODERS: Registry[type[nn.Module]] = Registry("encoders", nn.Module, "discrete_latents.encoders")
DECODERS: Registry[type[nn.Module]] = Registry("decoders", nn.Module, "discrete_latents.decoders")
