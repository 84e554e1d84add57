"""One streamed training epoch over folders of 2,000 and 50,000 small PNGs: peak memory and images/s.

    python benchmarks/bench_image_folder.py                      # both sizes, 3 runs each
    python benchmarks/bench_image_folder.py --sizes 2000 --runs 1

The folders (32x32 RGB PNGs of coloured rectangles, generated once into --root) are streamed by
the trainer's own path (:func:`discrete_latents.training.data.load_split`, ``Streamed``) with
``--num-workers`` DataLoader processes; each batch goes through a forward and backward pass of a
small VQ-VAE so the epoch is a training epoch, not only decoding. Each run is a fresh process so
its peak resident memory (ru_maxrss of the process and, separately, of its worker processes) is
its own. The check that matters: the peak memory does not grow with the folder's size.
Prints the median of ``--runs`` runs and the CPU's name; on a shared machine the speed is noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from discrete_latents.training.process import cpu_name

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from discrete_latents import VQVAE, VQVAEConfig
from discrete_latents.training import TrainConfig
from discrete_latents.training.data import epoch_plan, load_split

folder, workers, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
overrides = {"in_channels": 3, "image_size": 32, "channels": [16, 32], "num_res_blocks": 1, "latent_dim": 8,
             "quantizer": "vq", "quantizer_kwargs": {"codebook_size": 64}}
config = TrainConfig(dataset="folder", data_dir=folder, preset="cifar10", vqvae_overrides=overrides,
                     num_workers=workers, batch_size=batch, crop="random", hflip=True)
started = time.perf_counter()
source = load_split(config, "train")  # lists the files and decodes each once to find bad ones
checked = time.perf_counter()
model = VQVAE(VQVAEConfig(**overrides))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
plan = [index for step in epoch_plan(len(source), batch, 1, seed=0, epoch=0, start_step=0) for index in step]
seen = 0
for images, _ in source.batches(plan, epoch=0):
    x = images.float() / 255
    out = model(x)
    loss = torch.nn.functional.mse_loss(out.reconstruction, x) + out.loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    seen += len(images)
done = time.perf_counter()
print(json.dumps({"images": seen, "check_s": checked - started, "epoch_s": done - checked,
                  "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def make_folder(root: Path, count: int) -> Path:
    """``count`` 32x32 RGB PNGs under ``root/<count>/train``, written once and reused."""
    folder = root / str(count) / "train"
    if folder.is_dir() and len(list(folder.iterdir())) == count:
        return folder.parent
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for i in range(count):
        image = np.full((32, 32, 3), rng.integers(0, 80, 3), dtype=np.uint8)
        top, left = rng.integers(0, 20, 2)
        image[top:top + 12, left:left + 12] = rng.integers(100, 256, 3)
        Image.fromarray(image).save(folder / f"{i:06d}.png")
    return folder.parent



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/dl_bench_image_folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 50000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores), torch threads 1, {args.num_workers} workers,"
          f" batch {args.batch_size}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for size in args.sizes:
        started = time.perf_counter()
        folder = make_folder(Path(args.root), size)
        print(f"{size} PNGs in {folder} (ready in {time.perf_counter() - started:.0f} s)", flush=True)
        results = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(args.num_workers),
                                  str(args.batch_size)], capture_output=True, text=True, env=env, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rate = statistics.median(r["images"] / r["epoch_s"] for r in results)
        check = statistics.median(size / r["check_s"] for r in results)
        main_mb = statistics.median(r["main_peak_mb"] for r in results)
        workers_mb = statistics.median(r["workers_peak_mb"] for r in results)
        print(f"  {size:>6} images: epoch {rate:7.0f} images/s, file check {check:7.0f} images/s,"
              f" peak RSS main {main_mb:6.0f} MB, largest worker {workers_mb:6.0f} MB"
              f" (median of {len(results)})", flush=True)


if __name__ == "__main__":
    main()
