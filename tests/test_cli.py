"""The discrete-latents command: settings parsing and every subcommand end to end on tiny models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discrete_latents import VQVAE, CausalPrior, VQVAEPipeline, pretrained_path
from discrete_latents.cli import main
from discrete_latents.cli._args import build_config
from discrete_latents.errors import ConfigError
from discrete_latents.training import TrainConfig


def test_flags_are_typed_by_the_config_fields() -> None:
    config = build_config(TrainConfig, ["--vqvae_epochs=3", "--resume", "--out-dir=runs/x", "--vqvae_lr=0.001",
                                        '--vqvae_overrides={"channels": [8, 16]}'])
    assert config.vqvae_epochs == 3 and config.resume is True and config.out_dir == "runs/x"
    assert config.vqvae_lr == 0.001 and config.vqvae_overrides == {"channels": [8, 16]}


def test_toml_and_json_presets_then_flags_override(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('prior_epochs = 7\nout_dir = "runs/toml"\n')
    assert build_config(TrainConfig, [], str(toml)).prior_epochs == 7
    assert build_config(TrainConfig, ["--prior_epochs=2"], str(toml)).prior_epochs == 2
    js = tmp_path / "run.json"
    js.write_text('{"batch_size": 32}')
    assert build_config(TrainConfig, [], str(js)).batch_size == 32


@pytest.mark.parametrize("flag, message", [("--vqvae_epoch=3", "did you mean 'vqvae_epochs'"),
                                           ("--batch_size=abc", "batch_size"), ("--batch_size=true", "batch_size"),
                                           ("--stage=all", "stage"), ("stray", "--key=value")])
def test_bad_flags_raise_config_errors_naming_the_field(flag: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(TrainConfig, [flag])


def test_bad_flag_exits_with_status_2_and_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--vqvae_epoch=3"]) == 2
    assert "did you mean 'vqvae_epochs'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from discrete_latents import CausalPriorConfig, VQVAEConfig

    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16}))
    prior = CausalPrior(CausalPriorConfig(codebook_size=16, n_layer=1, n_head=2, n_embd=16, num_classes=10))
    folder = tmp_path_factory.mktemp("pipe") / "pipeline"
    VQVAEPipeline(vqvae=vqvae, prior=prior).save_pretrained(folder)
    return folder


def test_sample_writes_a_grid_of_the_requested_size(tiny_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "samples.png"
    assert main(["sample", "--pipeline", str(tiny_pipeline), "--num-samples", "6", "--nrow", "3",
                 "--labels", "7", "--out", str(out)]) == 0
    width, height = Image.open(out).size
    assert (width, height) == (3 * 28 + 4 * 2, 2 * 28 + 3 * 2)  # 3 x 2 grid with 2-pixel padding


def test_sample_is_reproducible_with_a_seed(tiny_pipeline: Path, tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        main(["sample", "--pipeline", str(tiny_pipeline), "--num-samples", "4", "--seed", "3",
              "--out", str(tmp_path / name)])
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_sample_from_a_missing_pipeline_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "--pipeline", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")]) == 2
    assert "error" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_train_then_evaluate_and_reconstruct(digit_folder: Path, tmp_path: Path,
                                             tiny_train_settings: Callable[..., dict[str, object]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    settings = tiny_train_settings(digit_folder, tmp_path / "run", vqvae_epochs=1, prior_epochs=1)
    flags = [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()]
    assert main(["train", *flags]) == 0
    out = tmp_path / "run"
    pipe = VQVAEPipeline(vqvae=VQVAE.from_pretrained(out / "vqvae"), prior=CausalPrior.from_pretrained(out / "prior"))
    pipe.save_pretrained(tmp_path / "pipe")
    images = torch.rand(2, 1, 28, 28)
    assert pipe.reconstruct(images).shape == images.shape
    assert json.loads((out / "metrics.json").read_text())["codebook_size"] == 16


def test_console_script_is_installed_and_prints_help() -> None:
    result = subprocess.run([sys.executable, "-m", "discrete_latents.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert all(command in result.stdout for command in ("train", "sample", "reconstruct", "evaluate", "push"))


def test_evaluate_and_reconstruct_on_a_folder_of_real_images(tiny_pipeline: Path, digit_folder: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--pipeline", str(tiny_pipeline), "--dataset", "folder", "--data-dir", str(digit_folder)]
    assert main(["evaluate", *common, "--limit", "20"]) == 0
    table = dict(line.split() for line in capsys.readouterr().out.splitlines() if not line.startswith("-"))
    pipe = VQVAEPipeline.from_pretrained(tiny_pipeline)
    files = sorted((digit_folder / "test").glob("*.png"))[:20]
    images = torch.stack([torch.from_numpy(np.array(Image.open(p))) for p in files])
    images = images[:, None].float() / 255
    mse = float(((pipe.reconstruct(images) - images) ** 2).mean())
    assert float(table["mse"]) == pytest.approx(mse, abs=5e-5)  # printed to 4 decimals: these 20 images, no others
    assert float(table["nll_bits_per_image"]) > 0
    out = tmp_path / "recon.png"
    assert main(["reconstruct", *common, "--num", "8", "--out", str(out)]) == 0
    grid = np.array(Image.open(out))
    assert grid.shape[:2] == (2 * 28 + 3 * 2, 8 * 28 + 9 * 2)
    assert np.array_equal(grid[2:30, 2:30].reshape(28, 28, -1)[..., 0], (images[0, 0] * 255).round().byte().numpy())


def test_push_uploads_the_folder_byte_for_byte_in_one_commit(pushes, tmp_path: Path) -> None:
    folder = tmp_path / "bundled"
    shutil.copytree(pretrained_path("mnist"), folder)  # with the samples.png its card shows
    assert main(["push", str(folder), "user/mnist", "--private"]) == 0
    (commit,) = pushes.commits
    on_disk = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert "samples.png" in on_disk and commit["files"] == on_disk
    assert pushes.repos[0]["private"] is True and commit["commit_message"] == "Upload with discrete_latents"


def test_push_refuses_a_folder_that_does_not_load(pushes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(pretrained_path("mnist"), folder)
    (folder / "prior" / "model.safetensors").write_bytes(b"not weights")
    assert main(["push", str(folder), "user/mnist"]) == 2
    assert "model.safetensors" in capsys.readouterr().err and pushes.repos == [] and pushes.commits == []
