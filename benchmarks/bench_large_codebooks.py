"""Peak memory and step time of large codebooks, next to vector-quantize-pytorch, and a prior at K = 65,536.

One training step is forward and backward of ``loss + quantized.square().mean()`` on N = 16,384
vectors of D = 256 (64 grids of 16x16), the first step included (k-means initialisation and
dead-code restarts on where the quantizer has them). Every configuration runs in its own
subprocess with an address-space limit (``resource.setrlimit``), so a configuration that does
not fit fails alone instead of starving the machine; its peak memory is the growth of the
subprocess's peak resident set (``getrusage``) above the module and its inputs.

    python benchmarks/bench_large_codebooks.py                 # quantizers, K = 8,192 / 16,384 / 65,536
    python benchmarks/bench_large_codebooks.py --prior         # causal prior, K = 65,536, 16x16, batch 64

Rows, side by side in the same run: ``vq``, ``vq_ema``, ``vq_cosine`` and ``rvq`` (4 levels of K
codes) with ``kmeans_init=True`` and ``restart_dead_codes=True``; ``lfq`` with K = 2**bits through
256 -> bits -> 256 projections; vector-quantize-pytorch's ``VectorQuantize`` (EMA, ``kmeans_init=True``,
``threshold_ema_dead_code=2``, its other defaults) and ``LFQ`` (its defaults). Needs the ``bench``
extra (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

import torch

from discrete_latents.training.process import cpu_name

D, GRID, BATCH = 256, 16, 64  # N = 64 * 16 * 16 = 16,384 vectors
OURS = ["vq", "vq_ema", "vq_cosine", "rvq", "lfq"]
CASES = [*OURS, "VectorQuantize (vector-quantize-pytorch)", "LFQ (vector-quantize-pytorch)"]
HEALTH = {"kmeans_init": True, "restart_dead_codes": True}
GIB = 2 ** 30


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _quantizer_step(case: str, k: int) -> tuple[torch.nn.Module, Any]:
    """The module and a function running one training step of it; built in the child."""
    if case in OURS:
        from discrete_latents.quantizers import QUANTIZERS

        kwargs = {"codebook_size": k, **(HEALTH if case != "lfq" else {})}  # rvq: 4 levels of K codes each
        module = QUANTIZERS.create(case, dim=D, **kwargs).train()
        z = torch.randn(BATCH, D, GRID, GRID, requires_grad=True)

        def step() -> None:
            out = module(z)
            (out.loss + out.quantized.square().mean()).backward()
        return module, step
    import vector_quantize_pytorch as vqp

    if case.startswith("VectorQuantize"):
        module = vqp.VectorQuantize(dim=D, codebook_size=k, kmeans_init=True, threshold_ema_dead_code=2).train()
    else:
        module = vqp.LFQ(dim=D, codebook_size=k).train()
    x = torch.randn(BATCH, GRID * GRID, D, requires_grad=True)  # (B, N, D), channels last

    def step() -> None:
        quantized, _, loss = module(x)
        (loss.sum() + quantized.square().mean()).backward()
    return module, step


def _prior_step(path: str, batch: int, k: int) -> tuple[torch.nn.Module, Any]:
    from discrete_latents import CausalPrior, CausalPriorConfig

    prior = CausalPrior(CausalPriorConfig(codebook_size=k, grid_size=(GRID, GRID), n_layer=2, n_head=4,
                                          n_embd=128)).train()
    optimizer = torch.optim.AdamW(prior.param_groups(0.01), lr=1e-4)
    for param in prior.parameters():  # gradients and Adam's moments exist before the baseline
        param.grad = torch.zeros_like(param)
    optimizer.step()
    codes = torch.randint(0, k, (batch, GRID, GRID))

    def step() -> None:
        optimizer.zero_grad(set_to_none=False)
        loss = prior.loss(codes) if path == "loss" else prior(codes).loss
        loss.backward()
        optimizer.step()
    return prior, step


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Child process: build, take the baseline, run ``steps`` steps; the result as a dict."""
    limit = int(spec["limit_gib"] * GIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    try:
        if spec["kind"] == "prior":
            module, step = _prior_step(spec["path"], spec["batch"], spec["k"])
        else:
            module, step = _quantizer_step(spec["case"], spec["k"])
        state_bytes = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
        before = _peak_bytes()
        times, cpu_times = [], []
        for _ in range(spec["steps"]):
            started, cpu_started = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
    except (MemoryError, RuntimeError) as err:
        if isinstance(err, MemoryError) or "alloc" in str(err).lower() or "memory" in str(err).lower():
            return {"error": f"out of memory under the {spec['limit_gib']} GiB limit"}
        raise
    return {"growth_gib": (_peak_bytes() - before) / GIB, "peak_gib": _peak_bytes() / GIB,
            "baseline_gib": before / GIB, "state_gib": state_bytes / GIB, "first_s": times[0],
            "median_s": statistics.median(times[1:]) if len(times) > 1 else float("nan"),
            "first_cpu_s": cpu_times[0],
            "median_cpu_s": statistics.median(cpu_times[1:]) if len(cpu_times) > 1 else float("nan")}


def _spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    try:
        done = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True,
                              env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return {"error": f"failed: {tail[0][:160]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _machine(threads: int) -> str:
    cpu = cpu_name()
    try:
        vqp = f"vector-quantize-pytorch {metadata.version('vector-quantize-pytorch')}"
    except metadata.PackageNotFoundError:
        vqp = "vector-quantize-pytorch not installed"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, {threads} thread(s), torch {torch.__version__}, {vqp};"
            f" load average at the start {load}")


def _cell(result: dict[str, Any], key: str, fmt: str) -> str:
    return result.get("error", "") if "error" in result else format(result[key], fmt)


def quantizers(sizes: list[int], cases: list[str], steps: int, threads: int, limit_gib: float,
               timeout: float) -> str:
    rows = []
    for k in sizes:
        for case in cases:
            spec = {"kind": "quantizer", "case": case, "k": k, "steps": steps, "threads": threads,
                    "limit_gib": limit_gib}
            result = _spawn(spec, timeout)
            if "error" in result:
                row = f"| {k:,} | {case} | {result['error']} | | | |"
            else:
                row = (f"| {k:,} | {case} | {result['growth_gib']:.2f} | {result['first_cpu_s']:.1f} |"
                       f" {result['median_cpu_s']:.1f} | {result['median_s']:.1f} |")
            rows.append(row)
            print(row, flush=True)
    return (f"Training step, D = {D}, N = {BATCH * GRID * GRID:,}; {steps} steps per configuration, each in its"
            f" own process limited to {limit_gib:g} GiB of address space; CPU seconds are the process's own"
            f" (time.process_time), which a busy machine inflates less than wall time; {_machine(threads)}.\n\n"
            "| K | quantizer | peak growth (GiB) | first step, CPU s | median step, CPU s | median step, wall s |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def prior(batches: list[int], k: int, threads: int, limit_gib: float, timeout: float) -> str:
    rows = []
    for batch in batches:
        for path in ("loss", "logits"):
            spec = {"kind": "prior", "path": path, "batch": batch, "k": k, "steps": 1, "threads": threads,
                    "limit_gib": limit_gib}
            result = _spawn(spec, timeout)
            logits_gib = batch * GRID * GRID * k * 4 / GIB
            label = "prior.loss (chunked)" if path == "loss" else "prior(...).loss (full logits)"
            if "error" in result:
                row = f"| {batch} | {label} | {logits_gib:.2f} | {result['error']} | |"
            else:
                row = (f"| {batch} | {label} | {logits_gib:.2f} | {result['growth_gib']:.2f} |"
                       f" {result['first_cpu_s']:.1f} |")
            rows.append(row)
            print(row, flush=True)
    return (f"Causal prior (2 layers, 4 heads, width 128), K = {k:,}, {GRID}x{GRID} grid; one AdamW step; growth of"
            f" the peak above the model, its gradients and Adam's moments; limit {limit_gib:g} GiB;"
            f" {_machine(threads)}.\n\n"
            "| batch | path | float32 logits (GiB) | peak growth (GiB) | step, CPU s |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one configuration
    parser.add_argument("--prior", action="store_true", help="the causal prior instead of the quantizers")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384, 65536])
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES, metavar="CASE",
                        help=f"quantizers to run (default all: {', '.join(CASES)})")
    parser.add_argument("--prior-batches", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--steps", type=int, default=4, help="steps per configuration; the first is reported alone")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit-gib", type=float, default=12.0, help="address-space limit of each configuration")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per configuration")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
    elif args.prior:
        print(prior(args.prior_batches, 65536, args.threads, args.limit_gib, args.timeout))
    else:
        print(quantizers(args.sizes, args.cases, args.steps, args.threads, args.limit_gib, args.timeout))
