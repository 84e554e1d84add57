"""The discrete-latents command: settings parsing and every subcommand end to end on tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from discrete_latents import VQVAE, CausalPrior, VQVAEPipeline
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


MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not MNIST.is_dir(), reason="the real MNIST files are not next to this checkout")
def test_evaluate_and_reconstruct_on_real_mnist(tiny_pipeline: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--pipeline", str(tiny_pipeline), "--data-dir", str(MNIST), "--limit", "200"]) == 0
    table = capsys.readouterr().out
    assert "psnr" in table and "nll_bits_per_image" in table
    out = tmp_path / "recon.png"
    assert main(["reconstruct", "--pipeline", str(tiny_pipeline), "--data-dir", str(MNIST), "--num", "8",
                 "--out", str(out)]) == 0
    assert Image.open(out).size == (8 * 28 + 9 * 2, 2 * 28 + 3 * 2)


def test_push_uploads_the_saved_folder(tiny_pipeline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pushed: dict[str, object] = {}

    def fake_push(self: VQVAEPipeline, repo_id: str, **kwargs: object) -> str:
        pushed.update(repo_id=repo_id, **kwargs)
        return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(VQVAEPipeline, "push_to_hub", fake_push)
    assert main(["push", str(tiny_pipeline), "user/tiny", "--private"]) == 0
    assert pushed["repo_id"] == "user/tiny" and pushed["private"] is True
