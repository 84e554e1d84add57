"""Saving to and loading from folders and the Hugging Face Hub.

:class:`HubMixin` plugs a model into ``huggingface_hub.PyTorchModelHubMixin`` (so the Hub
recognises the library, its tags and paper) but saves and loads on its own terms: our strict
config parser, a validated ``model.safetensors``, no ``pytorch_model.bin`` fallback, every
mismatch reported, a model card of our own and one commit per push.

A name is resolved the same way everywhere (:func:`resolve`): an existing local folder is read
from disk; anything else must be a valid Hub repo id (``"user/name"``), checked before any I/O,
and is fetched with ``huggingface_hub.snapshot_download``, which reads the Hugging Face cache
without network access when ``HF_HUB_OFFLINE=1`` or ``local_files_only=True``.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, PyTorchModelHubMixin, constants, snapshot_download
from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

from .configs import Config
from .errors import CheckpointFormatError, ConfigError
from .files import atomic_write_bytes
from .model_card import LIBRARY_NAME, LICENSE, PAPER_URL, REPO_URL, TAGS, component_card
from .serialization import load_module, save_module

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
README_NAME = "README.md"
COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
M = TypeVar("M", bound="HubMixin")


@dataclass(frozen=True)
class PretrainedSource:
    """Where a loaded model came from.

    Attributes:
        name_or_path: what was passed to ``from_pretrained``.
        folder: the local folder read (for a Hub repo, a snapshot in the Hugging Face cache).
        revision: the requested branch, tag or commit (``None`` for a local folder or the default).
        commit: the resolved 40-hex commit of a Hub repo; ``None`` for a plain local folder.
    """

    name_or_path: str
    folder: Path
    revision: str | None = None
    commit: str | None = None


def _library_version() -> str:
    from . import __version__  # late: the package imports this module while it initialises

    return __version__


def check_repo_id(repo_id: object) -> str:
    """Validate a Hub repo id (``"name"`` or ``"user/name"``) before any I/O.

    Raises:
        TypeError: not a string.
        huggingface_hub.errors.HFValidationError: a malformed id (``""``, ``"../x"``, ``"a/b/c"``,
            ``"a--b"``), with the reason.
    """
    if not isinstance(repo_id, str):
        raise TypeError(f"repo_id: expected a string such as 'user/name', got {type(repo_id).__name__}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HFValidationError(f"{repo_id!r} is not a valid Hugging Face Hub repo id ('name' or 'user/name'):"
                                f" {err}") from None
    return repo_id


def resolve(name_or_path: str | os.PathLike[str], patterns: list[str], *, revision: str | None = None,
            cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False,
            token: str | bool | None = None, force_download: bool = False) -> PretrainedSource:
    """A local folder as is; anything else is a Hub repo id, fetched (or read from the cache).

    Args:
        name_or_path: an existing folder, or a repo id such as ``"user/mnist-vqvae"``.
        patterns: the repo files needed (glob patterns); nothing else is downloaded.
        revision: branch, tag or 40-hex commit; a commit that is cached needs no network at all.
        cache_dir, local_files_only, token, force_download: as in ``huggingface_hub``.

    Returns:
        A :class:`PretrainedSource` with the folder to read and, for a repo, the resolved commit.

    Raises:
        TypeError: ``name_or_path`` is neither a string nor a path.
        FileNotFoundError: a ``pathlib.Path`` that does not exist (a string may be a repo id).
        NotADirectoryError: a file where a folder is expected.
        huggingface_hub.errors.HFValidationError: not a folder, and not a valid repo id (before any I/O).
        huggingface_hub.errors.LocalEntryNotFoundError: offline (``HF_HUB_OFFLINE=1`` or
            ``local_files_only``) and the repo is not in the cache; the message says which.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     resolve(tmp, ["config.json"]).commit is None
        True
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected a folder or a Hub repo id, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if text and path.is_dir():
        commit = path.name if path.parent.name == "snapshots" and COMMIT_HASH.match(path.name) else None
        return PretrainedSource(text, path, revision, commit)
    if text and path.exists():
        raise NotADirectoryError(f"{path} is a file; pass the folder that holds {CONFIG_NAME} and {WEIGHTS_NAME}"
                                 " (or pipeline.json)")
    if isinstance(name_or_path, os.PathLike):
        raise FileNotFoundError(f"no folder at {path}")
    try:
        validate_repo_id(text)
    except HFValidationError as err:
        raise HFValidationError(f"{text!r} is neither an existing local folder nor a valid Hugging Face Hub repo id"
                                f" ('name' or 'user/name'): {err}") from None
    repo_id = text
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=None if cache_dir is None else Path(cache_dir),
                                   local_files_only=local_files_only,
                                   token=token, force_download=force_download, allow_patterns=patterns,
                                   library_name=LIBRARY_NAME, library_version=_library_version())
    except IncompleteSnapshotError:
        raise
    except LocalEntryNotFoundError as err:
        cache = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
        if local_files_only:
            why = "local_files_only=True forbids downloading"
        elif constants.is_offline_mode():
            why = "offline mode is on (HF_HUB_OFFLINE=1), so nothing can be downloaded"
        else:
            why = "the Hub could not be reached"
        raise LocalEntryNotFoundError(
            f"cannot load {repo_id!r} (revision {revision or 'main'}): it is not cached in {cache} and {why}"
            f" (and there is no local folder {text!r}). Download it once with network access (or copy the cache),"
            " or pass a local folder.") from err
    folder_path = Path(folder)
    commit = folder_path.name if COMMIT_HASH.match(folder_path.name) else None
    return PretrainedSource(text, folder_path, revision, commit)


