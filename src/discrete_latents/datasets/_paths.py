"""Where dataset files live when the caller does not name a folder."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "DISCRETE_LATENTS_DATA_DIR"


def default_data_dir() -> Path:
    """The data root used when ``root=None``: ``$DISCRETE_LATENTS_DATA_DIR``, else a cache folder.

    The cache folder is ``$XDG_CACHE_HOME/discrete_latents`` or ``~/.cache/discrete_latents``.
    Each dataset uses a subfolder of it (``mnist/``, ``cifar10/``).

    Examples:
        >>> (default_data_dir() / "mnist").name
        'mnist'
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "discrete_latents"


def dataset_folder(root: str | os.PathLike[str] | None, subfolder: str) -> tuple[Path, str]:
    """Resolve the folder of one dataset and say, for error messages, why that folder.

    An explicit ``root`` is used as given (never a fallback elsewhere), so a caller always knows
    which files were read.
    """
    if root is not None:
        return Path(root).expanduser(), "the folder given as root"
    folder = default_data_dir() / subfolder
    if os.environ.get(DATA_DIR_ENV):
        return folder, f"${DATA_DIR_ENV}/{subfolder}"
    return folder, f"the cache folder (root=None and ${DATA_DIR_ENV} is not set)"
