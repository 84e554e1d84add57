"""Where saved models live: local folders and Hugging Face Hub repos.

A name is resolved the same way everywhere (`resolve`): an existing local folder is read
from disk; anything else must be a valid Hub repo id (``"user/name"``), checked before any I/O,
and is fetched with ``huggingface_hub.snapshot_download``, which reads the Hugging Face cache
without network access when ``HF_HUB_OFFLINE=1`` or ``local_files_only=True``. An upload
(`upload_folder`) sends a saved folder's files byte for byte in one commit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, constants, snapshot_download
from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

from .errors import CheckpointFormatError, ConfigError

LIBRARY_NAME = "discrete_latents"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
README_NAME = "README.md"
SAMPLES_NAME = "samples.png"
COMMIT_MESSAGE = "Upload with discrete_latents"
COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
# Branch and tag names as git allows them, without anything that could leave the cache folder.
_REVISION = re.compile(r"^(?!.*\.\.)(?!/)(?!.*//)[A-Za-z0-9._/-]{1,255}(?<!/)$")


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


def library_version() -> str:
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


def check_revision(revision: object) -> str | None:
    """A branch, tag or commit name, refused before it reaches the cache if it could name a path.

    The cache keeps refs as files named after the revision, so ``"../../x"`` could point an
    offline load at a folder outside the cache.

    Raises:
        ValueError: not a string, or a name with ``..``, a leading, trailing or doubled ``/``, or
            characters outside letters, digits, ``._/-``.
    """
    if revision is None:
        return None
    if not isinstance(revision, str) or not _REVISION.match(revision):
        raise ValueError(f"revision: expected a branch, tag or 40-hex commit (letters, digits, '._/-', no '..'),"
                         f" got {revision!r}")
    return revision


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
        A `PretrainedSource` with the folder to read and, for a repo, the resolved commit.

    Raises:
        TypeError: ``name_or_path`` is neither a string nor a path.
        FileNotFoundError: a ``pathlib.Path`` that does not exist (a string may be a repo id).
        NotADirectoryError: a file where a folder is expected.
        huggingface_hub.errors.HFValidationError: not a folder, and not a valid repo id (before any I/O).
        huggingface_hub.errors.LocalEntryNotFoundError: offline (``HF_HUB_OFFLINE=1`` or
            ``local_files_only``) and the repo is not in the cache; the message says which.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     resolve(tmp, ["config.json"]).commit is None
        True
    """
    revision = check_revision(revision)
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
                                   library_name=LIBRARY_NAME, library_version=library_version())
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


def upload_folder(folder: str | os.PathLike[str], repo_id: str, *, private: bool | None = False,
                  token: str | bool | None = None, commit_message: str = COMMIT_MESSAGE,
                  commit_description: str | None = None, branch: str | None = None,
                  create_pr: bool | None = None) -> Any:
    """Create ``repo_id`` if needed and upload every file of a saved folder, byte for byte, in one commit.

    ``create_commit`` is used directly: a folder upload may split into several commits, and a
    half-pushed model must never be visible. Hidden files (names starting with ``.``) stay behind.

    Returns:
        The ``huggingface_hub.CommitInfo`` of the commit.
    """
    check_repo_id(repo_id)
    root = Path(folder)
    files = [path for path in sorted(root.rglob("*")) if path.is_file()
             and not any(part.startswith(".") for part in path.relative_to(root).parts)]
    api = HfApi(token=token, library_name=LIBRARY_NAME, library_version=library_version())
    repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    operations = [CommitOperationAdd(path_in_repo=path.relative_to(root).as_posix(), path_or_fileobj=str(path))
                  for path in files]
    return api.create_commit(repo_id=repo_id, repo_type="model", operations=operations,
                             commit_message=commit_message, commit_description=commit_description,
                             revision=branch, create_pr=create_pr)
