"""The masked prior against the causal one on MNIST: sample quality, latency and inpainting.

Both bundled pipelines share the VQ-VAE, so only the prior differs. Judged with the project's
classifier measure (``benchmarks/sample_quality.py``: a small CNN trained on MNIST, the Frechet
distance in its 128-d features against the test set, its confidence and class histogram).

1. Sample quality without labels (each class drawn by its training-set frequency): the causal
   prior, and the masked prior at 4, 8 and 12 steps. Goal: the masked prior's Frechet distance
   at 8 steps at most 1.5x the causal prior's.
2. Latency of ``prior.sample``: one image (goal: masked at 8 steps at least 3x faster than the
   cached causal prior, each at its faster torch thread count, 1 or ``--threads``) and a batch of
   64 (throughput; no goal). Median of ``--repeats`` runs in one process, the methods
   interleaved so drifting load hits them alike.
3. Inpainting the bottom 12 pixel rows (the last three code rows) of the first 1,000 test digits
   with no label: the share of completions the classifier gives the original digit's class
   (goal: >= 88% for the masked prior) and their Frechet distance to the test set, next to a
   nearest-training-neighbour completion (the training digit closest on the kept rows supplies
   the bottom rows) and the plain reconstructions (the ceiling). Writes a picture.

    python benchmarks/bench_masked.py --data-dir ../shared/data/mnist --out docs/bench_masked.md \\
        --picture docs/images/inpaint.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from sample_quality import Classifier, classify, frechet_distance, train_classifier
from torch import Tensor

from discrete_latents import VQVAEPipeline, pretrained_path
from discrete_latents._safetensors import read_safetensors, write_safetensors
from discrete_latents.datasets import load_mnist
from discrete_latents.images import save_grid
from discrete_latents.training.process import cpu_name

KEPT_ROWS = 16  # pixel rows 0-15 kept, 16-27 redrawn: code rows 4-6 of the 7x7 grid



def load_classifier(path: Path, images: Tensor, labels: Tensor) -> Classifier:
    """The project's classifier, trained once (seed 0) and cached as safetensors."""
    model = Classifier()
    if path.is_file():
        model.load_state_dict(read_safetensors(path))
        return model.eval()
    model = train_classifier(images, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, model.state_dict())
    return model


class MnistJudge(NamedTuple):
    """MNIST's splits, the project's classifier and its features of the test set."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    model: Classifier
    test_features: Tensor


def mnist_judge(data_dir: str, classifier: Path) -> MnistJudge:
    """Load MNIST and the classifier (trained once and cached at ``classifier``); embed the test set."""
    train_x, train_y = load_mnist(data_dir, "train")
    test_x, test_y = load_mnist(data_dir, "test")
    model = load_classifier(classifier, train_x, train_y)
    return MnistJudge(train_x, train_y, test_x, test_y, model, classify(model, test_x.float() / 255)[1])


def judge(model: Classifier, images: Tensor, test_features: Tensor) -> dict[str, object]:
    probs, features = classify(model, images)
    confidence = probs.max(-1).values
    histogram = torch.bincount(probs.argmax(-1), minlength=10)
    return {"frechet": round(frechet_distance(features, test_features), 3),
            "mean_confidence": round(float(confidence.mean()), 4),
            "classes_present": int((histogram > 0).sum()), "smallest_class_share": round(float(histogram.min())
                                                                                         / len(images), 4)}


def generate_seeded(pipe: VQVAEPipeline, num: int, seed: int, steps: int | None = None) -> Tensor:
    """``num`` images from ``pipe`` in batches of 1,000, all drawn from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([pipe.generate(min(1000, num - i), generator=generator, steps=steps) for i in range(0, num, 1000)])


