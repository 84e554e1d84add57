"""A training folder belongs to one run: no mixing of runs, checkpoints per stage, codes tied to their VQ-VAE."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from discrete_latents import VQVAE, VQVAEConfig
from discrete_latents._safetensors import read_metadata, read_safetensors
from discrete_latents.errors import ConfigError
from discrete_latents.training import TrainConfig, Trainer
from discrete_latents.training.data import load_split

Settings = Callable[..., dict[str, object]]


def train(digit_folder: Path, out: Path, settings: Settings, **changes: object) -> dict[str, float]:
    return Trainer(TrainConfig(**settings(digit_folder, out, **changes)), log=lambda _: None).fit()  # type: ignore[arg-type]


def steps_of(folder: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*"))


def test_a_new_run_refuses_a_folder_holding_another_run(digit_folder: Path, tmp_path: Path,
                                                        tiny_train_settings: Settings) -> None:
    out = tmp_path / "run"
    train(digit_folder, out, tiny_train_settings, stage="vqvae", vqvae_epochs=1)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"not empty.*--resume.*fresh out_dir"):
        train(digit_folder, out, tiny_train_settings, stage="vqvae", vqvae_epochs=2, seed=1)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the first run's checkpoints and models are untouched


def test_a_folder_of_other_files_is_refused_too(digit_folder: Path, tmp_path: Path,
                                                tiny_train_settings: Settings) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        train(digit_folder, out, tiny_train_settings)
    with pytest.raises(ConfigError, match="not a training run's folder"):
        train(digit_folder, out, tiny_train_settings, resume=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_checkpoints_are_kept_per_stage_with_their_own_steps(digit_folder: Path, tmp_path: Path,
                                                             tiny_train_settings: Settings) -> None:
    out = tmp_path / "run"
    train(digit_folder, out, tiny_train_settings, keep_last=10)
    # 96 images, batch 16: 6 steps per epoch, 2 epochs per stage; checkpoints every 3 steps and at epoch ends.
    assert steps_of(out / "checkpoints" / "vqvae") == [3, 6, 9, 12]
    assert steps_of(out / "checkpoints" / "prior") == [3, 6, 9, 12]
    # A resume of the finished run finds the prior's last checkpoint and trains nothing more.
    metrics = train(digit_folder, out, tiny_train_settings, keep_last=10, resume=True)
    assert steps_of(out / "checkpoints" / "prior") == [3, 6, 9, 12] and "nll_bits_per_image" in metrics


def test_stage_two_never_reads_codes_of_another_vqvae(digit_folder: Path, tmp_path: Path,
                                                      tiny_train_settings: Settings) -> None:
    out = tmp_path / "run"
    train(digit_folder, out, tiny_train_settings, prior_epochs=1)
    old_key = read_metadata(out / "codes.safetensors")["vqvae"]
    # A different stage-1 model takes the folder's vqvae/ place (e.g. copied in from another run).
    config = VQVAEConfig.from_dict({**VQVAE.from_pretrained(out / "vqvae").config.to_dict()})
    torch.manual_seed(123)
    other = VQVAE(config)
    other.save_pretrained(out / "vqvae")
    train(digit_folder, out, tiny_train_settings, stage="prior", prior_epochs=1)
    cached = read_safetensors(out / "codes.safetensors")["codes"].long()
    source = load_split(TrainConfig(**tiny_train_settings(digit_folder, out)), "train")  # type: ignore[arg-type]
    images = torch.cat([batch for batch, _ in source.in_order(1000)])
    assert read_metadata(out / "codes.safetensors")["vqvae"] != old_key
    assert torch.equal(cached, other.encode(images))


def test_stage_prior_needs_a_finished_stage_one(digit_folder: Path, tmp_path: Path,
                                                tiny_train_settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"--stage=prior .* train stage 1 there first"):
        train(digit_folder, tmp_path / "empty", tiny_train_settings, stage="prior")


def test_vqvae_from_trains_a_prior_on_another_folders_vqvae(digit_folder: Path, tmp_path: Path,
                                                            tiny_train_settings: Settings) -> None:
    """Stage 2 alone, on a VQ-VAE saved elsewhere: it is copied in, unchanged, and the pipeline uses it."""
    source = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16})).eval()
    source.save_pretrained(tmp_path / "vqvae_source")
    out = tmp_path / "run"
    train(digit_folder, out, tiny_train_settings, stage="prior", vqvae_from=str(tmp_path / "vqvae_source"),
          prior_epochs=1)
    copied = read_safetensors(out / "vqvae" / "model.safetensors")
    assert copied.keys() == source.state_dict().keys()
    assert all(torch.equal(copied[k], v) for k, v in source.state_dict().items())
    used = read_safetensors(out / "pipeline" / "vqvae" / "model.safetensors")
    assert all(torch.equal(used[k], v) for k, v in source.state_dict().items())
    assert (out / "pipeline" / "prior" / "model.safetensors").is_file()


def test_vqvae_from_needs_a_fresh_folder_and_stage_prior(digit_folder: Path, tmp_path: Path,
                                                         tiny_train_settings: Settings) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--vqvae_from starts a new run, in a fresh out_dir"):
        train(digit_folder, tmp_path / "used", tiny_train_settings, stage="prior", vqvae_from="mnist")
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["notes.txt"]
    with pytest.raises(ConfigError, match="vqvae_from"):
        TrainConfig(stage="both", vqvae_from="mnist")
