"""VQVAEPipeline: construction checks, inference, save -> load round trips, pipeline.json strictness,
the model card, loading by repo id from the Hugging Face cache, mocked pushes, image helpers and
the pretrained pipelines shipped in the package. Offline: any socket connection fails a test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from PIL import Image

import discrete_latents._pretrained as pretrained_module
from discrete_latents import PRIORS, VQVAE, CausalPrior, CausalPriorConfig, VQVAEConfig
from discrete_latents._pipeline import PIPELINE_FORMAT_VERSION, VQVAEPipeline
from discrete_latents._pretrained import available_pretrained, pretrained_path
from discrete_latents.errors import CheckpointFormatError, ConfigError, NonFiniteError, UnknownComponentError
from discrete_latents.images import make_grid, save_grid, to_pil_images

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
SMALL = {"n_layer": 2, "n_head": 2, "n_embd": 16, "hidden_channels": 16, "kernel_size": 3}
METADATA = {"preset": "mnist", "dataset": "mnist", "training": {"vqvae_epochs": 3, "lr": 0.0003},
            "metrics": {"psnr_db": 21.75, "perplexity": 14.5, "prior_nll_bits_per_image": 120.125},
            "sample_quality": {"frechet_no_labels": 2.5, "seeds": [0, 1]}}


# fixtures and helpers ------------------------------------------------------------------------------
pytestmark = pytest.mark.usefixtures("no_network")  # everything must work from disk


def tiny_prior(name: str, **overrides):
    cls = PRIORS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    kwargs = {"codebook_size": 16, "grid_size": (7, 7), **{k: v for k, v in SMALL.items() if k in fields}, **overrides}
    return cls(cls.config_class(**kwargs))


@pytest.fixture
def pipe(tiny_vqvae_config: VQVAEConfig, tiny_prior_config: CausalPriorConfig) -> VQVAEPipeline:
    return VQVAEPipeline(vqvae=VQVAE(tiny_vqvae_config), prior=CausalPrior(tiny_prior_config), metadata=METADATA)


@pytest.fixture
def saved(tmp_path: Path, pipe: VQVAEPipeline) -> Path:
    pipe.save_pretrained(tmp_path / "pipe")
    return tmp_path / "pipe"


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_module(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def edit_index(folder: Path, change) -> None:
    path = folder / "pipeline.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def populate_cache(cache: Path, repo_id: str, source: Path, commit: str = COMMIT) -> None:
    """The huggingface_hub cache layout: blobs, snapshots/<commit>/ symlinks, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


# construction --------------------------------------------------------------------------------------
def test_components_must_fit_together(tiny_vqvae_config: VQVAEConfig, tiny_prior_config: CausalPriorConfig) -> None:
    vqvae = VQVAE(tiny_vqvae_config)
    with pytest.raises(ValueError, match=r"codebook_size 32 does not match the VQ-VAE's 16"):
        VQVAEPipeline(vqvae=vqvae, prior=CausalPrior(tiny_prior_config.replace(codebook_size=32)))
    with pytest.raises(ValueError, match=r"grid_size \(4, 4\) does not match .* \(7, 7\)"):
        VQVAEPipeline(vqvae=vqvae, prior=CausalPrior(tiny_prior_config.replace(grid_size=(4, 4))))
    vqvae.quantizer.index_shape = (2,)  # a quantizer with two codebooks per cell
    with pytest.raises(ValueError, match="index_shape"):
        VQVAEPipeline(vqvae=vqvae, prior=CausalPrior(tiny_prior_config))
    with pytest.raises(TypeError, match="prior"):
        VQVAEPipeline(vqvae=VQVAE(tiny_vqvae_config), prior=VQVAE(tiny_vqvae_config))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="vqvae"):
        VQVAEPipeline(vqvae=CausalPrior(tiny_prior_config), prior=CausalPrior(tiny_prior_config))  # type: ignore


