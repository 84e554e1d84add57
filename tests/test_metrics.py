"""Metric definitions: PSNR on [0, 1] images, code-histogram perplexity, NLL units."""

from __future__ import annotations

import math

import pytest
import torch

from discrete_latents import VQVAE, CausalPrior, CausalPriorConfig, VQVAEConfig
from discrete_latents._metrics import bits_per_image, codes_used, perplexity, psnr
from discrete_latents.training import evaluate_prior, evaluate_vqvae


def test_psnr_of_known_errors() -> None:
    assert psnr(0.01) == pytest.approx(20.0)
    assert psnr(1e-3) == pytest.approx(30.0)
    assert psnr(0.0) == math.inf


def test_perplexity_and_codes_used_of_histograms() -> None:
    assert perplexity(torch.full((100,), 7)) == pytest.approx(100.0)
    assert perplexity(torch.tensor([5, 0, 0, 0])) == pytest.approx(1.0)
    assert perplexity(torch.tensor([1, 1, 0, 0])) == pytest.approx(2.0)
    # p = (1/2, 1/4, 1/4): H = 1.5 ln 2 nats, so exp(H) = 2 ** 1.5 = 2.8284271
    assert float(perplexity(torch.tensor([2, 1, 1]))) == pytest.approx(2.8284271, abs=1e-6)
    # p = (3/4, 1/4): H = -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.5623351 nats, exp(H) = 1.7547654
    assert float(perplexity(torch.tensor([3.0, 1.0]))) == pytest.approx(1.7547654, abs=1e-6)
    # counts in the millions lose nothing to float32 rounding: p = (0.9, 0.1) exactly
    assert float(perplexity(torch.tensor([9_000_000, 1_000_000]))) == pytest.approx(
        1.3841455, abs=1e-6)  # exp(-(0.9 ln 0.9 + 0.1 ln 0.1)) = exp(0.3250830)
    assert codes_used(torch.tensor([3, 0, 1, 0])) == 2


def test_bits_per_image_converts_nats_per_code() -> None:
    assert bits_per_image(math.log(2), 49) == pytest.approx(49.0)


def test_evaluate_vqvae_measures_the_clamped_reconstruction(monkeypatch: pytest.MonkeyPatch) -> None:
    model = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16}))
    images = torch.zeros(6, 1, 28, 28, dtype=torch.uint8)
    images[:3] = 255  # three white and three black images
    with torch.no_grad():  # decoder outputs constant grey (0.5) everywhere
        for p in model.decoder.parameters():
            p.zero_()
    metrics = evaluate_vqvae(model, images, batch_size=4)
    assert metrics["mse"] == pytest.approx(0.25)
    assert metrics["psnr"] == pytest.approx(10 * math.log10(4))
    assert metrics["psnr_mean_per_image"] == pytest.approx(10 * math.log10(4))
    used = model.eval().encode(images.float() / 255).unique().numel()
    assert metrics["codes_used"] == used and metrics["codebook_size"] == 16


def test_evaluate_prior_reports_the_mean_nll_in_both_units() -> None:
    prior = CausalPrior(CausalPriorConfig(codebook_size=16, n_layer=1, n_head=2, n_embd=16))
    with torch.no_grad():  # a uniform prior: every code costs ln 16 nats
        prior.wte.weight.zero_()
    codes = torch.randint(0, 16, (5, 7, 7))
    metrics = evaluate_prior(prior, codes, batch_size=2)
    assert metrics["nll_nats_per_code"] == pytest.approx(math.log(16), rel=1e-5)
    assert metrics["nll_bits_per_image"] == pytest.approx(49 * 4, rel=1e-5)
