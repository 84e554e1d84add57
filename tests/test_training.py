"""The two-stage trainer: it learns, logs, checkpoints, resumes exactly and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from discrete_latents import VQVAE, CausalPrior, VQVAEPipeline
from discrete_latents._safetensors import read_safetensors
from discrete_latents.errors import CheckpointSaveError, ConfigError, NonFiniteError
from discrete_latents.training import CheckpointManager, TrainConfig, Trainer
from discrete_latents.training.checkpoint import optimizer_from_tensors, optimizer_to_tensors
from discrete_latents.training.data import load_split
from discrete_latents.training.loop import learning_rate

Settings = Callable[..., dict[str, object]]
Train = Callable[..., dict[str, float]]


@pytest.fixture
def data_dir(digit_folder: Path) -> Path:
    return digit_folder


@pytest.fixture
def settings(tiny_train_settings: Callable[..., dict[str, object]], data_dir: Path) -> Callable[..., dict[str, object]]:
    """``settings(out, **changes)``: a tiny two-stage run on the bar images."""
    return lambda out, **extra: tiny_train_settings(data_dir, out, **extra)


@pytest.fixture
def train(settings: Callable[..., dict[str, object]]) -> Callable[..., dict[str, float]]:
    return lambda out, **extra: Trainer(TrainConfig(**settings(out, **extra))).fit()  # type: ignore[arg-type]


def test_two_stages_write_models_logs_and_grids(train: Train, settings: Settings, tmp_path: Path) -> None:
    metrics = train(tmp_path / "run", vqvae_epochs=3)
    out = tmp_path / "run"
    vqvae = VQVAE.from_pretrained(out / "vqvae")
    prior = CausalPrior.from_pretrained(out / "prior")
    assert vqvae.config.channels == (8, 16) and prior.codebook_size == 16
    assert {"psnr", "mse", "codes_used", "perplexity", "nll_nats_per_code", "nll_bits_per_image"} <= set(metrics)
    assert metrics["codes_used"] <= 16 and 1 <= metrics["perplexity"] <= 16
    assert metrics["nll_bits_per_image"] == pytest.approx(metrics["nll_nats_per_code"] * 49 / 0.6931, rel=1e-3)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {line["stage"] for line in lines} == {"vqvae", "prior"}
    assert (out / "images" / "reconstructions_epoch003.png").is_file()
    assert (out / "images" / "samples_epoch002.png").is_file()
    assert json.loads((out / "metrics.json").read_text())["psnr"] == pytest.approx(metrics["psnr"])
    pipeline = VQVAEPipeline.from_pretrained(out / "pipeline")  # the trainer assembles the pipeline
    assert pipeline.metadata["metrics"]["psnr"] == pytest.approx(metrics["psnr"], abs=1e-4)
    assert (out / "pipeline" / "samples.png").is_file() and "psnr" in (out / "pipeline" / "README.md").read_text()
    # The prior records how often each class occurs, for sampling without labels.
    labels = load_split(TrainConfig(**settings(out)), "train").labels  # type: ignore[arg-type]
    counts = torch.bincount(labels, minlength=prior.num_classes).double()
    assert prior.num_classes == 10 and len(prior.config.class_frequencies) == 10
    assert torch.allclose(torch.tensor(prior.config.class_frequencies, dtype=torch.double), counts / counts.sum(),
                          atol=1e-6)


def test_training_lowers_the_reconstruction_error(train: Train, settings: Settings, tmp_path: Path) -> None:
    short = train(tmp_path / "a", stage="vqvae", vqvae_epochs=1)
    longer = train(tmp_path / "b", stage="vqvae", vqvae_epochs=6)
    assert longer["mse"] < short["mse"]


def test_resume_after_a_finished_stage_trains_only_the_prior(train: Train, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(out, stage="vqvae")
    before = read_safetensors(out / "vqvae" / "model.safetensors")
    metrics = train(out, stage="prior")
    after = read_safetensors(out / "vqvae" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert "nll_nats_per_code" in metrics


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return read_safetensors(folder / "model.safetensors")


def test_resume_from_a_mid_epoch_checkpoint_matches_an_uninterrupted_run(train: Train, settings: Settings,
                                                                          tmp_path: Path) -> None:
    train(tmp_path / "full")
    # Interrupt by asking for a stop (as SIGTERM does) at a step in the middle of stage 1's epoch 2.
    partial = Trainer(TrainConfig(**settings(tmp_path / "cut")))  # type: ignore[arg-type]
    original = partial._log_metrics

    def stop_midway(record: dict[str, object]) -> None:
        original(record)

    partial._log_metrics = stop_midway  # type: ignore[method-assign]
    steps = {"n": 0}
    real_checkpoint = partial._checkpoint

    def checkpoint_then_stop(*args: object, **kwargs: object) -> None:
        real_checkpoint(*args, **kwargs)  # type: ignore[arg-type]
        steps["n"] += 1
        if steps["n"] == 2:
            partial._stop.requested = True

    partial._checkpoint = checkpoint_then_stop  # type: ignore[method-assign]
    assert partial.fit() == {}
    assert not (tmp_path / "cut" / "prior").exists()
    train(tmp_path / "cut", resume=True)
    for stage in ("vqvae", "prior"):
        full, resumed = _weights(tmp_path / "full" / stage), _weights(tmp_path / "cut" / stage)
        assert full.keys() == resumed.keys()
        assert all(torch.equal(full[k], resumed[k]) for k in full), stage


def test_sigkill_mid_training_then_resume_gives_the_uninterrupted_weights(train: Train, settings: Settings,
                                                                           tmp_path: Path) -> None:
    settings = settings(tmp_path / "killed", checkpoint_every=2, vqvae_epochs=3)
    train(tmp_path / "full", checkpoint_every=2, vqvae_epochs=3)
    script = ("from discrete_latents.training import TrainConfig, Trainer\n"
              "import json, sys\nTrainer(TrainConfig(**json.loads(sys.argv[1]))).fit()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", script, json.dumps(settings)], env=env)
    checkpoints = tmp_path / "killed" / "checkpoints" / "vqvae"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(checkpoints.glob("step-*"))) < 2 and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # no chance to clean up, possibly in the middle of a save
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert CheckpointManager(checkpoints).latest() is not None
    resumed = dict(settings, resume=True)
    Trainer(TrainConfig(**resumed)).fit()  # type: ignore[arg-type]
    for stage in ("vqvae", "prior"):
        full, again = _weights(tmp_path / "full" / stage), _weights(tmp_path / "killed" / stage)
        assert all(torch.equal(full[k], again[k]) for k in full), stage
    logged = [(r["stage"], r["step"]) for r in map(json.loads, (tmp_path / "killed" / "metrics.jsonl").open())]
    assert len(logged) == len(set(logged))  # steps redone after the resume are logged once


def test_resume_refuses_changed_settings(train: Train, settings: Settings, tmp_path: Path) -> None:
    train(tmp_path / "run", stage="vqvae", vqvae_epochs=1)
    with pytest.raises(ConfigError, match="batch_size"):
        train(tmp_path / "run", stage="vqvae", vqvae_epochs=1, batch_size=8, resume=True)


def test_damaged_newest_checkpoint_is_skipped(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=3)
    for step in (1, 2):
        manager.save(step, {"model": {"w": torch.full((2,), float(step))}}, {"step": step})
    newest = tmp_path / "step-00000002" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:-1] + b"\x01")
    with pytest.warns(RuntimeWarning, match="damaged"):
        folder = manager.latest()
    assert folder is not None and folder.name == "step-00000001"
    assert (tmp_path / "step-00000002").exists()  # skipped, not deleted


def test_keep_last_prunes_only_older_complete_checkpoints(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in range(1, 5):
        manager.save(step, {"model": {"w": torch.zeros(1)}}, {"step": step})
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000003", "step-00000004"]
    assert (tmp_path / "latest").read_text() == "step-00000004"


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(1, {"model": {"w": torch.zeros(1)}}, {"step": 1})
    import discrete_latents.training.checkpoint as checkpoint

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_safetensors", disk_full)
    with pytest.raises(CheckpointSaveError, match="no space"):
        manager.save(2, {"model": {"w": torch.ones(1)}}, {"step": 2})
    assert manager.latest() == tmp_path / "step-00000001"
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_second_trainer_on_the_same_folder_is_refused(train: Train, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(f"{os.uname().nodename}:{os.getppid()}")  # a live process holds it: our parent
    with pytest.raises(CheckpointSaveError, match="in use"):
        train(out, stage="vqvae", vqvae_epochs=1)


def test_non_finite_losses_stop_training_naming_the_step(train: Train, settings: Settings, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.nn.functional as F

    import discrete_latents.training.loop as loop

    mse_loss = F.mse_loss
    monkeypatch.setattr(loop.F, "mse_loss", lambda *a, **k: mse_loss(*a, **k) * float("nan"))
    with pytest.raises(NonFiniteError, match="step"):
        train(tmp_path / "run", stage="vqvae", max_nonfinite_steps=3)
    assert not (tmp_path / "run" / "vqvae").exists()  # no NaN model saved


def test_restored_adam_moments_keep_a_channels_last_weight_layout() -> None:
    """Saved moments come back contiguous; fused Adam reads a weight and its moments as flat memory,
    so a channels-last weight must get channels-last moments or the update scrambles them."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 3).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(conv.parameters(), lr=0.1, fused=True)
    grads = [torch.randn_like(p) for p in conv.parameters()]

    def step() -> None:
        for p, g in zip(conv.parameters(), grads):
            p.grad = g.clone(memory_format=torch.preserve_format)
        optimizer.step()

    step()
    tensors, meta = optimizer_to_tensors(optimizer)
    saved = {name: t.clone(memory_format=torch.contiguous_format) for name, t in tensors.items()}  # as if read back
    start = [p.detach().clone() for p in conv.parameters()]
    step()
    uninterrupted = [p.detach().clone() for p in conv.parameters()]
    with torch.no_grad():
        for p, s in zip(conv.parameters(), start):
            p.copy_(s)
    optimizer_from_tensors(optimizer, saved, meta)
    assert optimizer.state[conv.weight]["exp_avg"].is_contiguous(memory_format=torch.channels_last)
    step()
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, conv.parameters()))


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    peak, total = 1e-3, 100
    rates = [learning_rate(s, total, peak, warmup=10, min_ratio=0.1) for s in range(total + 1)]
    assert rates[0] == pytest.approx(peak / 10) and rates[9] == pytest.approx(peak)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[-1] == pytest.approx(peak * 0.1)


