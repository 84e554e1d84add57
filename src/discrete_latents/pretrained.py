"""Pipelines shipped inside the package, found without any network access.

Each lives in ``discrete_latents/pretrained/<name>/`` as a saved
:class:`~discrete_latents.pipeline.VQVAEPipeline` folder (``pipeline.json``, ``vqvae/``,
``prior/``, ``README.md``), so it loads like any other folder::

    from discrete_latents import VQVAEPipeline, pretrained_path
    pipe = VQVAEPipeline.from_pretrained(pretrained_path("mnist"))
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from .errors import UnknownComponentError

PACKAGE = "discrete_latents"
FOLDER = "pretrained"
INDEX = "pipeline.json"  # the pipeline index; a folder without it is not a usable pipeline
# The pipelines this release is meant to ship, with what they are (shown in error messages).
KNOWN: dict[str, str] = {
    "mnist": "the `mnist` preset: EMA VQ-VAE (100 codes, 7x7 grid) + class-conditional causal transformer prior",
    "mnist_masked": "the `mnist` VQ-VAE + the `mnist_masked` class-conditional masked transformer prior (MaskGIT)",
}
_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")


def _root() -> Path:
    root = resources.files(PACKAGE) / FOLDER
    if not isinstance(root, Path):  # a zip import: files cannot be read as a folder
        raise UnknownComponentError(f"discrete_latents is imported from an archive ({root}); pretrained pipelines"
                                    " need an installed (unpacked) package")
    return root


def available_pretrained() -> list[str]:
    """Names of the pretrained pipelines present in this installation (sorted).

    Example:
        >>> isinstance(available_pretrained(), list)
        True
    """
    root = _root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if _NAME.match(p.name) and (p / INDEX).is_file())


def pretrained_path(name: str) -> Path:
    """The folder of a pretrained pipeline shipped with the package.

    Args:
        name: the pipeline's name, e.g. ``"mnist"``.

    Returns:
        A :class:`pathlib.Path` inside the installed package, to pass to
        :meth:`VQVAEPipeline.from_pretrained <discrete_latents.pipeline.VQVAEPipeline.from_pretrained>`.

    Raises:
        UnknownComponentError: an unknown name, or a known one whose files are missing from this
            installation (no ``pipeline.json``); the message lists the available names.

    Example:
        >>> from discrete_latents.pipeline import VQVAEPipeline
        >>> pipe = VQVAEPipeline.from_pretrained(pretrained_path("mnist"))  # doctest: +SKIP
    """
    available = available_pretrained()
    if not isinstance(name, str) or not _NAME.match(name):
        raise UnknownComponentError(f"unknown pretrained pipeline {name!r}; available: {available}")
    folder = _root() / name
    if (folder / INDEX).is_file():
        return folder
    if name in KNOWN or folder.is_dir():
        what = f" ({KNOWN[name]})" if name in KNOWN else ""
        raise UnknownComponentError(
            f"pretrained pipeline {name!r}{what} is not in this installation: {folder / INDEX} is missing."
            f" Reinstall discrete_latents from a release wheel; available here: {available}")
    raise UnknownComponentError(f"unknown pretrained pipeline {name!r}; available: {available}"
                                f" (this release is meant to ship {sorted(KNOWN)})")
