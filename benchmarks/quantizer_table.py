"""Stage 1 of the ``mnist`` preset with each quantizer swapped in, everything else equal.

Trains the VQ-VAE alone (no prior) on the real MNIST training set for ``--epochs`` epochs per
quantizer and evaluates on the full test set: PSNR, codes used and perplexity of the test-set
code histogram, and wall time. Writes a markdown table.

    python benchmarks/quantizer_table.py --data-dir ../shared/data/mnist --epochs 10 --out docs/quantizer_table.md

``--channels 128 128`` trains other widths than the preset's (the table in the docs used 128, 128).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from discrete_latents._presets import vqvae_preset
from discrete_latents.training import TrainConfig, Trainer
from discrete_latents.training.process import cpu_name

HEALTH = {"kmeans_init": True, "restart_dead_codes": True, "dead_code_threshold": 0.5}
# name in the table -> (registry name, quantizer_kwargs); K = 100 codes for every one-grid quantizer.
QUANTIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "vq (paper, no health options)": ("vq", {"codebook_size": 100}),
    "vq + k-means + restarts": ("vq", {"codebook_size": 100, **HEALTH}),
    "vq_ema + k-means + restarts (mnist preset)": ("vq_ema", {"codebook_size": 100, **HEALTH}),
    "vq_cosine + k-means + restarts": ("vq_cosine", {"codebook_size": 100, **HEALTH}),
    "rvq, 2 x vq_ema + k-means + restarts": ("rvq", {"num_quantizers": 2, "codebook_size": 100,
                                                      "stage": "vq_ema", **HEALTH}),
    "fsq, levels (5, 5, 4)": ("fsq", {"levels": [5, 5, 4]}),
    "lfq, 7 bits, entropy weight 0.1": ("lfq", {"codebook_size": 128}),
}


def main(data_dir: str, epochs: int, out_dir: str = "runs/quantizers", out: Path | None = None,
         threads: int = 2, channels: tuple[int, ...] | None = None, only: list[str] | None = None) -> str:
    channels = tuple(channels or vqvae_preset("mnist").channels)
    rows = []
    for label, (name, kwargs) in QUANTIZERS.items():
        if only and name not in only:
            continue
        config = TrainConfig(out_dir=f"{out_dir}/{name}-{len(rows)}", data_dir=data_dir, stage="vqvae",
                             vqvae_epochs=epochs, amp="bf16", num_threads=threads,
                             progress=False, vqvae_overrides={"quantizer": name, "quantizer_kwargs": kwargs,
                                                              "channels": channels})
        started = time.perf_counter()
        metrics = Trainer(config, log=lambda message: None).fit()
        seconds = time.perf_counter() - started
        k = metrics["codebook_size"]
        rows.append(f"| {label} | `{name}` | {k:.0f} | {metrics['psnr']:.2f} | {metrics['codes_used']:.0f} |"
                    f" {metrics['perplexity']:.1f} | {seconds / 60:.1f} |")
        print(rows[-1], flush=True)
    defaults = TrainConfig()
    header = (f"Stage 1 only, widths {channels}, {epochs} epochs, batch {defaults.batch_size},"
              f" Adam {defaults.vqvae_lr:g}, bf16 autocast,"
              " seed 0; test set of 10,000;"
              f" {cpu_name()}, {threads} threads, torch {torch.__version__}.\n\n"
              "| quantizer | name | K | PSNR (dB) | codes used | perplexity | minutes |\n"
              "|---|---|---|---|---|---|---|\n")
    table = header + "\n".join(rows) + "\n"
    if out:
        out.write_text(table)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out-dir", default="runs/quantizers")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--channels", type=int, nargs="+", default=None, help="encoder widths (default: the preset's)")
    parser.add_argument("--only", nargs="+", default=None, help="registry names of the rows to train (default: all)")
    args = parser.parse_args()
    print(main(args.data_dir, args.epochs, args.out_dir, args.out, args.threads, args.channels, args.only))
