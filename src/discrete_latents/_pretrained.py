"""Pipelines shipped inside the package, found without any network access.

Each lives in ``discrete_latents/pretrained/<name>/`` as a saved
`VQVAEPipeline` folder (``pipeline.json``, ``vqvae/``,
``prior/``, ``README.md``), so it loads like any other folder::

    from discrete_latents import VQVAEPipeline, pretrained_path
    pipe = VQVAEPipeline.from_pretrained(pretrained_path("mnist"))
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ._checks import NAME_PATTERN
from .errors import UnknownComponentError

PACKAGE = "discrete_latents"
FOLDER = "pretrained"
INDEX = "pipeline.json"  # the pipeline index; a folder without it is not a usable pipeline
# The pipelines this release is meant to ship, with what they are (shown in error messages).
KNOWN: dict[str, str] = {
    "mnist": "the `mnist` preset: EMA VQ-VAE (100 codes, 7x7 grid) + class-conditional causal transformer prior",
    "mnist_masked": "the `mnist` VQ-VAE + the `mnist_masked` class-conditional masked transformer prior (MaskGIT)",
}


def _root() -> Path:
    root = resources.files(PACKAGE) / FOLDER
    if not isinstance(root, Path):  # a zip import: files cannot be read as a folder
        raise UnknownComponentError(f"discrete_latents is imported from an archive ({root}); pretrained pipelines"
                                    " need an installed (unpacked) package")
    return root


def available_pretrained() -> list[str]:
    """Names of the pretrained pipelines present in this installation (sorted).

    Examples:
        >>> isinstance(available_pretrained(), list)
        True
    """
    root = _root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if NAME_PATTERN.match(p.name) and (p / INDEX).is_file())


def pretrained_path(name: str) -> Path:
    """The folder of a pretrained pipeline shipped with the package.

    Args:
        name: the pipeline's name, e.g. ``"mnist"``.

    Returns:
        A `pathlib.Path` inside the installed package, to pass to
        `VQVAEPipeline.from_pretrained`.

    Raises:
        UnknownComponentError: an unknown name, or a known one whose files are missing from this
            installation (no ``pipeline.json``); the message lists the available names.

    Examples:
        >>> from discrete_latents._pipeline import VQVAEPipeline
        >>> pipe = VQVAEPipeline.from_pretrained(pretrained_path("mnist"))  # doctest: +SKIP
    """
    available = available_pretrained()
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
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
