"""The MNIST pipeline shipped in the package: present, loading, sampling as release 0.1.0 did, and good.

The pinned hashes are of codes drawn by release 0.1.0 (commit 9fb4514) with the same seeds: the
refactored save/load path and sampler must give the very same samples.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from discrete_latents import VQVAEPipeline, available_pretrained, pretrained_path
from discrete_latents.datasets import load_mnist
from discrete_latents.training import evaluate_prior, evaluate_vqvae

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
RELEASE_1 = {  # sha256 of the (10, 7, 7) int64 codes, first 16 hex digits
    "labels": "00198df9ced54a5d",
    "no labels": "12d669a62039b511",
    "guided": "805706720610352e",
}


@pytest.fixture(scope="module")
def pipe() -> VQVAEPipeline:
    assert "mnist" in available_pretrained(), "the bundled MNIST pipeline is missing from the package"
    return VQVAEPipeline.from_pretrained(pretrained_path("mnist"))


def digest(codes: torch.Tensor) -> str:
    return hashlib.sha256(codes.numpy().tobytes()).hexdigest()[:16]


@pytest.mark.parametrize(("case", "kwargs"), [("labels", {"labels": torch.arange(10)}), ("no labels", {}),
                                              ("guided", {"labels": torch.arange(10), "guidance_scale": 2.0})])
def test_samples_are_those_of_release_one(pipe: VQVAEPipeline, case: str, kwargs: dict[str, object]) -> None:
    codes = pipe.prior.sample(10, generator=torch.Generator().manual_seed(0), **kwargs)  # type: ignore[arg-type]
    assert codes.shape == (10, 7, 7) and digest(codes) == RELEASE_1[case]


def test_the_card_and_the_files_it_shows_are_there(pipe: VQVAEPipeline) -> None:
    folder = pretrained_path("mnist")
    assert (folder / "samples.png").is_file() and "![Samples](samples.png)" in (folder / "README.md").read_text()
    assert pipe.metadata["metrics"]["psnr"] > 28  # what the card claims (28.15 dB on the test set)


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"the real MNIST files are not in {MNIST_DIR}")
def test_quality_on_real_test_digits(pipe: VQVAEPipeline) -> None:
    images, labels = load_mnist(MNIST_DIR, "test")
    images, labels = images[:1000], labels[:1000]
    metrics = evaluate_vqvae(pipe.vqvae, images)
    metrics |= evaluate_prior(pipe.prior, pipe.encode(images, batch_size=500), labels)
    assert metrics["psnr"] > 27.5 and metrics["codes_used"] >= 95
    assert metrics["nll_bits_per_image"] < 195