def resolve_folder(name_or_path: str | os.PathLike[str], patterns: list[str], *, revision: str | None = None,
                   cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False,
                   token: str | bool | None = None, force_download: bool = False) -> Path:
    """The folder of :func:`resolve` (kept for callers that need only the path)."""
    return resolve(name_or_path, patterns, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                   token=token, force_download=force_download).folder


def require_file(folder: Path, name: str) -> Path:
    """``folder / name`` if it is a file; otherwise a clear error naming both (never a pickle fallback)."""
    path = folder / name
    if path.is_file():
        return path
    if name.endswith(WEIGHTS_NAME) and (path.parent / "pytorch_model.bin").exists():
        raise CheckpointFormatError(f"{WEIGHTS_NAME} not found in {path.parent}; it holds pytorch_model.bin, a"
                                    " pickle, which discrete_latents never loads: convert it to safetensors")
    error = ConfigError if name.endswith(".json") else CheckpointFormatError
    raise error(f"{path.name} not found in {path.parent}")


def push_folder(repo_id: str, write: Callable[[Path], Any], *, private: bool | None = False,
                token: str | bool | None = None, commit_message: str = "Upload with discrete_latents",
                commit_description: str | None = None, branch: str | None = None,
                create_pr: bool | None = None) -> Any:
    """Create ``repo_id`` if needed and upload everything ``write(folder)`` writes, in one commit.

    ``write`` fills a fresh temporary folder (``save_pretrained``), so the upload holds exactly
    what a local save holds and nothing stale. ``create_commit`` is used directly: a folder
    upload may split into several commits, and a half-pushed model must never be visible.

    Returns:
        The ``huggingface_hub.CommitInfo`` of the commit.
    """
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="discrete_latents-push-") as tmp:
        root = Path(tmp)
        write(root)  # first: a model that cannot be saved must not leave an empty repo behind
        api = HfApi(token=token, library_name=LIBRARY_NAME, library_version=_library_version())
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        operations = [CommitOperationAdd(path_in_repo=path.relative_to(root).as_posix(), path_or_fileobj=str(path))
                      for path in sorted(root.rglob("*")) if path.is_file()]
        return api.create_commit(repo_id=repo_id, repo_type="model", operations=operations,
                                 commit_message=commit_message, commit_description=commit_description,
                                 revision=branch, create_pr=create_pr)


