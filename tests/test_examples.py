"""The examples work end to end: the plugin package, the training scripts' quick modes, sampling.

The plugin is installed for real (``pip install --target`` into a temporary folder) and used in
fresh interpreters with that folder on ``PYTHONPATH``, so this process's registries never see it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from discrete_latents import VQVAE, CausalPrior, CausalPriorConfig, VQVAEConfig, VQVAEPipeline

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PLUGIN = EXAMPLES / "plugin"
MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/mnist"  # the real files, where present
CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte + R, G, B planes
CIFAR_BATCH_RECORDS = 10_000  # every official batch file holds exactly this many records


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# The plugin package (examples/plugin)
# --------------------------------------------------------------------------------------------
def _pip_install(target: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
               "--quiet", *options, "--target", str(target), str(PLUGIN)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)


def _install_by_hand(target: Path) -> None:
    """What pip would install, built from the plugin's own pyproject.toml (no build backend needed)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    shutil.copytree(PLUGIN / "src" / "dl_example_plugin", target / "dl_example_plugin")
    info = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = []
    for group, entries in project["entry-points"].items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in entries.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the plugin package is installed into, for ``PYTHONPATH``.

    A real ``pip install --target``: offline with the installed hatchling first, then with build
    isolation (fetches hatchling from the index). Only where neither works (no hatchling and no
    network) is the installed layout written by hand from the plugin's pyproject.toml.
    """
    target = tmp_path_factory.mktemp("plugin_site")
    attempts = (("--no-build-isolation", "--no-index"), ("--retries", "0", "--timeout", "15"))
    for options in attempts:
        if _pip_install(target, *options).returncode == 0:
            return target
        shutil.rmtree(target)
        target.mkdir()
    _install_by_hand(target)
    return target


def run_python(code: str, site: Path, *args: str, **env_changes: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with the plugin's install folder on ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if k != "DISCRETE_LATENTS_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **env_changes)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=ROOT)


TRAIN_AND_SAVE = """
    import json, sys
    from pathlib import Path

    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    from discrete_latents import PRIORS, QUANTIZERS, VQVAE, VQVAEConfig, VQVAEPipeline

    folder, reference = Path(sys.argv[1]), sys.argv[2]
    assert "lfq_sign" in QUANTIZERS.names() and "bigram" in PRIORS.names()
    assert "dl_example_plugin" not in sys.modules, "listing names must not import the plugin"
    torch.manual_seed(0)

    # Both components by registry name only: no import of the plugin here.
    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer="lfq_sign", quantizer_kwargs={"bits": 4}))
    assert type(vqvae.quantizer).__name__ == "SignQuantizer" and vqvae.codebook_size == 16
    Bigram = PRIORS.get("bigram")
    assert Bigram.__name__ == "BigramPrior" and PRIORS.name_of(Bigram) == "bigram"
    prior = Bigram(Bigram.config_class(codebook_size=16, grid_size=(7, 7), num_classes=10))

    # One training step of both stages.
    images, labels = torch.rand(8, 1, 28, 28), torch.arange(8)
    params = list(vqvae.parameters()) + list(prior.parameters())
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    out = vqvae(images)
    loss = F.mse_loss(out.reconstruction, images) + out.loss + prior(out.indices, labels).loss
    loss.backward()
    optimizer.step()
    moved = [not torch.equal(a, p.detach()) for a, p in zip(before, params)]
    assert all(moved), f"{moved.count(False)} of {len(moved)} parameters did not move"

    pipe = VQVAEPipeline(vqvae=vqvae, prior=prior).eval()
    pipe.save_pretrained(folder)
    index = json.loads((folder / "pipeline.json").read_text())
    assert index["components"]["prior"] == {"class_name": "BigramPrior", "registry_name": "bigram"}, index
    assert json.loads((folder / "vqvae" / "config.json").read_text())["quantizer"] == "lfq_sign"

    codes = pipe.encode(images)
    save_file({
        "images": images, "labels": labels, "codes": codes, "reconstruction": pipe.reconstruct(images),
        "logits": prior(codes, labels).logits,
        "samples": prior.sample(4, labels=torch.tensor([1, 3, 5, 7]), guidance_scale=2.0,
                                generator=torch.Generator().manual_seed(0)),
    }, reference)
    print("SAVED")
