"""The causal and the masked prior trained with the same budget: what each learns per step.

Both priors have the same transformer (3 blocks, width 128, 8 heads) and train on the bundled
``mnist`` VQ-VAE's codes through the same `Trainer` with the same recipe (epochs, batch, AdamW
peak rate, bf16 autocast, threads), so they take the same number of optimiser steps over the same
codes; only the prior and its loss differ. Then each draws ``--num-samples`` digits (labels drawn
by their training-set frequency; the masked prior in 8 steps) and is judged with the project's
classifier measure (``benchmarks/sample_quality.py``), next to the two bundled pipelines.

    python benchmarks/bench_prior_budget.py --data-dir ../shared/data/mnist --epochs 3 \\
        --out docs/bench_prior_budget.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from bench_masked import generate_seeded, judge, markdown, mnist_judge

from discrete_latents import VQVAEPipeline, pretrained_path
from discrete_latents.training import TrainConfig, Trainer
from discrete_latents.training.process import cpu_name

PRESETS = {"causal": "mnist", "masked": "mnist_masked"}


def train(kind: str, args: argparse.Namespace, out_dir: Path) -> tuple[VQVAEPipeline, dict[str, float]]:
    """Train one prior on the bundled VQ-VAE's codes; return its pipeline and test metrics."""
    config = TrainConfig(stage="prior", vqvae_from="mnist", out_dir=str(out_dir), data_dir=args.data_dir,
                         prior_preset=PRESETS[kind], prior_epochs=args.epochs, prior_batch_size=args.batch_size,
                         prior_lr=args.lr, prior_amp="bf16", num_threads=args.threads, seed=args.seed)
    metrics = Trainer(config, log=lambda message: None).fit()
    return VQVAEPipeline.from_pretrained(out_dir / "pipeline"), metrics


def quality(pipe: VQVAEPipeline, model: torch.nn.Module, test_features: torch.Tensor, num: int,
            seed: int) -> dict[str, object]:
    samples = generate_seeded(pipe, num, seed, None if pipe.prior.raster_order else 8)
    return judge(model, samples, test_features)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier", type=Path, default=Path("runs/mnist_classifier.safetensors"))
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_x, _, _, _, model, test_features = mnist_judge(args.data_dir, args.classifier)
    steps = args.epochs * (len(train_x) // args.batch_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in PRESETS:
            pipe, metrics = train(kind, args, Path(tmp) / kind)
            likelihood = metrics.get("nll_nats_per_code", metrics.get("nll_bound_nats_per_code"))
            rows.append({"prior": f"{kind}, {args.epochs} epochs", "optimiser_steps": steps,
                         "test_nats_per_code": round(float(likelihood), 3),
                         **quality(pipe, model, test_features, args.num_samples, args.seed)})
    for kind, name in PRESETS.items():
        pipe = VQVAEPipeline.from_pretrained(pretrained_path(name))
        rows.append({"prior": f"bundled {name} ({kind})", "optimiser_steps": "",
                     "test_nats_per_code": "", **quality(pipe, model, test_features, args.num_samples, args.seed)})
    header = (f"{cpu_name()}, {args.threads} torch threads, torch {torch.__version__}; batch {args.batch_size},"
              f" AdamW peak {args.lr}, bf16; {args.num_samples} samples, labels drawn by class frequency;"
              " masked prior at 8 steps; test nats per code: the causal prior's NLL, the masked prior's upper bound")
    print(json.dumps({"machine": header, "rows": rows}, indent=2))
    if args.out:
        args.out.write_text("\n".join([header, "", markdown("Same budget, both priors", rows)]))
    return {"machine": header, "rows": rows}


if __name__ == "__main__":
    main()
