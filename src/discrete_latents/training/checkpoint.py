"""Crash-safe training checkpoints in safetensors + JSON (no pickle).

A checkpoint is a folder ``step-00000123/`` holding ``model.safetensors``,
``optimizer.safetensors``, ``rng.safetensors`` and ``trainer_state.json``, and, written last,
``COMMITTED`` with the SHA-256 of every file. It is assembled under a temporary name and renamed
into place, so a crash at any moment leaves either no new checkpoint or a complete one. Resume
takes the newest folder whose hashes match; older ones are pruned only after a newer one commits.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import uuid
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._files import atomic_write_bytes, dumps_json, fsync_directory, loads_json, read_json
from .._safetensors import read_safetensors, write_safetensors
from ..errors import CheckpointFormatError, CheckpointSaveError, ConfigError

COMMITTED = "COMMITTED"
STATE_NAME = "trainer_state.json"
FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-ready metadata."""
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for param_id, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"{param_id}.{key}"] = value
            else:
                scalars[f"{param_id}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for source in (tensors, meta["scalars"]):
        for name, value in source.items():
            param_id, key = name.split(".", 1)
            state.setdefault(int(param_id), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    # Saved tensors come back contiguous. Fused Adam walks a parameter and its moments as flat
    # memory, so a channels-last weight with contiguous moments would be updated with the wrong
    # moments, silently; give every moment its parameter's memory layout.
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    optimizer.state[param][key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def rng_to_tensors() -> dict[str, Tensor]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    return tensors


def rng_from_tensors(tensors: dict[str, Tensor]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


class CheckpointManager:
    """Writes, finds and prunes checkpoints under ``root``.

    Args:
        root: the checkpoints folder (created on first save).
        keep_last: complete checkpoints to keep.
    """

    def __init__(self, root: str | os.PathLike[str], keep_last: int = 2) -> None:
        self.root = Path(root)
        self.keep_last = keep_last

    def save(self, step: int, files: dict[str, dict[str, Tensor]], state: dict[str, Any]) -> Path:
        """Write ``{name}.safetensors`` for each entry of ``files`` plus the trainer state.

        Raises:
            CheckpointSaveError: the write failed (disk full, I/O error); earlier checkpoints are intact.
        """
        final = self.root / f"step-{step:08d}"
        if final.is_dir() and (final / COMMITTED).is_file():
            return final  # this step is already saved (e.g. an epoch end on a checkpoint step)
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        try:
            tmp.mkdir(parents=True)
            for name, tensors in files.items():
                write_safetensors(tmp / f"{name}.safetensors", tensors)
            atomic_write_bytes(tmp / STATE_NAME, dumps_json({"format_version": FORMAT_VERSION, **state}).encode())
            hashes = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
            atomic_write_bytes(tmp / COMMITTED, dumps_json(hashes).encode())  # last: marks it complete
            if final.exists():  # an incomplete leftover of a crashed save of the same step
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_directory(self.root)
            atomic_write_bytes(self.root / "latest", final.name.encode())
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            reason = "no space left on device" if getattr(err, "errno", None) == 28 else str(err)
            raise CheckpointSaveError(f"could not save checkpoint {final}: {reason}; earlier checkpoints are"
                                      " intact") from err
        self._prune()
        return final

    def _complete(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.glob("step-*") if p.is_dir() and (p / COMMITTED).is_file()]
        return sorted(found, key=lambda p: p.name)

    def _prune(self) -> None:
        for old in self._complete()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        for leftover in self.root.glob(".tmp-*"):  # from saves killed part-way
            shutil.rmtree(leftover, ignore_errors=True)

    def verify(self, folder: Path) -> None:
        """Raise CheckpointFormatError unless every file matches the hashes in COMMITTED."""
        try:
            hashes = loads_json((folder / COMMITTED).read_bytes(), source=str(folder / COMMITTED))
        except (OSError, ConfigError) as err:
            raise CheckpointFormatError(f"{folder}: unreadable {COMMITTED} ({err})") from None
        if not isinstance(hashes, dict) or not hashes:
            raise CheckpointFormatError(f"{folder}: {COMMITTED} lists no files")
        for name, expected in hashes.items():
            path = folder / name
            if not path.is_file() or _sha256(path) != expected:
                raise CheckpointFormatError(f"{folder}: {name} is missing or does not match its recorded SHA-256")

    def latest(self) -> Path | None:
        """The newest checkpoint whose files match their hashes; damaged ones are skipped with a warning."""
        for folder in reversed(self._complete()):
            try:
                self.verify(folder)
                return folder
            except CheckpointFormatError as err:
                warnings.warn(f"skipping damaged checkpoint: {err}", RuntimeWarning, stacklevel=2)
        return None

    @staticmethod
    def load(folder: Path) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
        """(tensors by file stem, trainer state) of a verified checkpoint folder."""
        state = read_json(folder / STATE_NAME)
        if not isinstance(state, dict):
            raise CheckpointFormatError(f"{folder / STATE_NAME}: expected a JSON object")
        version = state.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ConfigError(f"{folder}: checkpoint format version {version!r}; this discrete_latents reads up to"
                              f" {FORMAT_VERSION}: upgrade discrete_latents")
        files = {p.stem: read_safetensors(p) for p in folder.glob("*.safetensors")}
        return files, state


class RunLock:
    """Refuses a second trainer on the same output folder (a PID + host lock file).

    A lock is stale, and is replaced, when its process is gone, or when it names this very
    process without this process holding it: a container restarted with the same pid finds the
    lock of its previous life. A folder or other non-file in the lock's place is cleared too.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".lock"
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # each retry follows the removal of a stale lock; racing trainers may re-create it
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._clear_stale()
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(self.owner)
            _HELD.add(self._key)
            return self
        raise CheckpointSaveError(f"could not take the lock {self.path}: another process keeps re-creating it")

    def __exit__(self, *exc: object) -> None:
        _HELD.discard(self._key)
        if self._holder() == self.owner:
            self.path.unlink(missing_ok=True)

    @property
    def _key(self) -> str:
        return os.path.realpath(self.path)

    def _holder(self) -> str | None:
        """The lock file's ``host:pid`` text; ``None`` if it is absent, or is no regular file."""
        try:
            if not stat.S_ISREG(os.lstat(self.path).st_mode):
                return None
            return self.path.read_bytes().decode("utf-8", "replace").strip()
        except OSError:
            return None

    def _clear_stale(self) -> None:
        """Remove the lock unless a live process holds it (then raise)."""
        if self.path.is_dir() and not self.path.is_symlink():
            warnings.warn(f"removing the folder {self.path}: the run's lock file belongs there", RuntimeWarning,
                          stacklevel=3)
            try:
                shutil.rmtree(self.path)
            except OSError as err:
                raise CheckpointSaveError(f"{self.path} is a folder where the run's lock file belongs, and it could"
                                          f" not be removed: {err}") from err
            return
        holder = self._holder() or ""
        host, _, pid = holder.partition(":")
        if host == socket.gethostname() and pid.isdigit():
            if int(pid) == os.getpid() and self._key in _HELD:
                raise CheckpointSaveError(f"{self.path.parent} is in use by another training run in this process;"
                                          " choose another out_dir")
            if int(pid) != os.getpid() and _alive(int(pid)):
                raise CheckpointSaveError(f"{self.path.parent} is in use by another training process (pid {pid});"
                                          " stop it or choose another out_dir")
        self.path.unlink(missing_ok=True)  # stale: its process died, or it is this pid's from an earlier life


_HELD: set[str] = set()  # lock files this process holds now (real paths)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