def test_metadata_is_validated_and_copied(pipe: VQVAEPipeline) -> None:
    with pytest.raises(ConfigError, match="metadata.preset"):
        pipe.metadata = {"preset": 3}
    with pytest.raises(ConfigError, match="metadata"):
        pipe.metadata = {"metrics": {"psnr": torch.tensor(1.0)}}
    source = {"metrics": {"psnr_db": 20.0}}
    pipe.metadata = source
    source["metrics"]["psnr_db"] = 0.0
    assert pipe.metadata == {"metrics": {"psnr_db": 20.0}}


# inference -----------------------------------------------------------------------------------------
def test_generate_shape_range_and_reproducibility(pipe: VQVAEPipeline) -> None:
    images = pipe.generate(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 28, 28) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    again = pipe(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, again) and not again.requires_grad
    assert torch.equal(pipe.generate(2, temperature=0), pipe.generate(2, temperature=0, top_k=3, top_p=0.5))
    with pytest.raises(ValueError, match="temperature"):
        pipe.generate(2, temperature=-1.0)


def test_generate_matches_prior_then_decoder(pipe: VQVAEPipeline) -> None:
    codes = pipe.prior.sample(2, top_k=4, generator=torch.Generator().manual_seed(5))
    expected = pipe.vqvae.decode(codes)
    assert torch.equal(pipe.generate(2, top_k=4, generator=torch.Generator().manual_seed(5)), expected)


def test_conditional_generation_with_guidance(tiny_vqvae_config, tiny_prior_config) -> None:
    pipe = VQVAEPipeline(VQVAE(tiny_vqvae_config), CausalPrior(tiny_prior_config.replace(num_classes=3)))
    labels = torch.tensor([0, 1, 2])
    images = pipe.generate(3, labels=labels, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="labels"):
        pipe.generate(3, labels=torch.tensor([0, 1, 7]))


def test_encode_decode_reconstruct(pipe: VQVAEPipeline) -> None:
    images = torch.rand(2, 1, 28, 28)
    codes = pipe.encode(images)
    assert codes.shape == (2, 7, 7) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    decoded = pipe.decode(codes)
    assert decoded.shape == (2, 1, 28, 28) and float(decoded.min()) >= 0 and float(decoded.max()) <= 1
    assert torch.equal(pipe.reconstruct(images), decoded)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        pipe.decode(torch.full((1, 7, 7), 16))
    with pytest.raises(ValueError, match="7x7"):
        pipe.decode(torch.zeros(1, 5, 5, dtype=torch.long))
    with pytest.raises(NonFiniteError):
        pipe.encode(torch.full((1, 1, 28, 28), float("nan")))


def test_inference_restores_training_mode(pipe: VQVAEPipeline) -> None:
    pipe.vqvae.train()
    pipe.prior.train()
    pipe.generate(1)
    pipe.reconstruct(torch.rand(1, 1, 28, 28))
    assert pipe.vqvae.training and pipe.prior.training
    assert pipe.eval() is pipe and not pipe.vqvae.training and not pipe.prior.training
    assert pipe.to("cpu") is pipe and pipe.device == torch.device("cpu")


# save -> load --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRIORS.names())
def test_round_trip_for_each_prior(tmp_path: Path, tiny_vqvae_config: VQVAEConfig, name: str) -> None:
    pipe = VQVAEPipeline(VQVAE(tiny_vqvae_config), tiny_prior(name), metadata=METADATA).eval()
    pipe.save_pretrained(tmp_path)
    loaded = VQVAEPipeline.from_pretrained(tmp_path)
    assert type(loaded.prior) is PRIORS.get(name)
    assert loaded.vqvae.config == pipe.vqvae.config and loaded.prior.config == pipe.prior.config
    assert_same_module(pipe.vqvae, loaded.vqvae)
    assert_same_module(pipe.prior, loaded.prior)
    assert loaded.metadata == METADATA
    images = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded.encode(images), pipe.encode(images))
    first = pipe.generate(2, generator=torch.Generator().manual_seed(11))
    assert torch.equal(loaded.generate(2, generator=torch.Generator().manual_seed(11)), first)
    assert not loaded.vqvae.training and not loaded.prior.training
    assert loaded.pretrained_source.folder == tmp_path and loaded.pretrained_source.commit is None


