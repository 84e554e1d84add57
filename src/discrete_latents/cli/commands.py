"""What each subcommand does, in terms of the Python API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..datasets import load_cifar10, load_mnist
from ..images import save_grid
from ..pipeline import VQVAEPipeline
from ..pretrained import available_pretrained, pretrained_path
from ..training import TrainConfig, Trainer, evaluate_prior, evaluate_vqvae
from ..training.loop import format_metrics
from . import inpaint_command
from ._args import build_config


def _load(args: argparse.Namespace) -> VQVAEPipeline:
    source = args.pipeline
    if not Path(source).exists() and source in available_pretrained():
        source = pretrained_path(source)  # a bundled pipeline, no network needed
    return VQVAEPipeline.from_pretrained(source, revision=args.revision).to(args.device)


def _test_images(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    loader = load_mnist if args.dataset == "mnist" else load_cifar10
    images, labels = loader(args.data_dir or None, "test", download=args.download)
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    return images, labels


def train(args: argparse.Namespace, extra: list[str]) -> None:
    config = build_config(TrainConfig, extra, args.config)
    Trainer(config).fit()


def sample(args: argparse.Namespace, extra: list[str]) -> None:
    pipe = _load(args)
    labels = None
    if args.labels:
        labels = torch.tensor(args.labels).repeat(args.num_samples // len(args.labels) + 1)[: args.num_samples]
    generator = torch.Generator(args.device).manual_seed(args.seed)
    images = pipe.generate(args.num_samples, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           labels=labels, guidance_scale=args.guidance_scale, generator=generator, steps=args.steps)
    save_grid(images, args.out, nrow=args.nrow)
    print(f"wrote {args.num_samples} samples to {args.out}", file=sys.stderr)


def reconstruct(args: argparse.Namespace, extra: list[str]) -> None:
    pipe = _load(args)
    images = _test_images(args)[0][: args.num].float().div(255).to(args.device)
    save_grid(torch.cat([images, pipe.reconstruct(images)]), args.out, nrow=8)
    print(f"wrote originals (top) and reconstructions (bottom) to {args.out}", file=sys.stderr)


def evaluate(args: argparse.Namespace, extra: list[str]) -> None:
    pipe = _load(args)
    images, labels = _test_images(args)
    images = images.to(args.device)
    metrics = evaluate_vqvae(pipe.vqvae, images)
    codes = torch.cat([pipe.encode(images[i:i + 1000].float() / 255) for i in range(0, len(images), 1000)])
    metrics.update(evaluate_prior(pipe.prior, codes, labels.to(args.device)))
    print(format_metrics(metrics))


def push(args: argparse.Namespace, extra: list[str]) -> None:
    pipe = VQVAEPipeline.from_pretrained(args.folder)
    url = pipe.push_to_hub(args.repo_id, private=args.private, token=args.token, commit_message=args.commit_message)
    print(f"pushed {args.folder} to {url}", file=sys.stderr)


def inpaint(args: argparse.Namespace, extra: list[str]) -> None:
    inpaint_command.inpaint(args, _load(args))
