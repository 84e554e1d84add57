# /// script
# requires-python = ">=3.10"
# dependencies = ["discrete_latents"]
# ///
"""Train the ``cifar10`` presets: a VQ-VAE on 3x32x32 images (stage 1) and a class-conditional
transformer prior over its 8x8 code grids (stage 2), then save the two as one pipeline.

    python examples/cifar10_train.py --data-dir data/cifar10 --download   # the full run
    python examples/cifar10_train.py --data-dir data/cifar10 --quick      # about a minute

The data is the binary version of CIFAR-10 (``cifar-10-binary.tar.gz``, checked by SHA-256 and
extracted safely; the pickled python version is never read). The settings are the ``cifar10``
presets (see discrete_latents._presets): widths (128, 256), two residual blocks, 512 EMA codes of
64 dimensions on an 8x8 grid with k-means initialisation and dead-code restarts; a 6-block,
256-wide, 8-head prior with label dropout for classifier-free guidance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from discrete_latents.datasets import CIFAR10_CLASSES
from discrete_latents.training import TrainConfig, Trainer


def main(out_dir: str = "runs/cifar10", data_dir: str = "", quick: bool = False, epochs: int = 20,
         download: bool = False, resume: bool = False, num_threads: int = 0, device: str = "auto") -> dict[str, float]:
    """Train both stages and write ``<out_dir>/pipeline``; return the test-set metrics.

    Args:
        out_dir: where checkpoints, logs, image grids and the pipeline go.
        data_dir: folder holding ``cifar-10-batches-bin/`` or ``cifar-10-binary.tar.gz``
            ("" = $DISCRETE_LATENTS_DATA_DIR/cifar10 or the cache).
        quick: 1,000 training and 200 test images, 1 epoch per stage: checks the whole path in
            about a minute on a CPU.
        epochs: epochs per stage.
        download: fetch the binary archive from the authors' site if it is missing.
        resume: continue from the newest checkpoint in ``out_dir``.
        num_threads: CPU threads (0 = torch's default).
        device: "auto", "cpu", "cuda", ...

    Returns:
        The test-set metrics of both stages (PSNR, code usage, perplexity, prior NLL).

    Example:
        >>> metrics = main(out_dir="runs/cifar10-quick", data_dir="data/cifar10", quick=True)  # doctest: +SKIP
    """
    config = TrainConfig(
        out_dir=out_dir, data_dir=data_dir, download=download, resume=resume, num_threads=num_threads,
        device=device, dataset="cifar10", preset="cifar10", prior_preset="cifar10",
        vqvae_epochs=1 if quick else epochs, prior_epochs=1 if quick else epochs,
        limit_train=1000 if quick else 0, limit_test=200 if quick else 0,
        # As in mnist_train.py: bf16 autocast for both stages (the quantizer's distances and, on
        # CPU, the prior's attention stay in float32).
        amp="bf16", prior_amp="bf16",
    )
    metrics = Trainer(config).fit()  # also writes <out_dir>/pipeline with its model card
    print(f"pipeline saved to {Path(out_dir) / 'pipeline'}; class ids: "
          + ", ".join(f"{i} {name}" for i, name in enumerate(CIFAR10_CLASSES)))
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default="runs/cifar10")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--num-threads", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    main(args.out_dir, args.data_dir, args.quick, args.epochs, args.download, args.resume, args.num_threads,
         args.device)
