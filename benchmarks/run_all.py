"""Run every benchmark and collect the tables into docs/benchmarks.md.

    python benchmarks/run_all.py                   # CPU (and the GPU too, when CUDA is available)
    python benchmarks/run_all.py --quick           # a smoke run with few repetitions

Run it on an otherwise idle machine: the timings are medians, but a background job still skews them.
The quantizer comparison needs vector-quantize-pytorch and the sampling comparison needs
transformers (both installed for the benchmark only, see each script's docstring).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from discrete_latents import pretrained_path
from discrete_latents.training.process import cpu_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run(script: str, *args: str) -> str:
    command = [sys.executable, str(HERE / script), *args]
    print("$", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return f"`{script}` failed:\n\n```\n{result.stderr[-2000:]}\n```\n"
    return result.stdout


def reproduction_section(run_dir: Path) -> str:
    """Wall time of the full MNIST run, as its trainer recorded it: a run in ``run_dir/mnist``, else the bundled one.

    The run itself takes about 40 minutes, so it is not repeated here: ``python examples/mnist_train.py``.
    """
    for folder in (run_dir / "mnist" / "pipeline", pretrained_path("mnist")):
        index = folder / "pipeline.json"
        if index.is_file():
            metadata = json.loads(index.read_text())["metadata"]
            training = metadata["training"]
            shown = index.relative_to(ROOT) if index.is_relative_to(ROOT) else index
            return (f"## Full MNIST reproduction\n\n`{metadata.get('command', 'python examples/mnist_train.py')}`"
                    f" ({training['vqvae_epochs']} + {training['prior_epochs']} epochs, {training['device']},"
                    f" torch {training['torch']}): **{training['wall_time_minutes']} min** wall time"
                    f" ({training.get('wall_time_note', 'measured by the trainer')}), as recorded in"
                    f" `{shown}`.\n")
    return "## Full MNIST reproduction\n\nNo trained pipeline found; run `python examples/mnist_train.py`.\n"


def main(quick: bool = False, out: Path = ROOT / "docs" / "benchmarks.md", run_dir: Path = ROOT / "runs") -> None:
    repeats = ["--repeats", "3"] if quick else []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    sections = [f"# Benchmarks\n\nMachine: {platform.platform()}, {cpu_name()},"
                f" Python {platform.python_version()}, torch {torch.__version__}."
                " Produced by `python benchmarks/run_all.py`.\n"]
    for device in devices:
        sections.append(f"## Training throughput ({device})\n\n" + run("bench_training.py", "--device", device,
                                                                        *repeats))
        sections.append(f"## Prior sampling ({device})\n\n" + run("bench_sampling.py", "--device", device,
                                                                   *repeats))
    sections.append("## Quantizers against vector-quantize-pytorch (cpu)\n\n" + run("bench_quantizers.py", *repeats))
    sections.append(reproduction_section(run_dir))
    out.write_text("\n".join(sections))
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    main(args.quick, args.out)
