"""Sampling speed of the seed's prior: KV cache vs. full recomputation vs. Hugging Face GPT-2.

Times ``CausalPrior(prior_preset("mnist")).sample(N)`` (49 codes of a 7x7 grid) with and without
the key/value cache, and the cached ``generate()`` of a Hugging Face GPT-2 of the same size
(width 128, 8 heads, 3 blocks, 101 tokens, 50 positions) drawing 49 tokens from a start token.
Reports the median over ``--repeats`` runs as milliseconds per sampled image, as a markdown table.
The methods are interleaved within each repeat, so drifting machine load hits them alike.

Usage::

    pip install --no-deps transformers   # only for the GPT-2 column; keep your torch
    python benchmarks/bench_sampling.py --repeats 7 --out docs/bench_sampling.md

Targets (issue "Speed", batch 64, 2 CPU threads): cache >= 5x faster than no cache, and at most
half the time of GPT-2's cached ``generate()``. This is a measurement, not a test: timings depend
on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from discrete_latents import CausalPrior, CausalPriorConfig
from discrete_latents._presets import prior_preset
from discrete_latents.priors import build_prior
from discrete_latents.training.process import cpu_name

NUM_CODES = 49  # a 7x7 code grid


def build_gpt2(device: torch.device) -> Callable[[int], object] | None:
    """GPT-2 at the prior's size, or None when ``transformers`` is not installed."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
        from transformers.utils import logging as hf_logging
    except ImportError:
        return None
    hf_logging.set_verbosity_error()
    # bos/eos/pad = 100, the start token (ids 0..99 are codes); min_new_tokens keeps the eos
    # from ending a sequence early, so every sample has exactly 49 new tokens.
    config = GPT2Config(n_embd=128, n_head=8, n_layer=3, vocab_size=101, n_positions=50,
                        bos_token_id=100, eos_token_id=100, pad_token_id=100)
    model = GPT2LMHeadModel(config).eval().to(device)

    @torch.no_grad()
    def generate(batch: int) -> object:
        start = torch.full((batch, 1), 100, dtype=torch.long, device=device)
        out = model.generate(start, attention_mask=torch.ones_like(start), do_sample=True,
                             max_new_tokens=NUM_CODES, min_new_tokens=NUM_CODES)
        assert out.shape == (batch, 1 + NUM_CODES), out.shape
        return out

    return generate


def median_ms(runs: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(times) * 1e3 for name, times in runs.items()}


def benchmark(batch_sizes: list[int], repeats: int, include_pixelcnn: bool,
              device: torch.device | None = None) -> tuple[list[dict[str, object]], bool]:
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    config = prior_preset("mnist")
    assert isinstance(config, CausalPriorConfig)
    prior = CausalPrior(config).eval().to(device)
    methods: dict[str, Callable[[int], object]] = {
        "cache": lambda n: prior.sample(n, use_cache=True),
        "no cache": lambda n: prior.sample(n, use_cache=False),
    }
    gpt2 = build_gpt2(device)
    if gpt2 is not None:
        methods["GPT-2 generate"] = gpt2
    if include_pixelcnn:
        pixelcnn = build_prior(prior_preset("mnist_pixelcnn")).eval().to(device)
        methods["PixelCNN"] = lambda n: pixelcnn.sample(n)
    rows = []
    for batch in batch_sizes:
        runs: dict[str, list[float]] = {name: [] for name in methods}
        for fn in methods.values():  # warm-up: allocator, thread pool, lazy imports
            fn(batch)
        for _ in range(repeats):
            for name, fn in methods.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                fn(batch)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                runs[name].append(time.perf_counter() - start)
        ms = median_ms(runs)
        row: dict[str, object] = {"batch": batch, **{name: ms[name] / batch for name in methods}}
        row["cache speed-up"] = ms["no cache"] / ms["cache"]
        if gpt2 is not None:
            row["cache / GPT-2"] = ms["cache"] / ms["GPT-2 generate"]
        rows.append(row)
    return rows, gpt2 is not None


def to_markdown(rows: list[dict[str, object]], has_gpt2: bool, repeats: int, device: str = "cpu") -> str:
    columns = list(rows[0])
    lines = [
        f"Sampling 49 codes (7x7) per image; median of {repeats} runs; ms per sampled image"
        f" (ratios from whole-batch medians). torch {torch.__version__}, {torch.get_num_threads()} threads,"
        f" {cpu_name()}, device {device}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" for _ in columns) + "|",
    ]
    for row in rows:
        cells = []
        for name in columns:
            value = row[name]
            if name == "batch":
                cells.append(str(value))
            elif name in ("cache speed-up", "cache / GPT-2"):
                cells.append(f"{value:.2f}x" if name == "cache speed-up" else f"{value:.2f}")
            else:
                cells.append(f"{value:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    by_batch = {row["batch"]: row for row in rows}
    if 64 in by_batch:
        row = by_batch[64]
        lines += ["", "Targets at batch 64:",
                  f"- cache >= 5x faster than no cache: {row['cache speed-up']:.2f}x"
                  f" ({'met' if row['cache speed-up'] >= 5 else 'NOT met'})"]  # type: ignore[operator]
        if has_gpt2:
            ratio = row["cache / GPT-2"]
            lines.append(f"- cache <= 0.5 x GPT-2 generate: {ratio:.2f}"
                         f" ({'met' if ratio <= 0.5 else 'NOT met'})")  # type: ignore[operator]
        else:
            lines.append("- GPT-2 comparison skipped: `pip install --no-deps transformers`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per method and batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the target is 2 cores)")
    parser.add_argument("--pixelcnn", action="store_true", help="also time the mnist_pixelcnn prior")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.repeats < 1 or any(b < 1 for b in args.batch_sizes):
        parser.error("--repeats and --batch-sizes must be positive")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="transformers")
    rows, has_gpt2 = benchmark(args.batch_sizes, args.repeats, args.pixelcnn, torch.device(args.device))
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device
    table = to_markdown(rows, has_gpt2, args.repeats, device)
    print(table, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return table


if __name__ == "__main__":
    main()