def test_train_config_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="stage"):
        TrainConfig(stage="everything")
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="did you mean 'vqvae_epochs'"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "vqvae_epoch": 3})


DDP_SCRIPT = """
import gc, json, os, sys
import torch
from discrete_latents._safetensors import write_safetensors
from discrete_latents.training import TrainConfig, Trainer
from discrete_latents.training.data import load_split
from discrete_latents.training.process import training_process
settings = json.loads(sys.argv[1])
trainer = Trainer(TrainConfig(**settings))
os.makedirs(settings["out_dir"], exist_ok=True)
with training_process(trainer.out, trainer.device, 1, trainer._stop):  # joins the gloo group torchrun describes
    torch.manual_seed(0)
    images = load_split(trainer.config, "train")
    model = trainer.train_vqvae(images, images)
    write_safetensors(os.path.join(settings["out_dir"], f"rank{os.environ['RANK']}.safetensors"), model.state_dict())
    del model
"""


def test_two_gloo_processes_keep_identical_models(settings: Settings, tmp_path: Path, two_gloo_ranks: Callable) -> None:
    """torchrun-style launch on CPU: gradients and quantizer statistics stay in sync across ranks."""
    first, second = two_gloo_ranks(DDP_SCRIPT, settings(tmp_path / "ddp", stage="vqvae", vqvae_epochs=2))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert "quantizer.cluster_size" in first and float(first["quantizer.restarts"]) >= 0
