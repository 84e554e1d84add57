# /// script
# requires-python = ">=3.10"
# dependencies = ["discrete_latents"]
# ///
"""Draw images of one MNIST digit from the pipeline bundled with discrete_latents, as a PNG grid.

    python examples/sample_digit.py --digit 7                          # 64 sevens -> digit_7.png
    python examples/sample_digit.py --digit 3 --guidance-scale 3 --num-samples 16 --out threes.png
    python examples/sample_digit.py --digit 7 --pipeline runs/mnist/pipeline   # your own run

No network access: the bundled pipeline ships inside the package
(``discrete_latents.pretrained_path("mnist")``). Its prior is class-conditional and was trained
with label dropout, so classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598) can push
samples toward the chosen digit: ``guidance_scale=1`` is plain conditional sampling, larger
values follow the label more closely at some cost in variety.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import discrete_latents
from discrete_latents import VQVAEPipeline
from discrete_latents.images import save_grid


def main(digit: int = 7, num_samples: int = 64, guidance_scale: float = 2.0, temperature: float = 1.0,
         top_k: int | None = None, top_p: float | None = None, seed: int = 0, out: str = "",
         pipeline: str = "", nrow: int = 8, device: str = "cpu") -> torch.Tensor:
    """Generate ``num_samples`` images of ``digit`` and save them as one PNG grid.

    Args:
        digit: the class to draw, in [0, 10) for MNIST.
        num_samples: images to draw.
        guidance_scale: classifier-free guidance; 1 = plain conditional sampling.
        temperature: softmax temperature of the prior; 0 = greedy (the same image every time).
        top_k: keep only the k most likely codes at each step (None = all).
        top_p: nucleus sampling mass in (0, 1] (None = all).
        seed: seed of the draw; the same seed gives the same images.
        out: the PNG to write ("" = ``digit_<digit>.png``).
        pipeline: a saved pipeline folder or Hub repo id ("" = the bundled ``mnist`` pipeline).
        nrow: images per row of the grid.
        device: where to run, e.g. "cpu" or "cuda".

    Returns:
        The images, (num_samples, C, H, W) floats in [0, 1]: (num_samples, 1, 28, 28) for MNIST.

    Raises:
        ValueError: ``digit`` is not a class of the pipeline's prior, or the prior is unconditional.

    Example:
        >>> images = main(digit=7, num_samples=16, out="sevens.png")  # doctest: +SKIP
    """
    # 1. Load the pipeline: a VQ-VAE and a class-conditional prior over its 7x7 code grids.
    source = pipeline or discrete_latents.pretrained_path("mnist")
    pipe = VQVAEPipeline.from_pretrained(source).to(device)
    classes = pipe.prior.num_classes
    if classes == 0:
        raise ValueError(f"digit: the prior of {source} is unconditional (num_classes=0), so it cannot be asked"
                         " for one digit; use `discrete-latents sample` without --labels")
    if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit < classes:
        raise ValueError(f"digit: expected a class id in [0, {classes}) for this pipeline, got {digit!r}")
    # 2. Sample code grids with every label set to the digit, then decode them to images.
    labels = torch.full((num_samples,), digit, dtype=torch.long)
    generator = torch.Generator(device=device).manual_seed(seed)
    images = pipe.generate(num_samples, temperature=temperature, top_k=top_k, top_p=top_p, labels=labels,
                           guidance_scale=guidance_scale, generator=generator)
    # 3. Save the grid.
    path = Path(out or f"digit_{digit}.png")
    save_grid(images, path, nrow=nrow)
    print(f"wrote {num_samples} images of the digit {digit} to {path}")
    return images


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digit", type=int, default=7)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="")
    parser.add_argument("--pipeline", default="", help="a pipeline folder or Hub repo id (default: the bundled one)")
    parser.add_argument("--nrow", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    main(args.digit, args.num_samples, args.guidance_scale, args.temperature, args.top_k, args.top_p, args.seed,
         args.out, args.pipeline, args.nrow, args.device)
