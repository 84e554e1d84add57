"""The ``discrete-latents`` command: train, sample, inpaint, reconstruct, evaluate, push, compress, decompress.

A thin layer over the Python API: every subcommand is a few calls to functions documented in
the API reference.

Examples:
    discrete-latents sample --num-samples 64 --labels 7 --out sevens.png
    discrete-latents inpaint --pipeline mnist_masked --index 0 1 2 --rect 16 0 12 28 --out inpaint.png
    discrete-latents train --vqvae_epochs=2 --prior_epochs=2 --data_dir=../shared/data/mnist

Every failure ends the command with one line, ``discrete-latents CMD: error: ...``, and a
non-zero exit status (see `discrete_latents.cli._errors`); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import gc
import sys
import traceback
from collections.abc import Sequence

from .._hub import COMMIT_MESSAGE
from . import codec_commands, inpaint_command
from ._args import non_negative_int, positive_int, seed
from ._errors import INTERRUPTED, describe, exit_status

COMMANDS = ("train", "sample", "inpaint", "reconstruct", "evaluate", "push", "compress", "decompress")


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted before and after the command; SUPPRESS keeps one place from resetting the other.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    parser = argparse.ArgumentParser(prog="discrete-latents", description=__doc__.split("\n\n")[0],
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", parents=[common], help="train a VQ-VAE and/or its prior",
                           description="Train with TrainConfig settings: --key=value flags (see docs/configuration.md)"
                                       " after an optional --config FILE (JSON or TOML).")
    train.add_argument("--config", help="JSON or TOML file of TrainConfig settings")

    def add_pipeline(p: argparse.ArgumentParser) -> None:
        p.add_argument("--pipeline", default="mnist",
                       help="a pipeline folder, a Hub repo id, or the name of a bundled one (default: mnist)")
        p.add_argument("--revision", default=None, help="Hub branch, tag or commit")
        p.add_argument("--device", default="cpu")

    sample = sub.add_parser("sample", parents=[common], help="generate images into a PNG grid")
    add_pipeline(sample)
    sample.add_argument("--num-samples", type=positive_int, default=64)
    sample.add_argument("--labels", type=int, nargs="*", default=None,
                        help="class ids, repeated to fill the grid (a conditional prior)")
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--top-k", type=positive_int, default=None)
    sample.add_argument("--top-p", type=float, default=None)
    sample.add_argument("--guidance-scale", type=float, default=1.0)
    sample.add_argument("--steps", type=positive_int, default=None, help="parallel steps of a masked prior (default 8)")
    sample.add_argument("--seed", type=seed, default=0)
    sample.add_argument("--nrow", type=positive_int, default=8)
    sample.add_argument("--out", default="samples.png")

    inpaint_command.add_arguments(sub.add_parser("inpaint", parents=[common], help="redraw a region of images into a"
                                                 " PNG grid", description=inpaint_command.__doc__.split("\n\n")[0]),
                                  add_pipeline)

    for name, text in (("reconstruct", "encode and decode test images into a PNG grid"),
                       ("evaluate", "test-set metrics: PSNR, code usage, perplexity, prior NLL")):
        p = sub.add_parser(name, parents=[common], help=text)
        add_pipeline(p)
        p.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10", "folder"),
                       help="'folder': your own PNG/JPEG images in --data-dir (its test/ sub-folder if present)")
        p.add_argument("--data-dir", default="", help="folder with the dataset files")
        p.add_argument("--download", action="store_true")
        p.add_argument("--limit", type=non_negative_int, default=0,
                       help="use only the first N test images (0 = all)")
        if name == "reconstruct":
            p.add_argument("--num", type=positive_int, default=32)
            p.add_argument("--out", default="reconstructions.png")

    push = sub.add_parser("push", parents=[common],
                          help="upload a saved pipeline folder to the Hugging Face Hub in one commit")
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    push.add_argument("--token", default=None)
    push.add_argument("--commit-message", default=COMMIT_MESSAGE)
    codec_commands.add_parsers(sub, add_pipeline)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``discrete-latents`` console script; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    prefix = f"discrete-latents {args.command}"
    try:
        from . import commands

        module = codec_commands if args.command in codec_commands.COMMANDS else commands
        getattr(module, args.command)(args, extra)
    except KeyboardInterrupt:
        pass  # handled below, once the interrupted frames (and any data-loader workers) are released
    except Exception as err:  # every failure is a message; the traceback is for --debug
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"{prefix}: error: {describe(err)}", file=sys.stderr)
        return exit_status(err)
    else:
        return 0
    gc.collect()  # shut down worker processes now, not while the interpreter exits (noisy tracebacks)
    hint = "; continue the run with --resume" if args.command == "train" else ""
    print(f"{prefix}: interrupted{hint}", file=sys.stderr)
    return INTERRUPTED