def test_folder_layout_and_index(saved: Path, pipe: VQVAEPipeline) -> None:
    assert sorted(files_under(saved)) == ["README.md", "pipeline.json", "prior/config.json",
                                          "prior/model.safetensors", "vqvae/config.json", "vqvae/model.safetensors"]
    index = json.loads((saved / "pipeline.json").read_text())
    assert index["_class_name"] == "VQVAEPipeline" and index["_version"] == PIPELINE_FORMAT_VERSION
    assert index["components"] == {"vqvae": {"class_name": "VQVAE", "registry_name": "vqvae"},
                                   "prior": {"class_name": "CausalPrior", "registry_name": "causal_transformer"}}
    assert index["metadata"] == METADATA
    assert not (saved / "model_index.json").exists()


def test_save_load_save_is_byte_identical(saved: Path, tmp_path: Path) -> None:
    VQVAEPipeline.from_pretrained(saved).save_pretrained(tmp_path / "again")
    assert files_under(tmp_path / "again") == files_under(saved)


def test_card_images(tmp_path: Path, tiny_vqvae_config, tiny_prior_config) -> None:
    pipe = VQVAEPipeline(VQVAE(tiny_vqvae_config), CausalPrior(tiny_prior_config.replace(num_classes=3)))
    pipe.save_pretrained(tmp_path / "a", images=pipe.card_images())
    with Image.open(tmp_path / "a" / "samples.png") as image:
        # 16 samples rounded up to 18 = 6 rows of one column per class: 3 x 28 + 4 x 2 wide.
        assert image.size == (3 * 28 + 4 * 2, 6 * 28 + 7 * 2) and image.mode == "L"
    assert "![Samples](samples.png)" in (tmp_path / "a" / "README.md").read_text()
    pipe.save_pretrained(tmp_path / "b", images=pipe.card_images())  # seeded: the same grid again
    assert (tmp_path / "b" / "samples.png").read_bytes() == (tmp_path / "a" / "samples.png").read_bytes()
    given = torch.rand(4, 1, 28, 28)
    pipe.save_pretrained(tmp_path / "c", images=given)
    with Image.open(tmp_path / "c" / "samples.png") as image:
        assert image.size == (2 * 28 + 3 * 2, 2 * 28 + 3 * 2)
    with pytest.raises(ValueError, match="channels"):
        pipe.save_pretrained(tmp_path / "e", images=torch.rand(4, 2, 28, 28))
    assert not (tmp_path / "e").exists()  # checked before anything is written
    pipe.save_pretrained(tmp_path / "d")
    assert not (tmp_path / "d" / "samples.png").exists()
    assert "![Samples]" not in (tmp_path / "d" / "README.md").read_text()


def test_model_card(saved: Path) -> None:
    card = ModelCard.load(saved / "README.md")
    assert card.data.library_name == "discrete_latents" and card.data.license == "mit"
    assert {"discrete_latents", "vq-vae"} <= set(card.data.tags) and card.data.datasets == ["mnist"]
    text = card.text
    assert "| Metric | Value |\n|---|---|\n| perplexity | 14.5 |\n| prior_nll_bits_per_image | 120.125 |\n" \
           "| psnr_db | 21.75 |" in text  # the metrics table, rows in sorted order
    assert "| vqvae_epochs | 3 |" in text and "| lr | 0.0003 |" in text
    assert "## Sample quality" in text and "| frechet_no_labels | 2.5 |\n| seeds | [0, 1] |" in text
    assert "`mnist` preset" in text and "`causal_transformer`" in text
    assert "VQVAEPipeline.from_pretrained(" in text and "arxiv.org/abs/1711.00937" in text


@pytest.mark.parametrize("name", PRIORS.names())
def test_each_component_loads_on_its_own_from_a_pipeline_folder(saved: Path, tmp_path, tiny_vqvae_config,
                                                                 name: str) -> None:
    pipe = VQVAEPipeline(VQVAE(tiny_vqvae_config), tiny_prior(name))
    pipe.save_pretrained(tmp_path / name)
    assert_same_module(pipe.vqvae, VQVAE.from_pretrained(tmp_path / name / "vqvae"))
    assert_same_module(pipe.prior, PRIORS.get(name).from_pretrained(tmp_path / name, subfolder="prior"))