def sample_quality(pipes: dict[str, VQVAEPipeline], model: Classifier, test_features: Tensor, num: int,
                   seed: int, train: Tensor) -> list[dict[str, object]]:
    # The floor a perfect sampler would reach: real training digits against the test set.
    rows: list[dict[str, object]] = [{"prior": "(real training digits)",
                                      **judge(model, train[:num].float() / 255, test_features), "sampling_s": 0}]
    settings: list[tuple[str, str, int | None]] = [("causal", "causal", None)]
    settings += [(f"masked, {steps} steps", "masked", steps) for steps in (4, 8, 12)]
    for name, pipe_name, steps in settings:
        started = time.perf_counter()
        samples = generate_seeded(pipes[pipe_name], num, seed, steps)
        rows.append({"prior": name, **judge(model, samples, test_features),
                     "sampling_s": round(time.perf_counter() - started, 1)})
    return rows


def latency(pipes: dict[str, VQVAEPipeline], batches: list[int], threads: list[int],
            repeats: int) -> list[dict[str, object]]:
    """Median ms of ``prior.sample`` per batch size and torch thread count, the methods interleaved."""
    causal, masked = pipes["causal"].prior, pipes["masked"].prior
    methods: dict[str, Callable[[int], object]] = {
        "causal (KV cache)": lambda n: causal.sample(n, generator=torch.Generator().manual_seed(0)),
        "masked, 8 steps": lambda n: masked.sample(n, steps=8, generator=torch.Generator().manual_seed(0)),
        "masked, 4 steps": lambda n: masked.sample(n, steps=4, generator=torch.Generator().manual_seed(0)),
    }
    saved = torch.get_num_threads()
    rows = []
    try:
        for batch in batches:
            for count in threads:
                torch.set_num_threads(count)
                runs: dict[str, list[float]] = {name: [] for name in methods}
                for fn in methods.values():  # warm-up
                    fn(batch)
                for _ in range(repeats):
                    for name, fn in methods.items():
                        start = time.perf_counter()
                        fn(batch)
                        runs[name].append(time.perf_counter() - start)
                ms = {name: statistics.median(times) * 1e3 for name, times in runs.items()}
                rows.append({"batch": batch, "threads": count,
                             **{f"{name} ms": round(value, 2) for name, value in ms.items()},
                             "speed-up of masked, 8 steps": round(ms["causal (KV cache)"] / ms["masked, 8 steps"], 2),
                             "speed-up of masked, 4 steps": round(ms["causal (KV cache)"] / ms["masked, 4 steps"], 2)})
    finally:
        torch.set_num_threads(saved)
    return rows


def nearest_neighbour_completion(train: Tensor, test: Tensor) -> Tensor:
    """Each test digit's kept rows over the bottom rows of the training digit closest on the kept rows."""
    top_train = train[:, 0, :KEPT_ROWS].flatten(1).float() / 255
    top_test = test[:, 0, :KEPT_ROWS].flatten(1).float() / 255
    distances = torch.cdist(top_test, top_train)  # (N_test, N_train)
    nearest = distances.argmin(1)
    completed = test.clone()
    completed[:, :, KEPT_ROWS:] = train[nearest][:, :, KEPT_ROWS:]
    return completed.float() / 255


def inpainting(pipes: dict[str, VQVAEPipeline], model: Classifier, test_features: Tensor, images: Tensor,
               labels: Tensor, train: Tensor, seed: int) -> tuple[list[dict[str, object]], dict[str, Tensor]]:
    mask = torch.zeros(len(images), 1, 28, 28, dtype=torch.bool)
    mask[:, :, KEPT_ROWS:] = True
    x = images.float() / 255
    outputs: dict[str, Tensor] = {}
    for name in ("causal", "masked"):
        generator = torch.Generator().manual_seed(seed)
        outputs[name] = torch.cat([pipes[name].inpaint(x[i:i + 500], mask[i:i + 500], generator=generator)
                                   for i in range(0, len(x), 500)])
    outputs["nearest training neighbour"] = nearest_neighbour_completion(train, images)
    outputs["reconstruction (nothing redrawn)"] = pipes["causal"].reconstruct(x)
    rows = []
    for name, completed in outputs.items():
        probs, features = classify(model, completed)
        rows.append({"completion": name, "same_class_share": round(float((probs.argmax(-1) == labels).float().mean()),
                                                                   4),
                     "frechet": round(frechet_distance(features, test_features), 3)})
    return rows, outputs


