"""Saving and loading a component (the VQ-VAE, a prior): one folder of config, weights and card.

A component folder holds ``config.json`` (strict, versioned), ``model.safetensors`` and a
``README.md`` model card (plus the ``samples.png`` it shows, if one was given). A save is atomic
as a unit (`save_folder`). A load checks the config against the
weights file's header before building anything real: the model is first built on the meta
device, where a claimed size costs no memory, and refused as soon as it outgrows the file.
`VQVAEPipeline` saves its components with the same methods.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_hooks

from ._configs import Config
from ._files import save_folder
from ._hub import (
    COMMIT_MESSAGE,
    CONFIG_NAME,
    README_NAME,
    SAMPLES_NAME,
    WEIGHTS_NAME,
    PretrainedSource,
    check_repo_id,
    require_file,
    resolve,
    upload_folder,
)
from ._model_card import model_card
from ._safetensors import inspect_safetensors, load_module, match_header, save_module
from .errors import CheckpointFormatError, ConfigError
from .images import grid_png

M = TypeVar("M", bound="PretrainedModel")
COMPONENT_FILES = (CONFIG_NAME, WEIGHTS_NAME, README_NAME, SAMPLES_NAME)
_SUBFOLDER_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class _TooLarge(Exception):
    """Raised from inside a meta build as soon as it outgrows the weights file."""


def _int_fields(data: Any, name: str = "") -> Iterator[tuple[str, int]]:
    """(dotted name, value) of every integer in a config's JSON form, in lists and objects too."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _int_fields(value, f"{name}.{key}" if name else key)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _int_fields(value, f"{name}[{i}]")
    elif isinstance(data, int) and not isinstance(data, bool):
        yield name, data


@contextmanager
def _size_budget(header: Mapping[str, Any]) -> Iterator[list[tuple[int, ...]]]:
    """Stop a model build once its tensors or modules clearly outnumber or outweigh ``header``.

    Yields the list of shapes registered so far (the last one is the tensor that broke the budget).
    """
    max_bytes = 2 * sum(e["data_offsets"][1] - e["data_offsets"][0] for e in header.values()) + (64 << 20)
    max_tensors, max_modules = 2 * len(header) + 64, 16 * len(header) + 256
    shapes: list[tuple[int, ...]] = []
    totals = {"bytes": 0, "modules": 0}

    def on_tensor(module: nn.Module, name: str, tensor: Tensor | None) -> None:
        if tensor is not None:
            shapes.append(tuple(tensor.shape))
            totals["bytes"] += tensor.numel() * tensor.element_size()
            if totals["bytes"] > max_bytes or len(shapes) > max_tensors:
                raise _TooLarge

    def on_module(module: nn.Module, name: str, child: nn.Module | None) -> None:
        totals["modules"] += 1
        if totals["modules"] > max_modules:
            raise _TooLarge

    handles = [module_hooks.register_module_parameter_registration_hook(on_tensor),
               module_hooks.register_module_buffer_registration_hook(on_tensor),
               module_hooks.register_module_module_registration_hook(on_module)]
    try:
        yield shapes
    finally:
        for handle in handles:
            handle.remove()


def check_config_fits(cls: type[nn.Module], config: Config, weights: Path, source: Path) -> None:
    """Refuse, in time and memory in proportion to the files, a config that does not fit its weights.

    Raises:
        CheckpointFormatError: the config asks for tensors the file does not hold (naming the
            config fields that differ where they can be told), or names and shapes disagree.
    """
    header = inspect_safetensors(weights)
    try:
        with _size_budget(header) as shapes, torch.device("meta"):
            shell = cls(config)  # type: ignore[call-arg]
    except _TooLarge:
        file_dims = {d for entry in header.values() for d in entry["shape"]} | {len(header)}
        culprit = set(shapes[-1]) if shapes else set()
        fields = [f"{name}={value}" for name, value in _int_fields(config.to_dict())
                  if value not in file_dims and (value in culprit or value > max(file_dims))]
        hint = f" ({', '.join(fields)} in {source.name} does not match the weights)" if fields else ""
        raise CheckpointFormatError(f"{source}: the config asks for a larger model than {weights.name} holds"
                                    f" ({len(header)} tensors){hint}; the config and the weights are not from"
                                    " one save") from None
    except (NotImplementedError, RuntimeError):
        return  # a constructor that cannot run on the meta device: the real build checks instead
    match_header(shell, header, weights)


