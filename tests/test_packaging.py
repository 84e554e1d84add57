"""The built wheel carries the library, its type marker and the bundled pretrained pipeline."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: use the installed hatchling (a dev dependency), so no network is needed.
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (found,) = out.glob("discrete_latents-*.whl")
    return found


def test_wheel_contains_the_pretrained_mnist_pipeline(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for part in ("pipeline.json", "README.md", "samples.png", "vqvae/config.json", "vqvae/model.safetensors",
                 "prior/config.json", "prior/model.safetensors"):
        assert f"discrete_latents/pretrained/mnist/{part}" in names, part


def test_wheel_is_typed_and_declares_the_console_script(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    assert "discrete_latents/py.typed" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "discrete-latents = discrete_latents.cli:main" in archive.read(entry_points).decode()
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


def test_the_public_namespace_is_the_api_and_a_few_modules() -> None:
    script = ("import types, discrete_latents as dl\n"
              "import discrete_latents.cli, discrete_latents.datasets, discrete_latents.training\n"
              "public = [n for n in dir(dl) if not n.startswith('_')]\n"
              "print([n for n in public if isinstance(getattr(dl, n), types.ModuleType)])\n"
              "print(sorted(n for n in public if not isinstance(getattr(dl, n), types.ModuleType)))\n"
              "print(sorted(set(dl.__all__) - {'__version__'}))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    modules, names, exported = (ast.literal_eval(line) for line in result.stdout.splitlines())
    assert len(modules) <= 8, modules
    assert set(modules) <= {"cli", "codec", "datasets", "errors", "images", "priors", "quantizers", "training"}
    assert names == exported  # everything else public is the exported API, listed in __all__
