"""Gradient accumulation and the weight EMA: what they compute, what is saved, and exact resumes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from discrete_latents._safetensors import read_safetensors
from discrete_latents.training import CheckpointManager, TrainConfig, Trainer
from discrete_latents.training.ema import WeightEMA

Settings = Callable[..., dict[str, object]]


@pytest.fixture
def settings(tiny_train_settings: Settings, digit_folder: Path) -> Settings:
    """A tiny two-stage run, streamed by two workers, with random crops, flips, accumulation and EMA."""
    return lambda out, **extra: tiny_train_settings(
        digit_folder, out, **{"grad_accum_steps": 2, "ema_decay": 0.9, "num_workers": 2, "crop": "random",
                              "hflip": True, "batch_size": 8, "prior_batch_size": 8, **extra})


def test_ema_follows_the_weights_with_a_warm_up_by_hand() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = WeightEMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay_0 = min(0.5, 1 / 10) = 0.1: 0.1 * 0 + 0.9 * 1
    assert float(ema.shadow["weight"]) == pytest.approx(0.9)
    ema.update(model)  # decay_1 = min(0.5, 2 / 11): 2/11 * 0.9 + 9/11 * 1
    assert float(ema.shadow["weight"]) == pytest.approx(2 / 11 * 0.9 + 9 / 11)
    for _ in range(20):
        ema.update(model)
    assert ema.updates == 22
    with ema.applied(model):
        assert float(model.weight.detach()) == float(ema.shadow["weight"])
    assert float(model.weight.detach()) == 1.0  # the live weights come back


def test_accumulated_micro_batches_give_the_gradient_of_one_large_batch() -> None:
    torch.manual_seed(0)
    model, x, y = nn.Linear(3, 1), torch.randn(16, 3), torch.randn(16, 1)

    def step(module: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return nn.functional.mse_loss(module(batch[0]), batch[1]), {}

    loss, _, finite = Trainer._accumulate(model, step, [(x[:8], y[:8]), (x[8:], y[8:])])
    accumulated = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    whole = nn.functional.mse_loss(model(x), y)
    whole.backward()
    assert finite and float(loss) == pytest.approx(float(whole))
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(accumulated, model.parameters()))
    nan = (torch.full((8, 3), float("nan")), y[:8])
    assert Trainer._accumulate(model, step, [(x[:8], y[:8]), nan])[2] is False


def test_steps_count_optimizer_steps_and_the_saved_model_is_the_average(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(TrainConfig(**settings(out, stage="vqvae", checkpoint_every=100))).fit()  # type: ignore[arg-type]
    # 96 images, 8 per batch, 2 batches per step: 6 optimizer steps per epoch, 12 in two epochs.
    steps = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").open()) if r.get("stage") == "vqvae"]
    assert steps == [2, 4, 6, 8, 10, 12]
    last = CheckpointManager(out / "checkpoints" / "vqvae").latest()
    assert last is not None and last.name == "step-00000012"
    live, ema = read_safetensors(last / "model.safetensors"), read_safetensors(last / "ema.safetensors")
    saved = read_safetensors(out / "vqvae" / "model.safetensors")
    weight = "encoder.proj.weight"
    assert torch.equal(saved[weight], ema[f"shadow.{weight}"]) and not torch.equal(saved[weight], live[weight])
    assert int(ema["updates"]) == 12


def test_resume_with_accumulation_ema_and_streamed_augmented_data_is_exact(settings: Settings,
                                                                           tmp_path: Path) -> None:
    Trainer(TrainConfig(**settings(tmp_path / "full"))).fit()  # type: ignore[arg-type]
    partial = Trainer(TrainConfig(**settings(tmp_path / "cut")))  # type: ignore[arg-type]
    real_checkpoint, calls = partial._checkpoint, {"n": 0}

    def checkpoint_then_stop(*args: object, **kwargs: object) -> None:
        real_checkpoint(*args, **kwargs)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == 3:  # step 7: the middle of stage 1's second epoch
            partial._stop.requested = True

    partial._checkpoint = checkpoint_then_stop  # type: ignore[method-assign]
    assert partial.fit() == {}
    Trainer(TrainConfig(**settings(tmp_path / "cut", resume=True))).fit()  # type: ignore[arg-type]
    for stage in ("vqvae", "prior"):
        full = read_safetensors(tmp_path / "full" / stage / "model.safetensors")
        resumed = read_safetensors(tmp_path / "cut" / stage / "model.safetensors")
        assert full.keys() == resumed.keys()
        assert all(torch.equal(full[k], resumed[k]) for k in full), stage