class Shareable:
    """``push_to_hub`` of anything with ``save_pretrained`` (a component or a pipeline)."""

    def save_pretrained(self, save_directory: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None,
                        images: Tensor | None = None, repo_id: str | None = None) -> Path:
        raise NotImplementedError

    def push_to_hub(self, repo_id: str, *, metadata: Mapping[str, Any] | None = None, images: Tensor | None = None,
                    private: bool | None = False, token: str | bool | None = None,
                    commit_message: str = COMMIT_MESSAGE, commit_description: str | None = None,
                    branch: str | None = None, create_pr: bool | None = None) -> Any:
        """Upload what `save_pretrained` writes to a Hub model repo, in one commit.

        Args:
            repo_id: ``"user/name"`` (created if missing; an existing repo is reused).
            metadata, images: as in `save_pretrained`.
            private: create the repo as private. Default False.
            token: a Hub token; default the logged-in one.
            commit_message, commit_description: of the commit.
            branch: the branch to commit to (default ``main``).
            create_pr: open a pull request instead of committing to the branch.

        Returns:
            The ``huggingface_hub.CommitInfo`` of the commit.
        """
        check_repo_id(repo_id)  # before anything is written
        with tempfile.TemporaryDirectory(prefix="discrete_latents-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "save", metadata=metadata, images=images, repo_id=repo_id)
            return upload_folder(folder, repo_id, private=private, token=token, commit_message=commit_message,
                                 commit_description=commit_description, branch=branch, create_pr=create_pr)



class PretrainedModel(Shareable):
    """``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` / ``from_preset`` of a component.

    A subclass (an ``nn.Module``) sets ``config_class`` and ``card_key`` and takes its config as
    its only constructor argument.
    """

    config_class: ClassVar[type[Config]]
    card_key: ClassVar[str]  # "vqvae" or "prior": the role shown in model cards
    config: Any
    pretrained_source: PretrainedSource | None = None  # set by from_pretrained: folder and resolved commit

    @property
    def registry_name(self) -> str:
        """The name a saved pipeline records for this component."""
        raise NotImplementedError

    @classmethod
    def presets(cls) -> Mapping[str, Config]:
        """Named configs for `from_preset`."""
        raise NotImplementedError

    @classmethod
    def from_preset(cls: type[M], name: str, **overrides: Any) -> M:
        """Build an untrained model from a named preset, with some config fields overridden.

        Raises:
            ConfigError: an unknown preset (the message lists the known ones) or a bad override.
        """
        presets = cls.presets()
        if name not in presets:
            raise ConfigError(f"unknown {cls.__name__} preset {name!r}; available: {sorted(presets)}")
        return cls(presets[name].replace(**overrides))  # type: ignore[call-arg]

    # saving ----------------------------------------------------------------------------------------
    def write_files(self, folder: Path) -> None:
        """``config.json`` and ``model.safetensors`` into ``folder`` (used by a pipeline save too)."""
        self.config.save(folder / CONFIG_NAME)
        save_module(self, folder / WEIGHTS_NAME)  # type: ignore[arg-type]

    def save_pretrained(self, save_directory: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None,
                        images: Tensor | None = None, repo_id: str | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card to a folder.

        The folder is replaced as a unit: a failed or killed save leaves the previous one intact.

        Args:
            save_directory: the folder (created if needed; it may hold only an earlier save).
            metadata: shown in the model card: ``preset``, ``dataset``, ``description``,
                ``training`` (settings) and ``metrics`` (a table).
            images: (B, C, H, W) in [0, 1], saved as ``samples.png`` and shown by the card.
            repo_id: the Hub repo the card's usage snippet names.

        Returns:
            The folder.

        Examples:
            >>> import tempfile
            >>> from discrete_latents import VQVAE
            >>> model = VQVAE.from_preset("mnist", channels=(8, 16))
            >>> with tempfile.TemporaryDirectory() as tmp:
            ...     folder = model.save_pretrained(tmp)
            ...     VQVAE.from_pretrained(folder).config == model.config
            True
        """
        png = grid_png(images) if images is not None else None  # checked before anything is written
        card = model_card({self.card_key: (self, self.registry_name)}, metadata=metadata, repo_id=repo_id,
                          samples=SAMPLES_NAME if png is not None else None)

        def write(folder: Path) -> None:
            self.write_files(folder)
            (folder / README_NAME).write_text(card, encoding="utf-8")
            if png is not None:
                (folder / SAMPLES_NAME).write_bytes(png)

        return save_folder(save_directory, write, COMPONENT_FILES)

    # loading ---------------------------------------------------------------------------------------
    @classmethod
    def read_folder(cls: type[M], folder: Path, *, map_location: str | torch.device = "cpu",
                    check_finite: bool = True) -> M:
        """Load a component folder strictly: config, then its fit with the weights, then the weights."""
        config_path = require_file(folder, CONFIG_NAME)
        config = cls.config_class.load(config_path)
        weights = require_file(folder, WEIGHTS_NAME)
        check_config_fits(cls, config, weights, config_path)  # type: ignore[arg-type]
        model = cls(config)  # type: ignore[call-arg]
        load_module(model, weights, check_finite=check_finite)  # type: ignore[arg-type]
        return model.to(map_location).eval()  # type: ignore[attr-defined,no-any-return]

    @classmethod
    def from_pretrained(cls: type[M], pretrained_model_name_or_path: str | os.PathLike[str], *,
                        revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                        local_files_only: bool = False, token: str | bool | None = None,
                        force_download: bool = False, map_location: str | torch.device = "cpu",
                        check_finite: bool = True, subfolder: str | None = None) -> M:
        """Load a model saved by `save_pretrained`, from a folder or a Hub repo id.

        Args:
            pretrained_model_name_or_path: a local folder, or a repo id such as ``"user/mnist-vqvae"``.
            revision: branch, tag or commit on the Hub.
            cache_dir, local_files_only, token, force_download: as in ``huggingface_hub``;
                ``HF_HUB_OFFLINE=1`` reads the cache only.
            map_location: device to move the model to.
            check_finite: NaN or inf weights raise `NonFiniteError`.
            subfolder: the model's folder inside the repo (e.g. ``"vqvae"`` of a pipeline).

        Returns:
            The model in eval mode; ``model.pretrained_source`` records the folder and the
            resolved commit.

        Raises:
            ConfigError: missing or malformed ``config.json``, or one from a newer version.
            CheckpointFormatError: missing, malformed or mismatched ``model.safetensors``.
            huggingface_hub.errors.HFValidationError: an invalid repo id (before any I/O).
            huggingface_hub.errors.LocalEntryNotFoundError: offline and not cached.
        """
        if subfolder is not None and (not isinstance(subfolder, str) or not set(subfolder) <= _SUBFOLDER_CHARS
                                      or subfolder in ("", ".", "..")):
            raise ValueError(f"subfolder: expected one folder name such as 'vqvae', got {subfolder!r}")
        prefix = f"{subfolder}/" if subfolder else ""
        source = resolve(pretrained_model_name_or_path, [prefix + CONFIG_NAME, prefix + WEIGHTS_NAME],
                         revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                         token=token, force_download=force_download)
        model = cls.read_folder(source.folder / prefix if subfolder else source.folder, map_location=map_location,
                                check_finite=check_finite)
        model.pretrained_source = source
        return model