class HubMixin(PyTorchModelHubMixin, library_name=LIBRARY_NAME, tags=TAGS, repo_url=REPO_URL,
               paper_url=PAPER_URL, license=LICENSE):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for a module built from one config.

    A subclass sets ``config_class`` and takes that config as its only constructor argument.
    The folder holds ``config.json`` (the strict config, with class name and format version),
    ``model.safetensors`` and a ``README.md`` model card.
    """

    config_class: ClassVar[type[Config]]
    config: Any
    pretrained_source: PretrainedSource | None = None  # set by from_pretrained: folder and resolved commit

    def _save_pretrained(self, save_directory: Path) -> None:
        self.config.save(save_directory / CONFIG_NAME)
        save_module(self, save_directory / WEIGHTS_NAME)  # type: ignore[arg-type]

    def save_pretrained(self, save_directory: str | os.PathLike[str], *,  # type: ignore[override]
                        metadata: Mapping[str, Any] | None = None, repo_id: str | None = None,
                        push_to_hub: bool = False, **push_to_hub_kwargs: Any) -> Any:
        """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card to a folder.

        Every file is written atomically; files of an earlier save are replaced.

        Args:
            save_directory: the folder (created if needed).
            metadata: shown in the model card: ``preset``, ``dataset``, ``description``,
                ``training`` (settings) and ``metrics`` (a table); see :mod:`discrete_latents.model_card`.
            repo_id: the repo the card's usage snippet names; with ``push_to_hub=True`` the repo
                pushed to (default: the folder name).
            push_to_hub: also upload (see :meth:`push_to_hub`).

        Returns:
            The commit info when pushing, else ``None``.

        Example:
            >>> import tempfile
            >>> from discrete_latents import VQVAE, VQVAEConfig
            >>> model = VQVAE(VQVAEConfig(channels=(8, 16)))
            >>> with tempfile.TemporaryDirectory() as tmp:
            ...     model.save_pretrained(tmp)
            ...     VQVAE.from_pretrained(tmp).config == model.config
            True
        """
        if push_to_hub_kwargs and not push_to_hub:
            raise TypeError(f"save_pretrained() got unexpected keyword argument(s) {sorted(push_to_hub_kwargs)}")
        folder = Path(save_directory)
        card = component_card(self, metadata=metadata, repo_id=repo_id, library_version=_library_version(),
                              tags=self._card_tags())  # validates metadata before anything is written
        folder.mkdir(parents=True, exist_ok=True)
        self._save_pretrained(folder)
        atomic_write_bytes(folder / README_NAME, card.encode("utf-8"))
        if push_to_hub:
            return self.push_to_hub(repo_id or folder.name, metadata=metadata, **push_to_hub_kwargs)
        return None

    @classmethod
    def _card_tags(cls) -> list[str]:
        return list(cls._hub_mixin_info.model_card_data.tags or TAGS)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The :class:`huggingface_hub.ModelCard` that :meth:`save_pretrained` writes."""
        return ModelCard(component_card(self, metadata=kwargs.get("metadata"), repo_id=kwargs.get("repo_id"),
                                        library_version=_library_version(), tags=self._card_tags()))

    def push_to_hub(self, repo_id: str, *, private: bool | None = False,  # type: ignore[override]
                    token: str | None = None, commit_message: str = "Upload with discrete_latents",
                    commit_description: str | None = None, branch: str | None = None,
                    create_pr: bool | None = None, metadata: Mapping[str, Any] | None = None) -> Any:
        """Upload what :meth:`save_pretrained` writes to a Hub model repo, in one commit.

        Args:
            repo_id: ``"user/name"`` (created if missing; an existing repo is reused).
            private: create the repo as private. Default False.
            token: a Hub token; default the logged-in one.
            commit_message, commit_description: of the commit.
            branch: the branch to commit to (default ``main``).
            create_pr: open a pull request instead of committing to the branch.
            metadata: shown in the model card, as in :meth:`save_pretrained`.

        Returns:
            The ``huggingface_hub.CommitInfo`` of the commit.

        Example:
            >>> model.push_to_hub("me/mnist-vqvae")  # doctest: +SKIP
        """
        return push_folder(repo_id, lambda folder: self.save_pretrained(folder, metadata=metadata, repo_id=repo_id),
                           private=private, token=token, commit_message=commit_message,
                           commit_description=commit_description, branch=branch, create_pr=create_pr)

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
            cache_dir, local_files_only, token, force_download: as in ``huggingface_hub``;
                ``HF_HUB_OFFLINE=1`` reads the cache only.
            strict: missing or unexpected tensors raise (default). Shapes and dtypes always must match.
            check_finite: NaN or inf weights raise :class:`~discrete_latents.errors.NonFiniteError`.
            map_location: device to move the model to.
            subfolder: the model's folder inside the repo (e.g. ``"vqvae"`` of a pipeline).

        Returns:
            The model in eval mode; ``model.pretrained_source`` records the folder and the
            resolved commit.

        Raises:
            ConfigError: missing or malformed ``config.json``, or one from a newer version.
            CheckpointFormatError: missing, malformed or mismatched ``model.safetensors``.
            huggingface_hub.errors.HFValidationError: an invalid repo id (before any I/O).
            huggingface_hub.errors.LocalEntryNotFoundError: offline and not cached.

        Example:
            >>> from discrete_latents import VQVAE
            >>> model = VQVAE.from_pretrained("user/mnist-vqvae", revision="main")  # doctest: +SKIP
        """
        if subfolder is not None and (not isinstance(subfolder, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", subfolder)
                                      or subfolder in (".", "..")):
            raise ValueError(f"subfolder: expected one folder name such as 'vqvae', got {subfolder!r}")
        prefix = f"{subfolder}/" if subfolder else ""
        source = resolve(pretrained_model_name_or_path, [prefix + CONFIG_NAME, prefix + WEIGHTS_NAME],
                         revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                         token=token, force_download=force_download)
        model = cls._load_folder(source.folder / subfolder if subfolder else source.folder, strict=strict,
                                 check_finite=check_finite, map_location=map_location)
        model.pretrained_source = source
        return model

    @classmethod
    def _load_folder(cls: type[M], folder: Path, *, strict: bool = True, check_finite: bool = True,
                     map_location: str = "cpu") -> M:
        config = cls.config_class.load(require_file(folder, CONFIG_NAME))
        model = cls(config)  # type: ignore[call-arg]
        load_module(model, require_file(folder, WEIGHTS_NAME), strict=strict,  # type: ignore[arg-type]
                    check_finite=check_finite)
        return model.to(map_location).eval()  # type: ignore[attr-defined,no-any-return]
