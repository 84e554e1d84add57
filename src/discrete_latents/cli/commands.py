"""What each subcommand does, in terms of the Python API."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch import Tensor

from .._checks import check_device
from .._hub import upload_folder
from .._pipeline import VQVAEPipeline
from .._pretrained import available_pretrained, pretrained_path
from ..datasets import ImageFolderDataset, load_cifar10, load_mnist
from ..images import save_grid
from ..training import TrainConfig, Trainer, evaluate_prior, evaluate_vqvae
from ..training.loop import format_metrics
from . import inpaint_command
from ._args import build_config
from ._errors import USAGE, CommandError, describe, reason


def _load(args: argparse.Namespace) -> VQVAEPipeline:
    device = check_device(args.device, "--device")  # before the download or the load
    source = args.pipeline
    if not Path(source).exists() and source in available_pretrained():
        source = pretrained_path(source)  # a bundled pipeline, no network needed
    return VQVAEPipeline.from_pretrained(source, revision=args.revision).to(device)


def _check_out(out: str) -> None:
    """Refuse an --out that cannot be written before any work is done: a folder, or a missing or read-only parent."""
    path = Path(out)
    if path.is_dir():
        raise CommandError(f"--out {out} is a folder; give a file name such as {path / 'out.png'}", USAGE)
    folder = path.parent
    if not folder.is_dir():
        raise CommandError(f"--out {out}: the folder {folder} does not exist", USAGE)
    if not os.access(folder, os.W_OK):  # also false on a read-only file system
        raise CommandError(f"--out {out}: cannot write into {folder} (no permission, or a read-only file system)")


def _write_grid(images: Tensor, out: str, nrow: int) -> None:
    try:
        save_grid(images, out, nrow=nrow)
    except OSError as err:  # the disk filled, say; save_grid leaves no partial file
        raise CommandError(f"could not write {out}: {reason(err)}") from err


def _test_images(args: argparse.Namespace, pipe: VQVAEPipeline) -> tuple[torch.Tensor, torch.Tensor]:
    if args.dataset == "folder":
        root = Path(args.data_dir or ".")
        config = pipe.vqvae.config
        dataset = ImageFolderDataset(root / "test" if (root / "test").is_dir() else root, config.image_size,
                                     channels=config.in_channels)
        images, labels = dataset.as_tensors()
    else:
        loader = load_mnist if args.dataset == "mnist" else load_cifar10
        images, labels = loader(args.data_dir or None, "test", download=args.download)
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    return images, labels


def train(args: argparse.Namespace, extra: list[str]) -> None:
    config = build_config(TrainConfig, extra, args.config)
    Trainer(config).fit()


def sample(args: argparse.Namespace, extra: list[str]) -> None:
    _check_out(args.out)
    pipe = _load(args)
    labels = None
    if args.labels:
        labels = torch.tensor(args.labels).repeat(args.num_samples // len(args.labels) + 1)[: args.num_samples]
    generator = torch.Generator(pipe.device).manual_seed(args.seed)
    images = pipe.generate(args.num_samples, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           labels=labels, guidance_scale=args.guidance_scale, generator=generator, steps=args.steps)
    _write_grid(images, args.out, args.nrow)
    print(f"wrote {args.num_samples} samples to {args.out}", file=sys.stderr)


def reconstruct(args: argparse.Namespace, extra: list[str]) -> None:
    _check_out(args.out)
    pipe = _load(args)
    images = _test_images(args, pipe)[0][: args.num].float().div(255).to(pipe.device)
    _write_grid(torch.cat([images, pipe.reconstruct(images)]), args.out, 8)
    print(f"wrote originals (top) and reconstructions (bottom) to {args.out}", file=sys.stderr)


def evaluate(args: argparse.Namespace, extra: list[str]) -> None:
    pipe = _load(args)
    images, labels = _test_images(args, pipe)
    images = images.to(pipe.device)
    metrics = evaluate_vqvae(pipe.vqvae, images)
    codes = pipe.encode(images, batch_size=1000)
    metrics.update(evaluate_prior(pipe.prior, codes, labels.to(pipe.device)))
    print(format_metrics(metrics))


def push(args: argparse.Namespace, extra: list[str]) -> None:
    folder = Path(args.folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder; pass a folder written by save_pretrained")
    VQVAEPipeline.from_pretrained(folder)  # validate before anything goes up: it must load as saved
    try:
        commit = upload_folder(folder, args.repo_id, private=args.private, token=args.token,
                               commit_message=args.commit_message)
    except Exception as err:  # offline, no network, no token, refused by the Hub: say which, in one line
        if isinstance(err, ValueError):
            raise  # a bad repo id: the command needs fixing
        raise CommandError(f"could not push {folder} to {args.repo_id}: {describe(err)}") from err
    print(f"pushed {folder} to {getattr(commit, 'commit_url', args.repo_id)}", file=sys.stderr)


def inpaint(args: argparse.Namespace, extra: list[str]) -> None:
    inpaint_command.inpaint(args, _load(args))
