"""The image codec on the 10,000 MNIST test digits: exactness, size against the prior's NLL, speed,
and rate-distortion against JPEG, WebP and AVIF (whole files written by Pillow).

Parts (``--parts``, default all):

* ``exact``: one 10,000-image file per coding mode (labels given, labels chosen by the encoder, "no label")
  decodes to exactly ``pipe.encode(images)``; and, batch by batch (500), ``pipe.decompress`` of
  ``pipe.compress(images)`` equals ``pipe.reconstruct(images)`` bit for bit. Also the mean bytes
  per image of those files against the prior's NLL in the same mode (the label's cost included).
* ``single``: every digit in a file of its own (header and checksum included), both modes; every
  ``--check-every``-th file is decoded back and checked.
* ``speed``: images per second of ``pipe.compress`` / ``pipe.decompress`` (and of the code-level
  ``compress_codes`` / ``decompress_codes``) on batches of 500 with ``--threads`` torch threads;
  the median of ``--repeats`` runs, modes interleaved.
* ``rd``: PSNR (10 log10(1 / MSE), MSE over every pixel of the set, 8-bit images) against mean
  bytes per image for this codec and a sweep of qualities of JPEG, WebP and AVIF.

Usage::

    python benchmarks/bench_codec.py --threads 1 --parts exact,single,rd --json benchmarks/results/codec.json \\
        --figure docs/images/codec_rate_distortion.png
    python benchmarks/bench_codec.py --threads 2 --parts speed --repeats 7 --json benchmarks/results/codec_speed.json

This measures; it asserts only exactness (a mismatch exits with status 1). Timings depend on the
machine and its load.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, features

import discrete_latents
from discrete_latents import VQVAEPipeline, codec
from discrete_latents.datasets import load_mnist
from discrete_latents.training.process import cpu_name

ROOT = Path(__file__).resolve().parents[1]
BATCH = 500
QUALITIES = {  # Pillow's quality settings, low to high
    "JPEG": [5, 10, 20, 30, 50, 70, 90],
    "WebP": [0, 5, 10, 20, 40, 60, 80, 95],
    "AVIF": [0, 10, 20, 40, 60, 80, 95],
}
SAVE_ARGS = {"JPEG": {"format": "JPEG"}, "WebP": {"format": "WEBP", "method": 6}, "AVIF": {"format": "AVIF"}}



def batches(count: int) -> list[slice]:
    return [slice(start, min(start + BATCH, count)) for start in range(0, count, BATCH)]


def psnr_8bit(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR over every pixel of the set, both uint8 (N, 28, 28)."""
    mse = float(np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)) / 255.0**2
    return 10 * math.log10(1 / mse)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def condition_costs(pipe: VQVAEPipeline, codes: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Bits per image under the prior: given the true label, in "no label" mode, and the cheapest
    condition in all (label cost included), computed with ``prior.nll`` (not the codec)."""
    prior = pipe.prior
    frequencies = np.array(prior.config.class_frequencies, dtype=np.float64)
    frequencies /= frequencies.sum()
    dropout = prior.config.label_dropout
    per_class = np.stack([np.concatenate([
        prior.bits_per_image(prior.nll(codes[s], torch.full((s.stop - s.start,), y))).double().numpy()  # type: ignore[union-attr]
        for s in batches(len(codes))]) for y in range(prior.num_classes)])
    no_label = np.concatenate([prior.bits_per_image(prior.nll(codes[s])).double().numpy()  # type: ignore[union-attr]
                               for s in batches(len(codes))])
    true = per_class[labels.numpy(), np.arange(len(codes))]
    chosen = np.minimum((per_class - np.log2((1 - dropout) * frequencies)[:, None]).min(0), no_label - np.log2(dropout))
    return {"true_label": true, "true_label_cost": -np.log2(frequencies[labels.numpy()]), "no_label": no_label,
            "chosen": chosen}


def part_exact_and_sizes(pipe: VQVAEPipeline, images: torch.Tensor, labels: torch.Tensor, codes: torch.Tensor,
                         results: dict[str, Any]) -> bool:
    ok = True
    mark = codec.fingerprint_of(pipe.vqvae, pipe.prior)
    count = len(images)
    for mode, given in (("labels", labels), ("chosen", None), ("no_label", None)):
        start = time.perf_counter()
        data = codec.compress_codes(pipe.prior, codes, given, fingerprint=mark, choose_labels=mode != "no_label")
        decoded = codec.decompress_codes(pipe.prior, data, fingerprint=mark)
        exact = torch.equal(decoded.codes, codes) and (given is None or torch.equal(decoded.labels, given))
        ok &= exact
        results[f"one_file_{mode}"] = {"bytes": len(data), "bytes_per_image": len(data) / count, "exact_codes": exact,
                                       "seconds": time.perf_counter() - start}
        print(f"one file, {mode}: {len(data)} bytes, {len(data) / count:.3f} per image, exact codes: {exact}",
              flush=True)
    # Through the images, batch by batch: decompress(compress(x)) == reconstruct(x), codes == encode(x).
    same_images = same_codes = 0
    for s in batches(count):
        batch = images[s].float() / 255
        restored = pipe.decompress(pipe.compress(batch, labels[s]))
        same_images += int(torch.equal(restored, pipe.reconstruct(batch)))
        encoded = pipe.encode(batch)
        same_codes += int(torch.equal(pipe.decompress_codes(pipe.compress_codes(encoded, labels[s])), encoded))
    ok &= same_images == same_codes == len(batches(count))
    results["batches_exact"] = {"batches": len(batches(count)), "images_equal_reconstruct": same_images,
                                "codes_equal_encode": same_codes}
    print(f"batches of {BATCH}: decompress == reconstruct in {same_images}/{len(batches(count))},"
          f" decompress_codes == encode in {same_codes}/{len(batches(count))}", flush=True)
    costs = condition_costs(pipe, codes, labels)
    nll = {"labels": float((costs["true_label"] + costs["true_label_cost"]).mean()),
           "chosen": float(costs["chosen"].mean()), "no_label": float(costs["no_label"].mean())}
    results["nll_bits_per_image"] = {"true_label": float(costs["true_label"].mean()),
                                     "true_label_plus_label_cost": nll["labels"],
                                     "no_label": float(costs["no_label"].mean()), "chosen": nll["chosen"]}
    for mode in ("labels", "chosen", "no_label"):
        measured = results[f"one_file_{mode}"]["bytes_per_image"]
        results[f"one_file_{mode}"]["nll_bytes_per_image"] = nll[mode] / 8
        results[f"one_file_{mode}"]["over_nll_percent"] = 100 * (measured / (nll[mode] / 8) - 1)
        print(f"{mode}: {measured:.3f} bytes per image, NLL {nll[mode] / 8:.3f}"
              f" (+{results[f'one_file_{mode}']['over_nll_percent']:.2f}%)", flush=True)
    return ok


def part_single(pipe: VQVAEPipeline, labels: torch.Tensor, codes: torch.Tensor, check_every: int,
                results: dict[str, Any]) -> bool:
    mark = codec.fingerprint_of(pipe.vqvae, pipe.prior)
    ok = True
    for mode in ("labels", "chosen"):
        sizes, exact, checked, start = [], 0, 0, time.perf_counter()
        for i in range(len(codes)):
            given = labels[i: i + 1] if mode == "labels" else None
            data = codec.compress_codes(pipe.prior, codes[i: i + 1], given, fingerprint=mark)
            sizes.append(len(data))
            if i % check_every == 0:  # decoding at batch 1 is slow; the one-file part checks every image
                checked += 1
                exact += int(torch.equal(codec.decompress_codes(pipe.prior, data, fingerprint=mark).codes,
                                         codes[i: i + 1]))
        ok &= exact == checked
        results[f"single_files_{mode}"] = {"mean_bytes": statistics.fmean(sizes), "min_bytes": min(sizes),
                                           "max_bytes": max(sizes), "decoded_exactly": exact, "decoded": checked,
                                           "files": len(codes), "seconds": time.perf_counter() - start}
        print(f"single-image files, {mode}: mean {statistics.fmean(sizes):.3f} bytes (min {min(sizes)},"
              f" max {max(sizes)}), decoded exactly {exact}/{checked}", flush=True)
    return ok


def part_speed(pipe: VQVAEPipeline, images: torch.Tensor, labels: torch.Tensor, repeats: int,
               results: dict[str, Any]) -> None:
    batch, given = images[:BATCH].float() / 255, labels[:BATCH]
    codes = pipe.encode(batch)
    streams = {"labels": pipe.compress(batch, given), "chosen": pipe.compress(batch),
               "no label": pipe.compress(batch, choose_labels=False)}
    tasks = {
        "compress, labels given": lambda: pipe.compress(batch, given),
        "compress, labels chosen": lambda: pipe.compress(batch),
        "compress, no label": lambda: pipe.compress(batch, choose_labels=False),
        "decompress, labels given": lambda: pipe.decompress(streams["labels"]),
        "decompress, labels chosen": lambda: pipe.decompress(streams["chosen"]),
        "decompress, no label": lambda: pipe.decompress(streams["no label"]),
        "compress_codes, labels given": lambda: pipe.compress_codes(codes, given),
        "decompress_codes, labels given": lambda: pipe.decompress_codes(streams["labels"]),
        "VQ-VAE encode": lambda: pipe.encode(batch),
        "VQ-VAE decode": lambda: pipe.decode(codes),
    }
    times: dict[str, list[float]] = {name: [] for name in tasks}
    cpu: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):  # interleaved, so drifting load hits every task alike
        for name, task in tasks.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            task()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    # CPU time per image (all threads) is less sensitive than wall time to other jobs on the machine.
    results["speed"] = {name: {"images_per_second": BATCH / statistics.median(t), "runs_seconds": t,
                               "cpu_ms_per_image": 1e3 * statistics.median(cpu[name]) / BATCH}
                        for name, t in times.items()}
    for name, t in times.items():
        print(f"{name}: {BATCH / statistics.median(t):.0f} images/s (median of {repeats}),"
              f" {results['speed'][name]['cpu_ms_per_image']:.2f} CPU ms per image", flush=True)


def sweep(originals: np.ndarray, name: str, quality: int) -> tuple[float, float]:
    """(mean bytes per file, PSNR) of one format at one quality over all images."""
    total, decoded = 0, np.empty_like(originals)
    for i, pixels in enumerate(originals):
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, quality=quality, **SAVE_ARGS[name])
        total += buffer.tell()
        buffer.seek(0)
        with Image.open(buffer) as opened:
            decoded[i] = np.asarray(opened.convert("L"))
    return total / len(originals), psnr_8bit(originals, decoded)


def part_rd(pipe: VQVAEPipeline, images: torch.Tensor, results: dict[str, Any]) -> None:
    originals = images[:, 0].numpy()
    recon = np.concatenate([to_uint8(pipe.reconstruct(images[s].float() / 255)) for s in batches(len(images))])
    results["codec_psnr_8bit"] = psnr_8bit(originals, recon)
    print(f"codec: PSNR {results['codec_psnr_8bit']:.2f} dB (8-bit reconstructions)", flush=True)
    curves: dict[str, list[dict[str, float]]] = {}
    for name, qualities in QUALITIES.items():
        if name == "AVIF" and not features.check("avif"):
            print("AVIF: this Pillow has no AVIF support; skipped", flush=True)
            continue
        curves[name] = []
        for quality in qualities:
            size, db = sweep(originals, name, quality)
            curves[name].append({"quality": quality, "bytes_per_image": size, "psnr": db})
            print(f"{name} q={quality}: {size:.1f} bytes, {db:.2f} dB", flush=True)
    results["rd"] = curves
    results["pillow"] = {"version": Image.__version__, "avif": features.version("avif"),
                         "webp": features.version("webp"), "jpeg": features.version("jpg")}


def bytes_at(curve: list[dict[str, float]], target: float) -> tuple[float, str]:
    """Bytes a format needs for PSNR ``target``: interpolated (PSNR linear in log bytes) between sweep points."""
    points = sorted((p["psnr"], p["bytes_per_image"]) for p in curve)
    if target <= points[0][0]:
        return points[0][1], f"its lowest quality already gives {points[0][0]:.2f} dB"
    for (db0, b0), (db1, b1) in zip(points, points[1:]):
        if db0 <= target <= db1:
            t = (target - db0) / (db1 - db0)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0))), "interpolated"
    return math.inf, f"never reaches {target:.2f} dB"


def figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    for name, curve in results["rd"].items():
        ax.plot([p["bytes_per_image"] for p in curve], [p["psnr"] for p in curve], marker="o", markersize=3,
                label=f"{name} (Pillow)")
    db = results["codec_psnr_8bit"]
    for key, label, marker in (("single_files_chosen", "this codec, one file per digit", "*"),
                               ("one_file_chosen", f"this codec, {results['images']:,} digits in one file", "D")):
        if key in results:
            size = results[key]["mean_bytes" if key.startswith("single") else "bytes_per_image"]
            ax.plot([size], [db], marker=marker, markersize=11 if marker == "*" else 6, linestyle="none",
                    color="black" if marker == "*" else "dimgray", label=label)
    ax.set_xscale("log")
    ticks = [20, 30, 50, 100, 200, 300, 500, 700]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("bytes per 28x28 digit (whole files)")
    ax.set_ylabel(f"PSNR (dB, over all {results['images']:,} test digits)")
    ax.set_title("MNIST test set: rate-distortion")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--limit", type=int, default=10_000, help="first N test digits")
    parser.add_argument("--parts", default="exact,single,speed,rd")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check-every", type=int, default=10, help="decode every n-th single-image file")
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--figure", default="", help="write the rate-distortion figure here (needs the rd part)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    pipe = VQVAEPipeline.from_pretrained(discrete_latents.pretrained_path("mnist"))
    images, labels = load_mnist(args.data_dir, "test")
    images, labels = images[: args.limit], labels[: args.limit].long()
    results: dict[str, Any] = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
                               "python": platform.python_version(), "images": len(images), "parts": sorted(parts)}
    print(f"CPU: {results['cpu']}, {args.threads} torch threads, torch {torch.__version__}, {len(images)} digits",
          flush=True)
    codes = torch.cat([pipe.encode(images[s].float() / 255) for s in batches(len(images))])
    ok = True
    if "exact" in parts:
        ok &= part_exact_and_sizes(pipe, images, labels, codes, results)
    if "single" in parts:
        ok &= part_single(pipe, labels, codes, args.check_every, results)
    if "speed" in parts:
        part_speed(pipe, images, labels, args.repeats, results)
    if "rd" in parts:
        part_rd(pipe, images, results)
        for name, curve in results["rd"].items():
            size, how = bytes_at(curve, results["codec_psnr_8bit"])
            results.setdefault("bytes_at_codec_psnr", {})[name] = {"bytes_per_image": size, "how": how}
            print(f"{name} at the codec's PSNR: {size:.1f} bytes per image ({how})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    if args.figure and "rd" in results:
        figure(results, Path(args.figure))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
