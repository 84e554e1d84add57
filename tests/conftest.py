"""Shared fixtures: tiny configs that keep the suite fast, and registry isolation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from discrete_latents import DECODERS, ENCODERS, PRIORS, QUANTIZERS, CausalPriorConfig, VQVAEConfig

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"  # the real files, where this checkout has them


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def restore_registries():
    """Snapshot every registry and restore it afterwards, so a test may register freely."""
    registries = (ENCODERS, DECODERS, QUANTIZERS, PRIORS)
    saved = [r._snapshot() for r in registries]
    yield
    for registry, state in zip(registries, saved):
        registry._restore(state)


@pytest.fixture
def tiny_vqvae_config() -> VQVAEConfig:
    return VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer="vq", quantizer_kwargs={"codebook_size": 16})


@pytest.fixture
def tiny_prior_config() -> CausalPriorConfig:
    return CausalPriorConfig(codebook_size=16, grid_size=(7, 7), n_layer=2, n_head=2, n_embd=16)