def test_plugin_prior_saved_by_name_loads_by_name(tmp_path: Path, tiny_vqvae_config, tiny_prior_config,
                                                  restore_registries) -> None:
    @PRIORS.register("test_plugin_prior")
    class PluginPrior(CausalPrior):
        pass

    pipe = VQVAEPipeline(VQVAE(tiny_vqvae_config), PluginPrior(tiny_prior_config))
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "pipeline.json").read_text())
    assert index["components"]["prior"] == {"class_name": "PluginPrior", "registry_name": "test_plugin_prior"}
    loaded = VQVAEPipeline.from_pretrained(tmp_path)
    assert type(loaded.prior) is PluginPrior
    assert_same_module(pipe.prior, loaded.prior)


def test_an_unregistered_prior_cannot_be_saved_or_pushed(tmp_path: Path, monkeypatch, tiny_vqvae_config,
                                                        tiny_prior_config) -> None:
    class Unregistered(CausalPrior):  # inherits registry_name from CausalPrior, but is another class
        pass

    pipe = VQVAEPipeline(VQVAE(tiny_vqvae_config), Unregistered(tiny_prior_config))
    with pytest.raises(UnknownComponentError, match="not registered"):
        pipe.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()

    def create_repo(*args, **kwargs):
        raise AssertionError("a pipeline that cannot be saved must not create a repo")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    with pytest.raises(UnknownComponentError, match="not registered"):
        pipe.push_to_hub("user/never-created")


# strict pipeline.json (HB-06, CF-09) ---------------------------------------------------------------
def test_missing_component_folder_names_the_component(saved: Path) -> None:
    for path in sorted((saved / "prior").iterdir()):
        path.unlink()
    (saved / "prior").rmdir()
    with pytest.raises(ConfigError, match=r"component 'prior': its folder prior/ is missing"):
        VQVAEPipeline.from_pretrained(saved)


def test_unknown_registry_key_names_the_component(saved: Path) -> None:
    edit_index(saved, lambda d: d["components"]["prior"].update(registry_name="causal_transformr"))
    with pytest.raises(UnknownComponentError, match=r"component 'prior'.*did you mean 'causal_transformer'"):
        VQVAEPipeline.from_pretrained(saved)
    edit_index(saved, lambda d: d["components"]["prior"].update(registry_name="causal_transformer"))
    edit_index(saved, lambda d: d["components"]["vqvae"].update(registry_name="vqgan"))
    with pytest.raises(UnknownComponentError, match="component 'vqvae'"):
        VQVAEPipeline.from_pretrained(saved)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["components"].pop("prior"), "component 'prior' is missing"),
    (lambda d: d["components"].update(decoder={"class_name": "X", "registry_name": "x"}),
     "unknown component 'decoder'"),
    (lambda d: d["components"]["prior"].update(registry_name="os:system"), "not a registry name"),
    (lambda d: d["components"]["prior"].update(class_name="PixelCNNPrior"), "builds CausalPrior"),
    (lambda d: d["components"]["prior"].update(_target_="os.system"), "component 'prior' must be"),
    (lambda d: d.update(_class_name="DiffusionPipeline"), "expected 'VQVAEPipeline'"),
    (lambda d: d.update(_version="1"), "_version must be a positive integer"),
    (lambda d: d.update(_version=0), "_version must be a positive integer"),
    (lambda d: d.update(metadta={}), "did you mean 'metadata'"),
    (lambda d: d.update(metadata=[1]), "metadata"),
])
def test_malformed_index(saved: Path, change, message: str) -> None:
    edit_index(saved, change)
    with pytest.raises(ConfigError, match=message):
        VQVAEPipeline.from_pretrained(saved)


def test_index_from_a_newer_version_asks_to_upgrade(saved: Path) -> None:
    edit_index(saved, lambda d: d.update(_version=PIPELINE_FORMAT_VERSION + 1, library_version="9.0.0"))
    with pytest.raises(ConfigError, match=r"newer discrete_latents \(9.0.0.*upgrade discrete_latents"):
        VQVAEPipeline.from_pretrained(saved)


