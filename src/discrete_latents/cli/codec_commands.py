"""``discrete-latents compress`` / ``decompress``: images to one codec file and back, over the Python API.

Examples:
    discrete-latents compress digits/ --out digits.dlc
    discrete-latents compress --dataset mnist --split test --data-dir ../shared/data/mnist --labels --out test.dlc
    discrete-latents decompress test.dlc --out-dir restored/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .. import codec
from .._files import atomic_write_bytes
from .._pipeline import VQVAEPipeline
from ..datasets import load_cifar10, load_mnist
from ..errors import DatasetFormatError
from ..images import to_pil_images

COMMANDS = ("compress", "decompress")
BATCH = 500  # images through the VQ-VAE at a time (memory), independent of the coder's chunks
_MODES = {1: "L", 3: "RGB"}


def add_parsers(sub: Any, add_pipeline: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register both subcommands on the ``discrete-latents`` parser."""
    compress = sub.add_parser("compress", help="compress PNG files, a folder or a dataset split into one file",
                              description="Encode images with the VQ-VAE and entropy-code the codes with the prior"
                                          " (docs/codec.md). Lossy: decompress gives the VQ-VAE's reconstructions.")
    add_pipeline(compress)
    compress.add_argument("inputs", nargs="*", help="PNG files and/or folders of PNG files (searched recursively)")
    compress.add_argument("--dataset", choices=("mnist", "cifar10"), help="compress a dataset split instead")
    compress.add_argument("--split", default="test", choices=("train", "test"))
    compress.add_argument("--data-dir", default="", help="folder with the dataset files")
    compress.add_argument("--limit", type=int, default=0, help="only the first N images of the split")
    compress.add_argument("--labels", action="store_true", help="store the dataset's labels (dataset inputs only)")
    compress.add_argument("--no-label-search", action="store_true",
                          help="without --labels, code every image in the prior's 'no label' mode instead of"
                               " trying every class for the cheapest (several times faster, a few bits more each)")
    compress.add_argument("--out", required=True, help="the file to write")
    decompress = sub.add_parser("decompress", help="decompress a file written by compress into PNG files")
    add_pipeline(decompress)
    decompress.add_argument("file")
    decompress.add_argument("--out-dir", required=True, help="folder for 000000.png, 000001.png, ... (and labels.txt"
                                                             " when the file stores labels)")


def _load(args: argparse.Namespace) -> VQVAEPipeline:
    from .commands import _load as load_pipeline

    return load_pipeline(args)


def _png_files(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".png" and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise DatasetFormatError(f"{path}: no PNG files found (searched recursively)")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def _read_png(path: Path, channels: int, size: int) -> torch.Tensor:
    """One image as (C, H, W) floats in [0, 1]; never resized, since a codec keeps the size."""
    try:
        with Image.open(path) as opened:
            image = opened.convert(_MODES[channels])
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetFormatError(f"{path}: cannot decode image ({err})") from None
    if image.size != (size, size):
        raise DatasetFormatError(f"{path}: {image.size[0]}x{image.size[1]} pixels; this pipeline codes {size}x{size}"
                                 " images (resize or crop them first)")
    pixels = np.array(image, dtype=np.uint8)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255.0)


def _inputs(args: argparse.Namespace, pipe: VQVAEPipeline) -> tuple[list[torch.Tensor] | torch.Tensor, Any]:
    """(images as a uint8 tensor or a list of float tensors, labels or None)."""
    if args.dataset:
        if args.inputs:
            raise ValueError("inputs: give PNG files/folders or --dataset, not both")
        loader = load_mnist if args.dataset == "mnist" else load_cifar10
        images, labels = loader(args.data_dir or None, args.split)
        if args.limit:
            images, labels = images[: args.limit], labels[: args.limit]
        return images, labels if args.labels else None
    if args.labels:
        raise ValueError("--labels: only a dataset split has labels to store")
    if not args.inputs:
        raise ValueError("inputs: give PNG files, folders of PNG files, or --dataset")
    config = pipe.vqvae.config
    return [_read_png(p, config.in_channels, config.image_size) for p in _png_files(args.inputs)], None


def compress(args: argparse.Namespace, extra: list[str]) -> None:
    pipe = _load(args)
    images, labels = _inputs(args, pipe)
    count = len(images)
    quiet = True if count <= codec.CHUNK_SIZE else None  # None: a bar on a terminal only
    codes = []
    for start in tqdm(range(0, count, BATCH), desc="encode", unit="batch", disable=quiet):
        batch = images[start: start + BATCH]
        batch = torch.stack(batch) if isinstance(batch, list) else batch.float().div(255)
        codes.append(pipe.encode(batch.to(pipe.device)))
    with tqdm(total=count, desc="entropy-code", unit="img", disable=quiet) as bar:
        data = codec.compress_codes(pipe.prior, torch.cat(codes), labels, progress=bar.update,
                                    choose_labels=not args.no_label_search,
                                    fingerprint=codec.fingerprint_of(pipe.vqvae, pipe.prior))
    atomic_write_bytes(Path(args.out), data)
    print(f"wrote {count} images to {args.out}: {len(data)} bytes, {len(data) / count:.2f} per image",
          file=sys.stderr)


def decompress(args: argparse.Namespace, extra: list[str]) -> None:
    pipe = _load(args)
    data = Path(args.file).read_bytes()
    count = codec.read_header(data).num_images
    quiet = True if count <= codec.CHUNK_SIZE else None
    with tqdm(total=count, desc="entropy-decode", unit="img", disable=quiet) as bar:
        decoded = codec.decompress_codes(pipe.prior, data, progress=bar.update,
                                         fingerprint=codec.fingerprint_of(pipe.vqvae, pipe.prior))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for start in tqdm(range(0, count, BATCH), desc="decode", unit="batch", disable=quiet):
        for i, image in enumerate(to_pil_images(pipe.decode(decoded.codes[start: start + BATCH])), start):
            image.save(out / f"{i:06d}.png")
    if decoded.labels is not None:
        atomic_write_bytes(out / "labels.txt", "".join(f"{y}\n" for y in decoded.labels.tolist()).encode())
    print(f"wrote {count} images to {out}", file=sys.stderr)