"""

LOAD_AND_COMPARE = """
    import sys

    import torch
    from safetensors.torch import load_file

    from discrete_latents import VQVAEPipeline

    folder, reference = sys.argv[1], load_file(sys.argv[2])
    assert "dl_example_plugin" not in sys.modules
    pipe = VQVAEPipeline.from_pretrained(folder)  # both classes found by their saved names
    assert "dl_example_plugin" in sys.modules, "loading by name imports the plugin through its entry point"
    assert type(pipe.vqvae.quantizer).__name__ == "SignQuantizer"
    assert type(pipe.prior).__name__ == "BigramPrior"
    images, labels = reference["images"], reference["labels"]
    codes = pipe.encode(images)
    assert torch.equal(codes, reference["codes"])
    assert torch.equal(pipe.reconstruct(images), reference["reconstruction"])
    assert torch.equal(pipe.prior(codes, labels).logits, reference["logits"])
    samples = pipe.prior.sample(4, labels=torch.tensor([1, 3, 5, 7]), guidance_scale=2.0,
                                generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, reference["samples"])
    print("EQUAL")
"""


def test_plugin_installs_with_its_entry_points(plugin_site: Path) -> None:
    assert (plugin_site / "dl_example_plugin" / "sign_quantizer.py").is_file()
    result = run_python("""
        from importlib.metadata import entry_points
        for group in ("discrete_latents.quantizers", "discrete_latents.priors"):
            for entry in entry_points(group=group):
                print(group, entry.name, entry.value)
    """, plugin_site)
    assert result.returncode == 0, result.stderr
    assert "discrete_latents.quantizers lfq_sign dl_example_plugin.sign_quantizer:SignQuantizer" in result.stdout
    assert "discrete_latents.priors bigram dl_example_plugin.bigram_prior:BigramPrior" in result.stdout


def test_plugin_components_train_save_and_load_by_name(plugin_site: Path, tmp_path: Path) -> None:
    folder, reference = tmp_path / "pipeline", tmp_path / "reference.safetensors"
    saved = run_python(TRAIN_AND_SAVE, plugin_site, str(folder), str(reference))
    assert saved.returncode == 0 and "SAVED" in saved.stdout, saved.stderr
    loaded = run_python(LOAD_AND_COMPARE, plugin_site, str(folder), str(reference))
    assert loaded.returncode == 0 and "EQUAL" in loaded.stdout, loaded.stderr
    # With plugin discovery off, the same folder names a prior nobody provides.
    refused = run_python("""
        import sys
        from discrete_latents import VQVAEPipeline
        from discrete_latents.errors import UnknownComponentError
        try:
            VQVAEPipeline.from_pretrained(sys.argv[1])
        except UnknownComponentError as err:
            print("REFUSED", err)
    """, plugin_site, str(folder), DISCRETE_LATENTS_DISABLE_PLUGINS="1")
    assert refused.returncode == 0, refused.stderr
    assert "REFUSED" in refused.stdout and "'bigram'" in refused.stdout


def test_plugin_passes_the_library_contract_tests(plugin_site: Path, tmp_path: Path) -> None:
    report = tmp_path / "contract.xml"
    env = {k: v for k, v in os.environ.items() if k != "DISCRETE_LATENTS_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin_site), env.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_quantizers.py",
         "tests/test_priors.py", "tests/test_hub.py", "tests/test_pipeline.py", "-k", "lfq_sign or bigram",
         f"--junitxml={report}"],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    cases = ET.parse(report).getroot().iter("testcase")
    names = [case.get("name", "") for case in cases if not any(child.tag in ("failure", "error", "skipped")
                                                                for child in case)]
    # The contract is parametrized over every registered name, so the plugin's names appear.
    assert sum("lfq_sign" in name for name in names) >= 10, names
    assert sum("bigram" in name for name in names) >= 15, names


# --------------------------------------------------------------------------------------------
# Training scripts, quick mode
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"the MNIST files are not in {MNIST_DIR}")
def test_mnist_train_quick_mode(tmp_path: Path) -> None:
    example = load_example("mnist_train")
    out = tmp_path / "run"
    metrics = example.main(out_dir=str(out), data_dir=str(MNIST_DIR), quick=True, num_threads=1)
    assert metrics["codebook_size"] == 100 and 1 <= metrics["codes_used"] <= 100
    assert metrics["psnr"] > 5 and np.isfinite(metrics["nll_bits_per_image"])
    pipe = VQVAEPipeline.from_pretrained(out / "pipeline")
    assert pipe.vqvae.grid_size == (7, 7) and pipe.prior.num_classes == 10
    assert pipe.metadata["preset"] == "mnist"
    images = pipe.generate(2, labels=torch.tensor([3, 7]), generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 1, 28, 28)
    assert (out / "pipeline" / "samples.png").is_file()


def write_cifar10(root: Path, records: int, seed: int = 0) -> Path:
    """The binary CIFAR-10 layout with random first ``records`` per batch file.

    The training loop reads official-size batch files only (it has no way to pass
    ``strict_size=False``), so each file has the full 10,000-record length; records after the
    first ``records`` are zeros (label 0, a black image), left as holes in a sparse file so the
    test writes little. Quick mode reads only the first ones.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rows = rng.integers(0, 256, size=(records, CIFAR_RECORD), dtype=np.uint8)
        rows[:, 0] = rng.integers(0, 10, size=records)  # labels 0-9
        # Smooth images (a colour per 8x8 block) rather than noise, so there is something to learn.
        blocks = rng.integers(0, 256, size=(records, 3, 4, 4), dtype=np.uint8)
        rows[:, 1:] = blocks.repeat(8, axis=2).repeat(8, axis=3).reshape(records, -1)
        path = folder / name
        with path.open("wb") as file:
            file.write(rows.tobytes())
            file.truncate(CIFAR_RECORD * CIFAR_BATCH_RECORDS)
    return root


