"""Saving to and loading from folders and the Hugging Face Hub.

:class:`HubMixin` plugs a model into ``huggingface_hub.PyTorchModelHubMixin`` (so
``save_pretrained`` / ``push_to_hub`` follow the Hub's conventions) but loads strictly: our own
config parser, a validated ``model.safetensors``, no ``pytorch_model.bin`` fallback, and every
mismatch reported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from huggingface_hub import PyTorchModelHubMixin, snapshot_download

from .configs import Config
from .errors import CheckpointFormatError, ConfigError
from .serialization import load_module, save_module

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PAPER_URL = "https://arxiv.org/abs/1711.00937"
REPO_URL = "https://github.com/discrete-latents/discrete_latents"
M = TypeVar("M", bound="HubMixin")


def resolve_folder(name_or_path: str | os.PathLike[str], patterns: list[str], *, revision: str | None = None,
                   cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False,
                   token: str | bool | None = None, force_download: bool = False) -> Path:
    """A local folder as is; anything else is a Hub repo id, fetched (or read from the cache).

    Only files matching ``patterns`` are downloaded. ``HF_HUB_OFFLINE=1`` and
    ``local_files_only=True`` read the Hugging Face cache without network access.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if not isinstance(name_or_path, str | os.PathLike):
        raise TypeError(f"expected a folder or a Hub repo id, got {type(name_or_path).__name__}")
    folder = snapshot_download(str(name_or_path), revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only, token=token, force_download=force_download,
                               allow_patterns=patterns)
    return Path(folder)


def require_file(folder: Path, name: str) -> Path:
    path = folder / name
    if path.is_file():
        return path
    if name == WEIGHTS_NAME and (folder / "pytorch_model.bin").exists():
        raise CheckpointFormatError(f"{WEIGHTS_NAME} not found in {folder}; it holds pytorch_model.bin, a pickle,"
                                    " which discrete_latents never loads: convert it to safetensors")
    error = ConfigError if name.endswith(".json") else CheckpointFormatError
    raise error(f"{name} not found in {folder}")


class HubMixin(PyTorchModelHubMixin, library_name="discrete_latents", tags=["discrete_latents", "vq-vae"],
               repo_url=REPO_URL, paper_url=PAPER_URL, license="mit"):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for a module built from one config.

    A subclass sets ``config_class`` and takes that config as its only constructor argument.
    The folder holds ``config.json`` (the strict config, with class name and format version)
    and ``model.safetensors``.
    """

    config_class: ClassVar[type[Config]]
    config: Any

    def _save_pretrained(self, save_directory: Path) -> None:
        self.config.save(save_directory / CONFIG_NAME)
        save_module(self, save_directory / WEIGHTS_NAME)  # type: ignore[arg-type]

    @classmethod
    def from_pretrained(cls: type[M], pretrained_model_name_or_path: str | os.PathLike[str], *,  # type: ignore[override]
                        revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                        local_files_only: bool = False, token: str | bool | None = None,
                        force_download: bool = False, strict: bool = True, check_finite: bool = True,
                        map_location: str = "cpu", subfolder: str | None = None) -> M:
        """Load a model saved by :meth:`save_pretrained`, from a folder or a Hub repo id.

        Args:
            pretrained_model_name_or_path: a local folder, or a repo id such as ``"user/mnist-vqvae"``.
            revision: branch, tag or commit on the Hub.
            cache_dir, local_files_only, token, force_download: as in ``huggingface_hub``.
            strict: missing or unexpected tensors raise (default). Shapes and dtypes always must match.
            check_finite: NaN or inf weights raise :class:`~discrete_latents.errors.NonFiniteError`.
            map_location: device to move the model to.
            subfolder: the model's folder inside the repo (used by pipelines).

        Raises:
            ConfigError: missing or malformed ``config.json``.
            CheckpointFormatError: missing, malformed or mismatched ``model.safetensors``.
        """
        prefix = f"{subfolder}/" if subfolder else ""
        folder = resolve_folder(pretrained_model_name_or_path, [prefix + CONFIG_NAME, prefix + WEIGHTS_NAME],
                                revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                token=token, force_download=force_download)
        return cls._load_folder(folder / subfolder if subfolder else folder, strict=strict,
                                check_finite=check_finite, map_location=map_location)

    @classmethod
    def _load_folder(cls: type[M], folder: Path, *, strict: bool = True, check_finite: bool = True,
                     map_location: str = "cpu") -> M:
        config = cls.config_class.load(require_file(folder, CONFIG_NAME))
        model = cls(config)  # type: ignore[call-arg]
        load_module(model, require_file(folder, WEIGHTS_NAME), strict=strict,  # type: ignore[arg-type]
                    check_finite=check_finite)
        return model.to(map_location).eval()  # type: ignore[attr-defined,no-any-return]
