"""Where the masked prior's gap to the causal prior comes from: its sampler or its conditionals.

On the bundled ``mnist_masked`` and ``mnist`` pipelines (the same VQ-VAE):

1. Sampler rules (``--num-samples`` digits, labels drawn by class frequency, Frechet distance with
   the project's classifier measure): which hidden codes a step keeps. "paper" keeps the draws
   with the highest log-probability plus annealed Gumbel noise (`MaskedPrior.sample`); "most
   certain" keeps the positions whose distribution peaks highest, whatever was drawn there;
   "random order" keeps uniformly random positions. With one code per step (49 steps), "random
   order" is exact ancestral sampling from the model's conditionals.
2. The bottom three code rows of ``--num-grids`` test digits given the top four: their negative
   log-likelihood in nats under the causal prior (exact) and under the masked prior read as an
   autoregressive model in raster order (each code given the top rows and the bottom codes
   before it), no label.
3. Inpainting those rows with each prior, with no label and with the true label: the share of
   completions in the original digit's class, and the most frequent confusions.

    python benchmarks/masked_diagnostics.py --data-dir ../shared/data/mnist --out docs/masked_diagnostics.md
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_masked import generate_seeded, markdown, mnist_judge
from einops import rearrange
from sample_quality import classify, frechet_distance
from torch import Tensor

from discrete_latents import MaskedPrior, VQVAEPipeline, pretrained_path
from discrete_latents._sampling import sample_logits
from discrete_latents.training.process import cpu_name

KEPT_CODE_ROWS = 4  # of 7: pixel rows 0-15 kept
PIXELS_PER_CODE = 4  # 28 pixels over 7 codes


@torch.no_grad()
def sample_with_rule(prior: MaskedPrior, labels: Tensor, steps: int, rule: str, generator: torch.Generator) -> Tensor:
    """Iterative parallel decoding as in `MaskedPrior.sample`, but ``rule`` picks the codes each step keeps."""
    if rule == "paper":
        return prior.sample(len(labels), labels=labels, steps=steps, generator=generator)
    batch, length = len(labels), prior.num_codes
    tokens = torch.full((batch, length), prior.mask_id)
    hidden = torch.ones(batch, length, dtype=torch.bool)
    for step in range(steps):
        logits = rearrange(prior._logits(tokens.view(batch, *prior.grid_size), labels).float(), "b h w k -> b (h w) k")
        drawn = torch.where(hidden, sample_logits(logits.flatten(0, 1), generator=generator).view(batch, length),
                            tokens)
        if rule == "most certain":
            score = logits.log_softmax(-1).amax(-1)
        else:  # random order
            score = torch.rand(batch, length, generator=generator)
        remain = min(math.floor(length * math.cos(math.pi / 2 * (step + 1) / steps)), length - step - 1)
        rank = score.masked_fill(~hidden, math.inf).argsort(dim=1, stable=True).argsort(dim=1)
        hidden = rank < max(remain, 0)
        tokens = drawn.masked_fill(hidden, prior.mask_id)
    return tokens.view(batch, *prior.grid_size)


@torch.no_grad()
def bottom_rows_nll(causal: torch.nn.Module, masked: MaskedPrior, codes: Tensor) -> dict[str, float]:
    """Mean nats of the bottom code rows given the top ones, no label, raster order."""
    batch, (height, width) = len(codes), masked.grid_size
    first = KEPT_CODE_ROWS * width
    flat = codes.flatten(1)
    causal_logits = causal.eval()(codes).logits.flatten(1, 2).float()
    causal_nll = F.cross_entropy(causal_logits[:, first:].transpose(1, 2), flat[:, first:], reduction="none")
    masked_nll = torch.zeros(batch)
    for position in range(first, height * width):  # each bottom code given the top rows and the codes before it
        hidden = torch.zeros_like(flat, dtype=torch.bool)
        hidden[:, position:] = True
        logits = masked._logits(flat.masked_fill(hidden, masked.mask_id).view_as(codes),
                                torch.full((batch,), masked.null_label)).flatten(1, 2)[:, position].float()
        masked_nll += F.cross_entropy(logits, flat[:, position], reduction="none")
    return {"causal (exact)": round(float(causal_nll.sum(1).mean()), 2),
            "masked (raster chain of its conditionals)": round(float(masked_nll.mean()), 2)}


def inpainting(pipe: VQVAEPipeline, model: torch.nn.Module, images: Tensor, labels: Tensor,
               given: bool) -> dict[str, object]:
    mask = torch.zeros(len(images), 1, 28, 28, dtype=torch.bool)
    mask[:, :, KEPT_CODE_ROWS * PIXELS_PER_CODE:] = True
    completions = pipe.inpaint(images, mask, labels=labels if given else None,
                               generator=torch.Generator().manual_seed(0))
    predicted = classify(model, completions)[0].argmax(-1)
    pairs = torch.zeros(10, 10, dtype=torch.long)
    pairs.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    pairs.fill_diagonal_(0)
    top = pairs.flatten().topk(4)
    return {"same_class_share": round(float((predicted == labels).float().mean()), 3),
            "top_confusions (digit->completion: count)": ", ".join(
                f"{int(i) // 10}->{int(i) % 10}: {int(c)}" for c, i in zip(top.values, top.indices) if c > 0)}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--num-grids", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--classifier", type=Path, default=Path("runs/mnist_classifier.safetensors"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, _, test_x, test_y, model, test_features = mnist_judge(args.data_dir, args.classifier)
    causal_pipe = VQVAEPipeline.from_pretrained(pretrained_path("mnist"))
    masked_pipe = VQVAEPipeline.from_pretrained(pretrained_path("mnist_masked"))
    masked: MaskedPrior = masked_pipe.prior.eval()  # type: ignore[assignment]
    result: dict[str, object] = {"machine": f"{cpu_name()}, torch {torch.__version__}"}

    samplers = []
    for steps, rule in [(8, "paper"), (8, "most certain"), (8, "random order"), (49, "paper"), (49, "random order")]:
        generator = torch.Generator().manual_seed(0)
        images = []
        for start in range(0, args.num_samples, 1000):
            labels = masked.draw_labels(min(1000, args.num_samples - start), generator)
            images.append(masked_pipe.decode(sample_with_rule(masked, labels, steps, rule, generator)))
        features = classify(model, torch.cat(images))[1]
        samplers.append({"steps": steps, "rule": rule, "frechet": round(frechet_distance(features, test_features), 3)})
    causal_images = generate_seeded(causal_pipe, args.num_samples, seed=0)
    samplers.append({"steps": 49, "rule": "causal prior (raster order, exact)",
                     "frechet": round(frechet_distance(classify(model, causal_images)[1], test_features), 3)})
    result["samplers"] = samplers

    images, labels = test_x[:args.num_grids].float() / 255, test_y[:args.num_grids].long()
    result["bottom_rows_nll_nats"] = bottom_rows_nll(causal_pipe.prior, masked, causal_pipe.encode(images))
    result["inpainting"] = [{"prior": name, "label": "true label" if given else "none",
                             **inpainting(pipe, model, images, labels, given)}
                            for name, pipe in (("causal", causal_pipe), ("masked", masked_pipe))
                            for given in (False, True)]
    print(json.dumps(result, indent=2))
    if args.out:
        nll = result["bottom_rows_nll_nats"]
        text = [str(result["machine"]), "", markdown(f"Sampler rules, {args.num_samples} samples", samplers),
                markdown(f"Bottom three code rows given the top four, {args.num_grids} test digits, no label (nats)",
                         [{"prior": k, "nll": v} for k, v in nll.items()]),  # type: ignore[attr-defined]
                markdown(f"Inpainting the bottom 12 pixel rows, {args.num_grids} test digits",
                         result["inpainting"])]  # type: ignore[arg-type]
        args.out.write_text("\n".join(text))
    return result


if __name__ == "__main__":
    main()