def goal_lines(result: dict[str, object]) -> list[str]:
    """The issue's three goals, each with the measured value and whether it is met."""
    lines = []
    quality = {row["prior"]: row for row in result.get("quality", [])}  # type: ignore[attr-defined]
    if quality:
        ratio = float(quality["masked, 8 steps"]["frechet"]) / float(quality["causal"]["frechet"])
        lines.append(f"- Frechet distance, masked at 8 steps / causal: {ratio:.2f} (goal <= 1.5:"
                     f" {'met' if ratio <= 1.5 else 'NOT met'})")
    single = [row for row in result.get("latency", []) if row["batch"] == 1]  # type: ignore[attr-defined]
    if single:  # each prior at its faster thread count
        causal = min(float(row["causal (KV cache) ms"]) for row in single)
        masked = min(float(row["masked, 8 steps ms"]) for row in single)
        speed = causal / masked
        lines.append(f"- one image, masked at 8 steps vs cached causal, each at its faster thread count:"
                     f" {speed:.2f}x faster ({masked:.1f} against {causal:.1f} ms; goal >= 3x:"
                     f" {'met' if speed >= 3 else 'NOT met'})")
    inpainting = {row["completion"]: row for row in result.get("inpainting", [])}  # type: ignore[attr-defined]
    if inpainting:
        share = float(inpainting["masked"]["same_class_share"])
        lines.append(f"- inpainting, masked prior, same class: {share:.1%} (goal >= 88%:"
                     f" {'met' if share >= 0.88 else 'NOT met'})")
    return lines


def markdown(title: str, rows: list[dict[str, object]]) -> str:
    columns = list(rows[0])
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--causal", default="mnist", help="causal pipeline: a folder or a bundled name")
    parser.add_argument("--masked", default="mnist_masked", help="masked pipeline: a folder or a bundled name")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--num-inpaint", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per method and batch size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier", type=Path, default=Path("runs/mnist_classifier.safetensors"))
    parser.add_argument("--skip", nargs="*", default=[], choices=("quality", "latency", "inpainting"))
    parser.add_argument("--out", type=Path, help="also write the markdown tables here")
    parser.add_argument("--picture", type=Path, help="PNG: originals, masked inputs, masked and causal completions")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_x, _, test_x, test_y, model, test_features = mnist_judge(args.data_dir, args.classifier)
    pipes = {name: VQVAEPipeline.from_pretrained(source if Path(source).exists() else pretrained_path(source))
             for name, source in (("causal", args.causal), ("masked", args.masked))}
    header = (f"{cpu_name()}, {args.threads} torch threads (latency: also 1), torch {torch.__version__}")
    result: dict[str, object] = {"machine": header}
    text = [header, ""]
    if "quality" not in args.skip:
        rows = sample_quality(pipes, model, test_features, args.num_samples, args.seed, train_x)
        result["quality"] = rows
        text.append(markdown(f"Sample quality, {args.num_samples} samples without labels", rows))
    if "latency" not in args.skip:
        rows = latency(pipes, [1, 64], sorted({1, args.threads}), args.repeats)
        result["latency"] = rows
        text.append(markdown(f"Latency of prior.sample, median of {args.repeats} runs", rows))
    if "inpainting" not in args.skip:
        count = args.num_inpaint
        rows, outputs = inpainting(pipes, model, test_features, test_x[:count], test_y[:count], train_x, args.seed)
        result["inpainting"] = rows
        text.append(markdown(f"Inpainting rows {KEPT_ROWS}-27 of the first {count} test digits, no label", rows))
        if args.picture:
            shown = slice(0, 12)
            originals = test_x[shown].float() / 255
            masked = originals.clone()
            masked[:, :, KEPT_ROWS:] = 0.5
            save_grid(torch.cat([originals, masked, outputs["masked"][shown], outputs["causal"][shown]]),
                      args.picture, nrow=12)
    goals = goal_lines(result)
    result["goals"] = goals
    text += ["### Goals", "", *goals, ""]
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text("\n".join(text))
    return result


if __name__ == "__main__":
    main()