def test_component_config_from_a_newer_version_asks_to_upgrade(saved: Path) -> None:
    path = saved / "prior" / "config.json"
    path.write_text(path.read_text().replace('"_version": 1', '"_version": 7'))
    with pytest.raises(ConfigError, match="upgrade discrete_latents"):
        VQVAEPipeline.from_pretrained(saved)


def test_missing_or_foreign_index(saved: Path) -> None:
    (saved / "pipeline.json").rename(saved / "model_index.json")
    with pytest.raises(ConfigError, match="model_index.json, a diffusers"):
        VQVAEPipeline.from_pretrained(saved)
    (saved / "model_index.json").unlink()
    with pytest.raises(ConfigError, match="pipeline.json not found"):
        VQVAEPipeline.from_pretrained(saved)
    with pytest.raises(ConfigError, match="a single component: load it with VQVAE.from_pretrained"):
        VQVAEPipeline.from_pretrained(saved / "vqvae")


def test_component_weights_must_match(saved: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    VQVAE(tiny_vqvae_config.replace(latent_dim=4)).save_pretrained(saved / "other")
    (saved / "other" / "model.safetensors").replace(saved / "vqvae" / "model.safetensors")
    with pytest.raises(CheckpointFormatError, match=r"vqvae/model.safetensors.*shape"):
        VQVAEPipeline.from_pretrained(saved)
    (saved / "vqvae" / "model.safetensors").unlink()
    (saved / "vqvae" / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(CheckpointFormatError, match="pytorch_model.bin"):
        VQVAEPipeline.from_pretrained(saved)


def test_saved_components_that_do_not_fit(saved: Path, tiny_prior_config: CausalPriorConfig) -> None:
    CausalPrior(tiny_prior_config.replace(codebook_size=32)).save_pretrained(saved / "prior")
    with pytest.raises(ConfigError, match="do not fit together.*codebook_size 32"):
        VQVAEPipeline.from_pretrained(saved)


# Hub: cache, offline, push -------------------------------------------------------------------------
@pytest.mark.parametrize("revision", [None, COMMIT])
def test_load_by_repo_id_offline_from_the_cache(saved: Path, tmp_path: Path, pipe, offline, revision) -> None:
    populate_cache(tmp_path / "cache", "user/tiny-pipeline", saved)
    loaded = VQVAEPipeline.from_pretrained("user/tiny-pipeline", cache_dir=tmp_path / "cache", revision=revision)
    assert_same_module(pipe.vqvae, loaded.vqvae)
    assert_same_module(pipe.prior, loaded.prior)
    assert loaded.pretrained_source.commit == COMMIT
    first = pipe.generate(2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded.generate(2, generator=torch.Generator().manual_seed(2)), first)


def test_offline_nothing_cached(tmp_path: Path, offline) -> None:
    with pytest.raises(huggingface_hub.errors.LocalEntryNotFoundError, match="not cached.*offline"):
        VQVAEPipeline.from_pretrained("user/not-here", cache_dir=tmp_path)


def test_local_files_only_with_missing_weights(saved: Path, tmp_path: Path) -> None:
    (saved / "prior" / "model.safetensors").unlink()
    populate_cache(tmp_path / "cache", "user/partial", saved)
    with pytest.raises(CheckpointFormatError, match=r"model.safetensors not found in .*prior"):
        VQVAEPipeline.from_pretrained("user/partial", cache_dir=tmp_path / "cache", local_files_only=True)


def test_push_to_hub_is_one_commit_of_exactly_what_save_writes(pushes, tmp_path: Path, pipe) -> None:
    repos, commits = pushes.repos, pushes.commits
    info = pipe.push_to_hub("user/tiny-pipeline", images=pipe.card_images(), commit_message="add pipeline")
    assert info.oid == pushes.oid and len(commits) == 1 and len(repos) == 1
    assert repos[0]["exist_ok"] is True and repos[0]["private"] is False
    pipe.save_pretrained(tmp_path, images=pipe.card_images(), repo_id="user/tiny-pipeline")
    assert commits[0]["files"] == files_under(tmp_path)
    assert sorted(commits[0]["files"]) == ["README.md", "pipeline.json", "prior/config.json",
                                           "prior/model.safetensors", "samples.png", "vqvae/config.json",
                                           "vqvae/model.safetensors"]
    assert commits[0]["commit_message"] == "add pipeline"
    assert b"VQVAEPipeline.from_pretrained('user/tiny-pipeline')" in commits[0]["files"]["README.md"]


# images --------------------------------------------------------------------------------------------
def test_to_pil_images() -> None:
    gray = torch.zeros(2, 1, 3, 4)
    gray[0, 0, 1, 2] = 1.0
    images = to_pil_images(gray)
    assert [(im.mode, im.size) for im in images] == [("L", (4, 3))] * 2
    assert images[0].getpixel((2, 1)) == 255 and images[0].getpixel((0, 0)) == 0
    rgb = torch.zeros(3, 2, 2)
    rgb[1] = 0.5  # a single (C, H, W) image
    (image,) = to_pil_images(rgb)
    assert image.mode == "RGB" and image.getpixel((1, 1)) == (0, 128, 0)
    with pytest.raises(ValueError, match="channels"):
        to_pil_images(torch.rand(1, 2, 4, 4))
    with pytest.raises(TypeError, match="float"):
        to_pil_images(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(NonFiniteError):
        to_pil_images(torch.full((1, 1, 2, 2), float("nan")))


def test_make_grid_and_save_grid(tmp_path: Path) -> None:
    batch = torch.ones(5, 3, 4, 6)
    grid = make_grid(batch, nrow=2, padding=1)
    assert grid.size == (2 * 6 + 3, 3 * 4 + 4) and grid.mode == "RGB"
    assert grid.getpixel((0, 0)) == (0, 0, 0) and grid.getpixel((1, 1)) == (255, 255, 255)
    assert grid.getpixel((1 + 7, 1 + 2 * 5)) == (0, 0, 0)  # the empty sixth slot stays padding
    path = save_grid(batch, tmp_path / "grid.png", nrow=2, padding=1)
    with Image.open(path) as image:
        assert image.size == grid.size and image.tobytes() == grid.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # written atomically, no leftovers
    with pytest.raises(ValueError, match="nrow"):
        make_grid(batch, nrow=0)


# pretrained pipelines in the package ---------------------------------------------------------------
def test_pretrained_path_finds_a_shipped_pipeline(tmp_path: Path, monkeypatch, pipe) -> None:
    monkeypatch.setattr(pretrained_module, "_root", lambda: tmp_path)
    pipe.save_pretrained(tmp_path / "tiny")
    (tmp_path / "empty").mkdir()
    assert available_pretrained() == ["tiny"]
    assert pretrained_path("tiny") == tmp_path / "tiny"
    loaded = VQVAEPipeline.from_pretrained(pretrained_path("tiny"))
    assert_same_module(pipe.prior, loaded.prior)
    with pytest.raises(UnknownComponentError, match=r"pipeline.json is missing.*available here: \['tiny'\]"):
        pretrained_path("empty")
    with pytest.raises(UnknownComponentError, match=r"unknown pretrained pipeline 'cifar100'; available: \['tiny'\]"):
        pretrained_path("cifar100")
    with pytest.raises(UnknownComponentError, match="unknown"):
        pretrained_path("../tiny")


def test_the_mnist_pipeline_ships_inside_the_package() -> None:
    import discrete_latents

    package = Path(discrete_latents.__file__).parent
    if (package / "pretrained" / "mnist" / "pipeline.json").is_file():
        path = pretrained_path("mnist")
        assert path == package / "pretrained" / "mnist"
        pipe = VQVAEPipeline.from_pretrained(path)
        assert pipe.vqvae.config.image_size == 28 and pipe.prior.grid_size == pipe.vqvae.grid_size
        assert pipe.generate(2, labels=torch.tensor([3, 7]) if pipe.prior.num_classes else None).shape == \
            (2, 1, 28, 28)
    else:  # not placed yet: the error must say what is missing and where
        with pytest.raises(UnknownComponentError, match=r"'mnist'.*pretrained/mnist/pipeline.json is missing"):
            pretrained_path("mnist")