@pytest.mark.slow
def test_cifar10_train_quick_mode(tmp_path: Path) -> None:
    example = load_example("cifar10_train")
    data = write_cifar10(tmp_path / "cifar10", records=1000)
    out = tmp_path / "run"
    metrics = example.main(out_dir=str(out), data_dir=str(data), quick=True, num_threads=1)
    assert metrics["codebook_size"] == 512 and 1 <= metrics["codes_used"] <= 512
    assert np.isfinite(metrics["psnr"]) and np.isfinite(metrics["nll_bits_per_image"])
    pipe = VQVAEPipeline.from_pretrained(out / "pipeline")
    assert pipe.vqvae.config.in_channels == 3 and pipe.vqvae.grid_size == (8, 8)
    assert pipe.prior.num_classes == 10 and pipe.metadata["preset"] == "cifar10"
    images = pipe.generate(2, labels=torch.tensor([0, 9]), generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 32, 32)
    assert json.loads((out / "metrics.json").read_text())["codebook_size"] == 512


@pytest.mark.slow
def test_image_folder_train_quick_mode(tmp_path: Path) -> None:
    example = load_example("image_folder_train")
    out = tmp_path / "run"
    metrics = example.main(out_dir=str(out), quick=True, num_threads=1, hflip=True, random_crop=True, ema_decay=0.9)
    assert (tmp_path / "run-images" / "train" / "00000.png").is_file()  # the generated folder, beside the run
    assert metrics["codebook_size"] == 512 and np.isfinite(metrics["psnr"])
    pipe = VQVAEPipeline.from_pretrained(out / "pipeline")
    assert pipe.vqvae.config.image_shape == (32, 48) and pipe.vqvae.grid_size == (8, 12)
    assert pipe.prior.num_classes == 0 and pipe.metadata["dataset"] == "folder"
    assert pipe.generate(2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 32, 48)


# --------------------------------------------------------------------------------------------
# Sampling one digit
# --------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_pipeline(tmp_path: Path) -> Path:
    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16}))
    prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(7, 7), n_layer=1, n_head=2, n_embd=16,
                                          num_classes=10, label_dropout=0.1))
    with torch.no_grad():  # large random weights: untrained, yet the label changes the draw
        for param in prior.parameters():
            param.normal_(std=1.0)
    return VQVAEPipeline(vqvae=vqvae, prior=prior).save_pretrained(tmp_path / "pipeline")


def test_sample_digit_draws_the_chosen_class_into_a_grid(tiny_pipeline: Path, tmp_path: Path) -> None:
    example = load_example("sample_digit")
    out = tmp_path / "threes.png"
    images = example.main(digit=3, num_samples=6, guidance_scale=2.5, seed=1, out=str(out), pipeline=str(tiny_pipeline),
                          nrow=3)
    assert images.shape == (6, 1, 28, 28) and float(images.min()) >= 0 and float(images.max()) <= 1
    with Image.open(out) as grid:  # 3 columns x 2 rows of 28 px with 2 px padding
        assert grid.size == (3 * 30 + 2, 2 * 30 + 2)
    # Exactly the pipeline's guided draw for label 3 with that seed.
    pipe = VQVAEPipeline.from_pretrained(tiny_pipeline)
    expected = pipe.generate(6, labels=torch.full((6,), 3), guidance_scale=2.5,
                             generator=torch.Generator().manual_seed(1))
    assert torch.equal(images, expected)
    other = pipe.generate(6, labels=torch.full((6,), 8), guidance_scale=2.5, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(images, other)
    with pytest.raises(ValueError, match="digit"):
        example.main(digit=10, num_samples=2, out=str(tmp_path / "x.png"), pipeline=str(tiny_pipeline))


def test_sample_digit_from_the_bundled_pipeline(tmp_path: Path) -> None:
    example = load_example("sample_digit")
    out = tmp_path / "sevens.png"
    images = example.main(digit=7, num_samples=4, out=str(out))
    assert images.shape == (4, 1, 28, 28) and out.is_file()
