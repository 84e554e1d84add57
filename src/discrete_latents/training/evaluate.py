"""Test-set evaluation of a VQ-VAE and of a prior over its codes."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import torch
from torch import Tensor

from .._metrics import bits_per_image, codes_used, perplexity, psnr
from .._vqvae import VQVAE
from ..priors import BasePrior


@torch.no_grad()
def evaluate_vqvae(model: VQVAE, images: Tensor | Iterable[Tensor], batch_size: int = 500) -> dict[str, float]:
    """Reconstruction MSE and PSNR over all ``images`` (uint8), codes used and their perplexity.

    ``images`` is one tensor (N, C, H, W), taken ``batch_size`` at a time, or any iterable of
    uint8 batches (a folder streamed from disk).

    ``psnr`` is 10 log10(1 / MSE) of the MSE over every pixel of the set, the headline figure;
    ``psnr_mean_per_image`` averages each image's PSNR (the image-compression convention; it is
    higher, since log is concave). The histogram, hence perplexity, covers the whole set.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    squared_error, pixels, image_psnr, count = 0.0, 0, 0.0, 0
    counts = torch.zeros(model.codebook_size, dtype=torch.long, device=device)
    batches = images.split(batch_size) if isinstance(images, Tensor) else images
    for batch in batches:
        x = batch.to(device).float() / 255
        count += len(x)
        out = model(x)
        errors = (out.reconstruction.clamp(0, 1) - x) ** 2
        squared_error += float(errors.sum())
        pixels += x.numel()
        image_psnr += float((-10 * errors.flatten(1).mean(1).clamp_min(1e-10).log10()).sum())
        counts += torch.bincount(out.indices.flatten(), minlength=model.codebook_size)
    model.train(was_training)
    mse = squared_error / pixels
    return {"mse": mse, "psnr": psnr(mse), "psnr_mean_per_image": image_psnr / count,
            "codes_used": codes_used(counts), "codebook_size": model.codebook_size,
            "perplexity": float(perplexity(counts))}


@torch.no_grad()
def evaluate_prior(prior: BasePrior, codes: Tensor, labels: Tensor | None = None,
                   batch_size: int = 1000) -> dict[str, float]:
    """Mean NLL over all code grids in nats per code and bits per image (with labels if conditional).

    A prior without an exact likelihood (a masked prior) reports its upper bound instead, under
    keys named ``nll_bound_...`` so it is never read as an exact NLL.
    """
    was_training = prior.training
    prior.eval()
    device = next(prior.parameters()).device
    generator = torch.Generator(device).manual_seed(0)  # the bound's random masks, reproducible
    name = "nll" if prior.exact_likelihood else "nll_bound"
    score = prior.nll if prior.exact_likelihood else partial(prior.nll_bound, generator=generator)
    total, count = 0.0, 0
    for start in range(0, len(codes), batch_size):
        batch = codes[start:start + batch_size].to(device)
        batch_labels = labels[start:start + batch_size].to(device) if labels is not None and prior.num_classes else None
        total += float(score(batch, batch_labels).sum())
        count += len(batch)
    prior.train(was_training)
    nats = total / count
    return {f"{name}_nats_per_code": nats, f"{name}_bits_per_image": bits_per_image(nats, prior.num_codes)}
