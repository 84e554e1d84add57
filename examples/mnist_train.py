# /// script
# requires-python = ">=3.10"
# dependencies = ["discrete_latents"]
# ///
"""Reproduce the seed's MNIST model: a VQ-VAE (stage 1) and a transformer prior over its codes
(stage 2), 20 epochs each, then save the two as one pipeline with a model card.

    python examples/mnist_train.py --data-dir ../shared/data/mnist            # the full run
    python examples/mnist_train.py --data-dir ../shared/data/mnist --quick    # about a minute

The settings are the ``mnist`` presets (the seed's shape: two 2x2 stride-2 convolutions, one
residual block, 100 codes of 32 dimensions on a 7x7 grid, a 128-wide 8-head 3-block prior);
see docs/results.md for what this run reaches and how long it takes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from discrete_latents.training import TrainConfig, Trainer


def main(out_dir: str = "runs/mnist", data_dir: str = "", quick: bool = False, epochs: int = 20,
         download: bool = False, resume: bool = False, num_threads: int = 0, device: str = "auto") -> dict[str, float]:
    """Train both stages and write ``<out_dir>/pipeline`` (with its model card); return the test-set metrics.

    Args:
        out_dir: where checkpoints, logs, image grids and the pipeline go.
        data_dir: folder with the four MNIST IDX files ("" = $DISCRETE_LATENTS_DATA_DIR or the cache).
        quick: 2,000 training images, 1 epoch per stage: checks the whole path in about a minute.
        epochs: epochs per stage (the seed's 20).
        download: fetch MNIST from the official mirrors if it is missing.
        resume: continue from the newest checkpoint in ``out_dir``.
        num_threads: CPU threads (0 = torch's default).
        device: "auto", "cpu", "cuda", ...
    """
    config = TrainConfig(
        out_dir=out_dir, data_dir=data_dir, download=download, resume=resume, num_threads=num_threads,
        device=device, preset="mnist", prior_preset="mnist",
        vqvae_epochs=1 if quick else epochs, prior_epochs=1 if quick else epochs,
        limit_train=2000 if quick else 0, limit_test=500 if quick else 0,
        # bf16 autocast halves stage 1's time and cuts a third off stage 2's on CPUs with AMX and
        # on GPUs; the quantizer's distances and, on CPU, the prior's attention stay in float32.
        amp="bf16", prior_amp="bf16",
    )
    metrics = Trainer(config).fit()
    print(f"pipeline with model card and samples saved to {Path(out_dir) / 'pipeline'}")
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default="runs/mnist")
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
