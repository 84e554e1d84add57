"""The ``discrete-latents`` command: train, sample, reconstruct, evaluate, push, compress, decompress.

A thin layer over the Python API: every subcommand is a few calls to functions documented in
the API reference.

Example:
    discrete-latents sample --num-samples 64 --labels 7 --out sevens.png
    discrete-latents train --vqvae_epochs=2 --prior_epochs=2 --data_dir=../shared/data/mnist
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import DiscreteLatentsError
from . import codec_commands

COMMANDS = ("train", "sample", "reconstruct", "evaluate", "push", "compress", "decompress")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="discrete-latents", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a VQ-VAE and/or its prior",
                           description="Train with TrainConfig settings: --key=value flags (see docs/configuration.md)"
                                       " after an optional --config FILE (JSON or TOML).")
    train.add_argument("--config", help="JSON or TOML file of TrainConfig settings")

    def add_pipeline(p: argparse.ArgumentParser) -> None:
        p.add_argument("--pipeline", default="mnist",
                       help="a pipeline folder, a Hub repo id, or the name of a bundled one (default: mnist)")
        p.add_argument("--revision", default=None, help="Hub branch, tag or commit")
        p.add_argument("--device", default="cpu")

    sample = sub.add_parser("sample", help="generate images into a PNG grid")
    add_pipeline(sample)
    sample.add_argument("--num-samples", type=int, default=64)
    sample.add_argument("--labels", type=int, nargs="*", default=None,
                        help="class ids, repeated to fill the grid (a conditional prior)")
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--top-k", type=int, default=None)
    sample.add_argument("--top-p", type=float, default=None)
    sample.add_argument("--guidance-scale", type=float, default=1.0)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--nrow", type=int, default=8)
    sample.add_argument("--out", default="samples.png")

    for name, text in (("reconstruct", "encode and decode test images into a PNG grid"),
                       ("evaluate", "test-set metrics: PSNR, code usage, perplexity, prior NLL")):
        p = sub.add_parser(name, help=text)
        add_pipeline(p)
        p.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10"))
        p.add_argument("--data-dir", default="", help="folder with the dataset files")
        p.add_argument("--download", action="store_true")
        p.add_argument("--limit", type=int, default=0, help="use only the first N test images")
        if name == "reconstruct":
            p.add_argument("--num", type=int, default=32)
            p.add_argument("--out", default="reconstructions.png")

    push = sub.add_parser("push", help="upload a saved pipeline folder to the Hugging Face Hub in one commit")
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    push.add_argument("--token", default=None)
    push.add_argument("--commit-message", default="Upload discrete_latents pipeline")
    codec_commands.add_parsers(sub, add_pipeline)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``discrete-latents`` console script; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from . import commands

    try:
        module = codec_commands if args.command in codec_commands.COMMANDS else commands
        getattr(module, args.command)(args, extra)
    except (DiscreteLatentsError, FileNotFoundError, ValueError, TypeError, ImportError) as err:
        print(f"discrete-latents {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
