"""``discrete-latents inpaint``: redraw a region of images with a pipeline's prior, into a PNG grid.

Examples:
    discrete-latents inpaint --pipeline mnist_masked --index 0 1 2 --rect 16 0 12 28 --out inpaint.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from .._pipeline import VQVAEPipeline
from ..datasets import load_cifar10, load_mnist
from ..images import save_grid

MASKED_GRAY = 0.5  # how the masked input shows the region to redraw


def add_arguments(parser: argparse.ArgumentParser, add_pipeline: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``inpaint`` flags: images, the region, sampling settings and the output file."""
    add_pipeline(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", nargs="+", default=None, help="PNG/JPEG file(s) of the pipeline's image size")
    source.add_argument("--index", type=int, nargs="+", default=None, help="test-set index(es)")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10"), help="the test set of --index")
    parser.add_argument("--data-dir", default="", help="folder with the dataset files")
    parser.add_argument("--download", action="store_true")
    region = parser.add_mutually_exclusive_group(required=True)
    region.add_argument("--rect", type=int, nargs=4, metavar=("TOP", "LEFT", "HEIGHT", "WIDTH"),
                        help="pixel rectangle to redraw, e.g. 16 0 12 28 for the bottom 12 rows of MNIST")
    region.add_argument("--mask", default=None, help="mask image of the same size; white (>= 128) = redraw")
    parser.add_argument("--num-completions", type=int, default=8, help="completions per image (one grid row each)")
    parser.add_argument("--label", type=int, default=None, help="class of every image (default: no label)")
    parser.add_argument("--guidance-scale", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="parallel steps of a masked prior")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="inpaint.png")


def _read_image(path: str, channels: int, size: int) -> torch.Tensor:
    """(C, H, W) floats in [0, 1] from an image file, in the pipeline's channels and size."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    if pixels.shape[:2] != (size, size):
        raise ValueError(f"{path}: expected a {size}x{size} image (the pipeline's size), got"
                         f" {pixels.shape[1]}x{pixels.shape[0]}")
    tensor = torch.from_numpy(pixels)
    return tensor[None] if channels == 1 else tensor.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)


def _mask(args: argparse.Namespace, size: int) -> torch.Tensor:
    """(1, 1, H, W) bool: the rectangle or the mask file, true = redraw."""
    if args.mask is not None:
        return _read_image(args.mask, 1, size)[None] >= 0.5
    top, left, height, width = args.rect
    if height < 1 or width < 1 or top < 0 or left < 0 or top + height > size or left + width > size:
        raise ValueError(f"--rect: expected TOP LEFT HEIGHT WIDTH of a non-empty rectangle inside the {size}x{size}"
                         f" image, got {args.rect}")
    mask = torch.zeros(1, 1, size, size, dtype=torch.bool)
    mask[..., top:top + height, left:left + width] = True
    return mask


def inpaint(args: argparse.Namespace, pipe: VQVAEPipeline) -> None:
    """Write rows of: the original, the masked input, then ``--num-completions`` completions."""
    channels, size = pipe.vqvae.config.in_channels, pipe.vqvae.config.image_size
    if args.num_completions < 1:
        raise ValueError(f"--num-completions: expected a positive integer, got {args.num_completions}")
    if args.image:
        images = torch.stack([_read_image(path, channels, size) for path in args.image])
    else:
        loader = load_mnist if args.dataset == "mnist" else load_cifar10
        test = loader(args.data_dir or None, "test", download=args.download)[0]
        bad = [i for i in args.index if not 0 <= i < len(test)]
        if bad:
            raise ValueError(f"--index: expected test-set indexes in [0, {len(test)}), got {bad}")
        images = test[args.index].float() / 255
    mask = _mask(args, size).expand(len(images), 1, size, size)
    # One batch: each image repeated once per completion, each row drawn with its own random numbers.
    repeat = args.num_completions
    labels = torch.full((len(images) * repeat,), args.label) if args.label is not None else None
    generator = torch.Generator(args.device).manual_seed(args.seed)
    completions = pipe.inpaint(images.repeat_interleave(repeat, 0), mask.repeat_interleave(repeat, 0),
                               labels=labels, guidance_scale=args.guidance_scale, generator=generator,
                               steps=args.steps, temperature=args.temperature, top_k=args.top_k).cpu()
    masked = images.masked_fill(mask, MASKED_GRAY)
    rows = [torch.cat([images[i:i + 1], masked[i:i + 1], completions[i * repeat:(i + 1) * repeat]])
            for i in range(len(images))]
    save_grid(torch.cat(rows), args.out, nrow=repeat + 2)
    print(f"wrote {len(images)} row(s) of original, masked input and {repeat} completions to {args.out}",
          file=sys.stderr)
