"""Forward + backward time of our quantizers against vector-quantize-pytorch's ``VectorQuantize``.

Each method runs in training mode on a (B, D, h, w) input that requires a gradient, the way an
encoder output does; one step is ``out = q(x)``, ``(out.quantized ** 2).mean() + loss`` and
``backward()``. Steps are interleaved round-robin across the methods (one step of each, then the
next round) so that slow drifts in machine load hit every method alike, and the median over the
rounds is reported after warm-up rounds.

Methods:
    textbook        one addmm for ||e||^2 - 2 x.e, argmin, embedding lookup, the paper's two MSE
                    terms and the straight-through estimator; nothing else.
    VectorQuantize  ``vector_quantize_pytorch.VectorQuantize(dim, codebook_size,
                    accept_image_fmap=True)`` with its defaults (EMA codebook, decay 0.8,
                    rotation trick).
    vq              ``QUANTIZERS.create("vq", dim=D, codebook_size=K)`` (the default).
    vq_ema+restart  ``QUANTIZERS.create("vq_ema", dim=D, codebook_size=K, restart_dead_codes=True)``.

vector-quantize-pytorch is not a dependency of discrete_latents; install it for the benchmark
only, without letting pip touch torch::

    pip install --no-deps vector-quantize-pytorch einx loguru torch-einops-utils frozendict

Usage::

    python benchmarks/bench_quantizers.py                      # 7 rounds after 2 warm-up rounds
    python benchmarks/bench_quantizers.py --repeats 2 --cases a   # a quick smoke test
    python benchmarks/bench_quantizers.py --out docs/benchmark.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discrete_latents.quantizers import QUANTIZERS
from discrete_latents.training.process import cpu_name

# name: (B, D, h, w, K)
CASES: dict[str, tuple[int, int, int, int, int]] = {
    "a": (128, 32, 7, 7, 100),
    "b": (128, 64, 8, 8, 512),
    "c": (32, 256, 16, 16, 8192),
}
METHODS = ("textbook", "VectorQuantize", "vq", "vq_ema+restart")


class TextbookVQ(nn.Module):
    """The plain paper VQ: one addmm, argmin, lookup, Eq. 3 loss, straight-through."""

    def __init__(self, dim: int, codebook_size: int, beta: float = 0.25) -> None:
        super().__init__()
        self.beta = beta
        self.weight = nn.Parameter(torch.empty(codebook_size, dim).uniform_(-1 / codebook_size, 1 / codebook_size))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        b, _, h, w = z.shape
        flat = rearrange(z, "b d h w -> (b h w) d")
        e = self.weight
        indices = torch.addmm((e.detach() ** 2).sum(1), flat.detach(), e.detach().t(), alpha=-2.0).argmin(1)
        codes = F.embedding(indices, e)
        loss = F.mse_loss(codes, flat.detach()) + self.beta * F.mse_loss(flat, codes.detach())
        quantized = flat + (codes - flat).detach()
        return rearrange(quantized, "(b h w) d -> b d h w", b=b, h=h, w=w), loss


def build(method: str, dim: int, codebook_size: int) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """A callable mapping the input to (quantized, loss) for ``method``, in training mode."""
    if method == "textbook":
        module: nn.Module = TextbookVQ(dim, codebook_size)
        return module.train()
    if method == "VectorQuantize":
        from vector_quantize_pytorch import VectorQuantize

        vqp = VectorQuantize(dim=dim, codebook_size=codebook_size, accept_image_fmap=True).train()

        def run_vqp(x: Tensor) -> tuple[Tensor, Tensor]:
            quantized, _, loss = vqp(x)
            return quantized, loss

        return run_vqp
    name, kwargs = ("vq", {}) if method == "vq" else ("vq_ema", {"restart_dead_codes": True})
    ours = QUANTIZERS.create(name, dim=dim, codebook_size=codebook_size, **kwargs).train()

    def run_ours(x: Tensor) -> tuple[Tensor, Tensor]:
        out = ours(x)
        return out.quantized, out.loss

    return run_ours


def step(fn: Callable[[Tensor], tuple[Tensor, Tensor]], x: Tensor) -> float:
    """Seconds for one forward + backward."""
    x.grad = None
    start = time.perf_counter()
    quantized, loss = fn(x)
    (quantized.square().mean() + loss).backward()
    return time.perf_counter() - start


def run_case(case: str, repeats: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per forward + backward of each method on ``case``."""
    b, d, h, w, k = CASES[case]
    torch.manual_seed(0)
    x = torch.randn(b, d, h, w, requires_grad=True)
    fns = {m: build(m, d, k) for m in METHODS}
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for round_ in range(warmup + repeats):
        for method, fn in fns.items():
            seconds = step(fn, x)
            if round_ >= warmup:
                times[method].append(seconds)
    return {m: 1000.0 * statistics.median(t) for m, t in times.items()}


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| case | input (B x D x h x w), K | textbook ms | VectorQuantize ms | vq ms | vq_ema+restart ms"
        " | textbook / VQ | vq / VQ | vq_ema+restart / VQ |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, ms in results.items():
        b, d, h, w, k = CASES[case]
        ref = ms["VectorQuantize"]
        lines.append(
            f"| {case} | {b}x{d}x{h}x{w}, K={k} | {ms['textbook']:.1f} | {ref:.1f} | {ms['vq']:.1f}"
            f" | {ms['vq_ema+restart']:.1f} | {ms['textbook'] / ref:.2f} | {ms['vq'] / ref:.2f}"
            f" | {ms['vq_ema+restart'] / ref:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per case (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds before timing")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--cases", default="a,b,c", help="comma-separated subset of " + ",".join(CASES))
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error(f"cases must be among {list(CASES)} (got {unknown}); repeats >= 1, warmup >= 0, threads >= 1")
    try:
        import vector_quantize_pytorch  # noqa: F401
    except ImportError:
        print("vector-quantize-pytorch is not installed; it is needed for this benchmark only (it is not a\n"
              "dependency of discrete_latents). Install it without letting pip replace torch:\n"
              "    pip install --no-deps vector-quantize-pytorch einx loguru torch-einops-utils frozendict",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    results = {}
    for case in cases:
        results[case] = run_case(case, args.repeats, args.warmup)
        print(f"case {case} done", file=sys.stderr, flush=True)
    header = (f"torch {torch.__version__}, vector-quantize-pytorch {version('vector-quantize-pytorch')},"
              f" {args.threads} threads, {cpu_name()}; median of {args.repeats}"
              f" rounds after {args.warmup} warm-up rounds; ms per forward + backward (training mode)")
    text = header + "\n\n" + table(results) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
