"""Shared fixtures: tiny configs that keep the suite fast, and registry isolation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from huggingface_hub import CommitInfo, HfApi, RepoUrl
from PIL import Image

from discrete_latents import DECODERS, ENCODERS, PRIORS, QUANTIZERS, CausalPriorConfig, Registry, VQVAEConfig
from discrete_latents._safetensors import read_safetensors

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"  # the real files, where this checkout has them
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models: intra-op threads only add synchronisation (100x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def snapshot(registry: Registry) -> tuple[dict, dict | None, dict]:
    """A copy of a registry's state: its classes, discovered plugins and failed plugins."""
    plugins = registry._plugins
    return dict(registry._classes), None if plugins is None else dict(plugins), dict(registry._failed)


def restore(registry: Registry, state: tuple[dict, dict | None, dict]) -> None:
    registry._classes = dict(state[0])
    registry._plugins = None if state[1] is None else dict(state[1])
    registry._failed = dict(state[2])


@pytest.fixture
def restore_registries():
    """Snapshot every registry and restore it afterwards, so a test may register freely."""
    registries = (ENCODERS, DECODERS, QUANTIZERS, PRIORS)
    saved = [snapshot(r) for r in registries]
    yield
    for registry, state in zip(registries, saved):
        restore(registry, state)


@pytest.fixture
def tiny_vqvae_config() -> VQVAEConfig:
    return VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer="vq", quantizer_kwargs={"codebook_size": 16})


@pytest.fixture
def tiny_prior_config() -> CausalPriorConfig:
    return CausalPriorConfig(codebook_size=16, grid_size=(7, 7), n_layer=2, n_head=2, n_embd=16)

TINY_VQVAE = {"channels": [8, 16], "latent_dim": 8, "quantizer": "vq_ema",
              "quantizer_kwargs": {"codebook_size": 16, "kmeans_init": True, "restart_dead_codes": True}}
TINY_PRIOR = {"codebook_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}


def _write_digit_folder(root: Path, count: int = 96, seed: int = 0) -> Path:
    """PNG images of bars at random positions, 28x28 grayscale, in ``root/train`` and ``root/test``."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", count), ("test", count // 4)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = np.zeros((28, 28), dtype=np.uint8)
            r, c = rng.integers(2, 20, size=2)
            image[r:r + 6, c:c + 3] = 255
            Image.fromarray(image, mode="L").save(folder / f"{i:04d}.png")
    return root


def _tiny_train_settings(data_dir: Path, out_dir: Path, **extra: object) -> dict[str, object]:
    settings: dict[str, object] = dict(
        out_dir=str(out_dir), dataset="folder", data_dir=str(data_dir), vqvae_overrides=TINY_VQVAE,
        prior_overrides=TINY_PRIOR, vqvae_epochs=2, prior_epochs=2, batch_size=16, prior_batch_size=16,
        warmup_steps=2, checkpoint_every=3, log_every=2, progress=False, num_threads=1,
    )
    settings.update(extra)
    return settings


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder dataset of small bar images with train/ and test/ splits."""
    return _write_digit_folder(tmp_path_factory.mktemp("digits"))


@pytest.fixture
def tiny_train_settings() -> Callable[..., dict[str, object]]:
    """``settings(data_dir, out_dir, **changes)``: TrainConfig fields of a seconds-long two-stage run."""
    return _tiny_train_settings


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args[1:] if args else kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1, as if set before the process started (huggingface_hub reads it at import)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


class Pushes:
    """Records the create_repo / create_commit calls of HfApi (the upload itself) instead of sending them."""

    def __init__(self, monkeypatch) -> None:
        self.oid = COMMIT  # the commit every recorded push answers with
        self.repos: list[dict] = []
        self.commits: list[dict] = []

        def create_repo(api, repo_id, **kwargs):
            self.repos.append({"repo_id": repo_id, **kwargs})
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_commit(api, repo_id, operations, **kwargs):
            files = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
            self.commits.append({"repo_id": repo_id, "files": files, **kwargs})
            return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}",
                              commit_message=kwargs["commit_message"], commit_description="", oid=COMMIT)

        def upload_folder(api, *args, **kwargs):
            raise AssertionError("upload_folder may split a push into several commits; create_commit expected")

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


@pytest.fixture
def pushes(monkeypatch: pytest.MonkeyPatch) -> Pushes:
    """Every upload through HfApi is recorded here instead of being sent."""
    return Pushes(monkeypatch)


@pytest.fixture
def two_gloo_ranks() -> Callable[[str, dict[str, object]], list[dict[str, torch.Tensor]]]:
    """Run a training script as two torchrun-style CPU processes; return each rank's saved weights.

    The script gets ``settings`` as JSON in ``sys.argv[1]`` and must write its model to
    ``{out_dir}/rank{RANK}.safetensors``.
    """

    def launch(script: str, settings: dict[str, object]) -> list[dict[str, torch.Tensor]]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        processes = []
        for rank in range(2):
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
            processes.append(subprocess.Popen([sys.executable, "-c", script, json.dumps(settings)], env=env))
        assert [p.wait(timeout=300) for p in processes] == [0, 0]
        return [read_safetensors(Path(str(settings["out_dir"])) / f"rank{rank}.safetensors") for rank in range(2)]

    return launch
