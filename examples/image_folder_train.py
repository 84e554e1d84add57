# /// script
# requires-python = ">=3.10"
# dependencies = ["discrete_latents"]
# ///
"""Train a VQ-VAE and a prior on a folder of your own images, of any size and shape.

    python examples/image_folder_train.py --data-dir photos --height 64 --width 96   # the full run
    python examples/image_folder_train.py --quick      # about a minute, on generated images

The folder is searched recursively for PNG and JPEG files (``<data-dir>/train`` and
``<data-dir>/test`` are used when present). Images are streamed from disk by DataLoader worker
processes, scaled to cover (height, width) and cropped (at random for training with
``--random-crop``, in the centre for evaluation), optionally mirrored. Every file is checked
before training: a bad one stops the run with the list of all of them, unless ``--skip-bad-files``.
The models are the ``cifar10`` presets (widths (128, 256), 512 EMA codes, a 6-block prior) with
the image shape and channel count of your data; the prior is unconditional.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from discrete_latents.training import TrainConfig, Trainer


def make_demo_folder(root: str | Path, count: int = 600, height: int = 32, width: int = 48, seed: int = 0) -> Path:
    """Write ``count`` RGB PNGs of coloured rectangles on dark backgrounds, of varied sizes (for --quick)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", count), ("test", max(1, count // 6))):
        folder = Path(root) / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = int(rng.integers(height, 2 * height)), int(rng.integers(width, 2 * width))
            image = np.full((h, w, 3), rng.integers(0, 60, 3), dtype=np.uint8)
            top, left = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            image[top:top + h // 2, left:left + w // 2] = rng.integers(100, 256, 3)
            Image.fromarray(image).save(folder / f"{i:05d}.png")
    return Path(root)


def main(data_dir: str = "", out_dir: str = "runs/folder", height: int = 64, width: int = 64, channels: int = 3,
         quick: bool = False, epochs: int = 20, random_crop: bool = False, hflip: bool = False,
         skip_bad_files: bool = False, num_workers: int = 2, grad_accum_steps: int = 1, ema_decay: float = 0.0,
         resume: bool = False, num_threads: int = 0, device: str = "auto") -> dict[str, float]:
    """Train both stages on the folder and write ``<out_dir>/pipeline``; return the test-set metrics.

    Args:
        data_dir: the folder of images; with ``quick`` and no folder, 600 generated 32x48 images.
        out_dir: where checkpoints, logs, image grids and the pipeline go.
        height, width: the model's image shape; each a multiple of 4 (two down-samplings).
        channels: 1 grey, 3 RGB, 4 RGBA.
        quick: 512 training and 100 test images, 1 epoch per stage, (32, 48) images, narrower models.
        epochs: epochs per stage.
        random_crop: crop training images at random places (else in the centre).
        hflip: mirror half of the training images, anew each epoch.
        skip_bad_files: train on the readable files, warning with the list of the others.
        num_workers: DataLoader processes decoding images.
        grad_accum_steps: batches per optimizer step.
        ema_decay: average of the weights used for evaluation and saving (0 = off).
        resume: continue from the newest checkpoint in ``out_dir``.
        num_threads: CPU threads (0 = torch's default).
        device: "auto", "cpu", "cuda", ...

    Example:
        >>> metrics = main(out_dir="runs/folder-quick", quick=True)  # doctest: +SKIP
    """
    if quick:
        height, width = 32, 48
        if not data_dir:
            data_dir = str(make_demo_folder(Path(out_dir).with_name(Path(out_dir).name + "-images")))
    if not data_dir:
        raise SystemExit("--data-dir: the folder of your images is needed (or --quick for generated ones)")
    grid = (height // 4, width // 4)
    # Quick mode also narrows both models, so the whole path runs in about a minute on a CPU.
    small_vqvae = {"channels": [64, 128], "num_res_blocks": 1} if quick else {}
    small_prior = {"n_layer": 2, "n_embd": 128} if quick else {}
    config = TrainConfig(
        out_dir=out_dir, data_dir=data_dir, dataset="folder", resume=resume, num_threads=num_threads,
        device=device, preset="cifar10", prior_preset="cifar10",
        vqvae_overrides={"in_channels": channels, "image_size": [height, width], **small_vqvae},
        prior_overrides={"grid_size": list(grid), "num_classes": 0, "class_frequencies": [], **small_prior},
        vqvae_epochs=1 if quick else epochs, prior_epochs=1 if quick else epochs,
        limit_train=512 if quick else 0, limit_test=100 if quick else 0,
        crop="random" if random_crop else "center", hflip=hflip, bad_files="skip" if skip_bad_files else "fail",
        num_workers=num_workers, grad_accum_steps=grad_accum_steps, ema_decay=ema_decay,
        warmup_steps=10 if quick else 200, prior_batch_size=64 if quick else 256,
    )
    metrics = Trainer(config).fit()  # also writes <out_dir>/pipeline with its model card
    print(f"pipeline saved to {Path(out_dir) / 'pipeline'}")
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--out-dir", default="runs/folder")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--random-crop", action="store_true")
    parser.add_argument("--hflip", action="store_true")
    parser.add_argument("--skip-bad-files", action="store_true")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--grad-accum-steps", type=int, default=1)
    parser.add_argument("--ema-decay", type=float, default=0.0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--num-threads", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    main(args.data_dir, args.out_dir, args.height, args.width, args.channels, args.quick, args.epochs,
         args.random_crop, args.hflip, args.skip_bad_files, args.num_workers, args.grad_accum_steps, args.ema_decay,
         args.resume, args.num_threads, args.device)
