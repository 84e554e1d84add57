"""Training throughput of both stages with the ``mnist`` presets, in images per second.

One step is a full optimizer step (forward, backward, fused Adam/AdamW update, as the trainer
runs it) on random inputs of the real shapes: stage 1 on (32, 1, 28, 28) images, stage 2 on
(256, 7, 7) code grids with labels. Steps alternate between the compared settings so drifting
load hits them alike; the median step time after warm-up is reported. Denormals are flushed,
as the trainer does on CPU.

    python benchmarks/bench_training.py                  # CPU, 2 threads
    python benchmarks/bench_training.py --device cuda    # a GPU, if there is one
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from discrete_latents import VQVAE, CausalPrior
from discrete_latents._presets import prior_preset
from discrete_latents.training.process import cpu_name


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _fused(device: torch.device) -> bool | None:
    return True if device.type in ("cpu", "cuda") else None


def vqvae_step(device: torch.device, bf16: bool, channels_last: bool = False) -> Callable[[], None]:
    layout = torch.channels_last if channels_last else torch.preserve_format
    model = VQVAE.from_preset("mnist").to(device, memory_format=layout).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=_fused(device))
    images = torch.rand(32, 1, 28, 28, device=device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext

    def step() -> None:
        with autocast():
            out = model(images)
        loss = F.mse_loss(out.reconstruction.float(), images) + out.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def prior_step(device: torch.device, bf16: bool) -> Callable[[], None]:
    prior = CausalPrior(prior_preset("mnist")).to(device).train()  # type: ignore[arg-type]
    optimizer = torch.optim.AdamW(prior.parameters(), lr=1e-3, fused=_fused(device))
    codes = torch.randint(0, 100, (256, 7, 7), device=device)
    labels = torch.randint(0, 10, (256,), device=device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext

    def step() -> None:
        with autocast():
            loss = prior(codes, labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(steps: dict[str, tuple[Callable[[], None], int]], device: torch.device, repeats: int,
            warmup: int) -> dict[str, float]:
    """Median seconds per step of each named step, interleaved round-robin."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(warmup + repeats):
        for name, (step, _) in steps.items():
            _sync(device)
            started = time.perf_counter()
            step()
            _sync(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main(device: str = "cpu", threads: int = 2, repeats: int = 30, warmup: int = 5, out: Path | None = None) -> str:
    torch.set_num_threads(threads)
    dev = torch.device(device)
    flush = dev.type == "cpu" and torch.set_flush_denormal(True)
    steps = {
        "stage 1 (VQ-VAE), fp32": (vqvae_step(dev, False), 32),
        "stage 1 (VQ-VAE), bf16 autocast": (vqvae_step(dev, True), 32),
        "stage 1 (VQ-VAE), bf16 autocast, channels last": (vqvae_step(dev, True, channels_last=True), 32),
        "stage 2 (prior), fp32": (prior_step(dev, False), 256),
        "stage 2 (prior), bf16 autocast": (prior_step(dev, True), 256),
    }
    medians = measure(steps, dev, repeats, warmup)
    if flush:
        torch.set_flush_denormal(False)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{cpu_name()}"
    lines = [f"Training throughput on {name} ({device}, {threads} threads, torch {torch.__version__}),"
             f" median of {repeats} steps:", "",
             "| setting | batch | ms / step | images / s | epoch of 60,000 (s) |", "|---|---|---|---|---|"]
    for label, (_, batch) in steps.items():
        seconds = medians[label]
        lines.append(f"| {label} | {batch} | {seconds * 1000:.1f} | {batch / seconds:,.0f} |"
                     f" {60000 / batch * seconds:.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if out:
        out.write_text(table)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    main(args.device, args.threads, args.repeats, args.warmup, args.out)
