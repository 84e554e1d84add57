"""Checkpoint faults CK-05 (one EIO, then a retry), CK-09 (newer format), CK-10 (read-only out_dir)
and CK-16 (temporaries on the target's filesystem)."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import discrete_latents.training.checkpoint as checkpoint
import discrete_latents.training.loop as loop
from discrete_latents import VQVAE, CausalPrior, VQVAEPipeline
from discrete_latents._configs import CausalPriorConfig, VQVAEConfig
from discrete_latents.errors import CheckpointSaveError, ConfigError
from discrete_latents.training import CheckpointManager, TrainConfig, Trainer

Settings = Callable[..., dict[str, object]]


@pytest.fixture
def settings(tiny_train_settings: Callable[..., dict[str, object]], digit_folder: Path) -> Settings:
    """``settings(out, **changes)``: a tiny two-stage run on the bar images."""
    return lambda out, **extra: tiny_train_settings(digit_folder, out, **extra)


def test_ck05_one_eio_fails_the_save_and_the_retry_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = CheckpointManager(tmp_path, keep_last=3)
    manager.save(1, {"model": {"w": torch.zeros(2)}}, {"step": 1})
    real_write = checkpoint.write_safetensors
    calls = {"n": 0}

    def eio_once(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpoint, "write_safetensors", eio_once)
    with pytest.raises(CheckpointSaveError, match="(?i)input/output error.*earlier checkpoints are intact") as info:
        manager.save(2, {"model": {"w": torch.ones(2)}}, {"step": 2})
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.EIO
    assert not list(tmp_path.glob(".tmp-*"))
    assert not (tmp_path / "step-00000002").exists()
    assert manager.latest() == tmp_path / "step-00000001"
    files, state = manager.load(tmp_path / "step-00000001")
    assert torch.equal(files["model"]["w"], torch.zeros(2)) and state["step"] == 1

    # the retry at the next checkpoint goes through the same (now healthy) writer
    folder = manager.save(3, {"model": {"w": torch.full((2,), 3.0)}}, {"step": 3})
    assert calls["n"] == 2
    assert manager.latest() == folder == tmp_path / "step-00000003"
    files, state = manager.load(folder)
    assert torch.equal(files["model"]["w"], torch.full((2,), 3.0)) and state["step"] == 3
    assert (tmp_path / "latest").read_text() == "step-00000003"
    assert not list(tmp_path.glob(".tmp-*"))


def test_ck09_newer_checkpoint_format_asks_for_an_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = CheckpointManager(tmp_path)
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", checkpoint.FORMAT_VERSION + 1)  # a newer writer
    manager.save(1, {"model": {"w": torch.zeros(1)}}, {"step": 1})
    monkeypatch.undo()  # back to this reader
    folder = manager.latest()  # hashes match: the folder is complete, only its format is newer
    assert folder == tmp_path / "step-00000001"
    with pytest.raises(ConfigError, match="format version 2; this discrete_latents reads up to 1: upgrade "
                                          "discrete_latents"):
        manager.load(folder)


def test_ck09_newer_format_refuses_a_resume(settings: Settings, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    config = TrainConfig(**settings(out, stage="vqvae", vqvae_epochs=1, resume=True))  # type: ignore[arg-type]
    manager = CheckpointManager(out / "checkpoints" / "vqvae")
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", checkpoint.FORMAT_VERSION + 1)
    manager.save(1, {"model": {"w": torch.zeros(1)}}, {"step": 1})
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", checkpoint.FORMAT_VERSION - 1)
    assert checkpoint.FORMAT_VERSION == 1
    (out / "run.json").write_text(json.dumps({"config": config.to_dict()}))  # the run this folder belongs to
    with pytest.raises(ConfigError, match="upgrade discrete_latents"):
        Trainer(config).fit()


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        pytest.fail("training started although out_dir is not writable")

    monkeypatch.setattr(loop, "load_split", fail)
    monkeypatch.setattr(Trainer, "train_vqvae", fail)
    monkeypatch.setattr(Trainer, "train_prior", fail)


def test_ck10_unwritable_out_dir_fails_before_training(settings: Settings, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    out.mkdir()
    real_access = os.access

    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        if Path(str(path)) == out and mode & os.W_OK:
            return False  # what a read-only folder reports
        return real_access(path, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop.os, "access", access)
    _no_training(monkeypatch)
    with pytest.raises(PermissionError, match=f"out_dir {out} is not writable"):
        Trainer(TrainConfig(**settings(out, stage="vqvae", vqvae_epochs=1))).fit()  # type: ignore[arg-type]
    assert sorted(p.name for p in out.iterdir()) == []  # no lock, no checkpoints, no logs


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders; the monkeypatched variant covers CK-10")
def test_ck10_read_only_out_dir_fails_before_training(settings: Settings, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    _no_training(monkeypatch)
    try:
        with pytest.raises(PermissionError, match=f"out_dir {out} is not writable"):
            Trainer(TrainConfig(**settings(out, stage="vqvae", vqvae_epochs=1))).fit()  # type: ignore[arg-type]
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o755)


def test_ck16_every_rename_stays_inside_its_target_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         tiny_vqvae_config: VQVAEConfig,
                                                         tiny_prior_config: CausalPriorConfig) -> None:
    """A rename across filesystems fails with EXDEV; a temporary that is a sibling of its target
    (same folder) cannot cross one. Record every rename of a checkpoint and a pipeline save."""
    renames: list[tuple[Path, Path]] = []
    for name in ("replace", "rename"):
        real = getattr(os, name)

        def recording(src: str, dst: str, *args: object, _real: Callable[..., None] = real, **kwargs: object) -> None:
            renames.append((Path(src), Path(dst)))
            _real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, name, recording)
    CheckpointManager(tmp_path / "checkpoints").save(1, {"model": {"w": torch.zeros(2)}}, {"step": 1})
    pipeline = VQVAEPipeline(vqvae=VQVAE(tiny_vqvae_config), prior=CausalPrior(tiny_prior_config))
    pipeline.save_pretrained(tmp_path / "pipeline")
    assert any(dst.name.startswith("step-") for _, dst in renames)  # the checkpoint folder itself
    assert any(dst.name == "model.safetensors" for _, dst in renames)
    assert all(src.parent == dst.parent for src, dst in renames), renames
