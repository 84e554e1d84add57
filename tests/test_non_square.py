"""Images of any height and width: configs, the VQ-VAE, every prior and the pipeline's save/load."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from discrete_latents import PRIORS, VQVAE, VQVAEConfig
from discrete_latents._pipeline import VQVAEPipeline
from discrete_latents.errors import ConfigError


def tall_config(**overrides: object) -> VQVAEConfig:
    # 3x24x40 RGB images, f = 4: a 6x10 code grid
    fields: dict[str, object] = dict(in_channels=3, image_size=(24, 40), channels=(8, 16), latent_dim=8,
                                     quantizer="vq", quantizer_kwargs={"codebook_size": 16})
    fields.update(overrides)
    return VQVAEConfig(**fields)  # type: ignore[arg-type]


def small_prior(name: str, grid: tuple[int, int]):
    cls = PRIORS.get(name)
    names = {f.name for f in dataclasses.fields(cls.config_class)}
    extra = {"n_layer": 1, "n_head": 2, "n_embd": 16, "hidden_channels": 8}
    return cls(cls.config_class(codebook_size=16, grid_size=grid, **{k: v for k, v in extra.items() if k in names}))


def test_config_takes_an_int_or_height_and_width() -> None:
    assert VQVAEConfig(image_size=28, channels=(8, 16)).grid_size == (7, 7)
    config = tall_config()
    assert config.image_shape == (24, 40) and config.grid_size == (6, 10)
    assert VQVAEConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.to_dict()["image_size"] == [24, 40]
    for bad in ((24, 42), (0, 40), (24,), (24, 40, 8)):
        with pytest.raises(ConfigError, match="image_size"):
            tall_config(image_size=bad)


def test_a_config_saved_before_attention_existed_loads_without_it() -> None:
    data = VQVAEConfig(channels=(8, 16)).to_dict()
    del data["attention"]
    assert VQVAEConfig.from_dict(data).attention is False
    data = VQVAEConfig(channels=(8, 16)).to_dict()
    del data["latent_dim"]  # other fields stay required
    with pytest.raises(ConfigError, match="missing key"):
        VQVAEConfig.from_dict(data)


@pytest.mark.parametrize("attention", [False, True])
def test_vqvae_round_trips_non_square_images(attention: bool, tmp_path: Path) -> None:
    model = VQVAE(tall_config(attention=attention)).eval()
    images = torch.rand(2, 3, 24, 40)
    out = model(images)
    assert out.reconstruction.shape == (2, 3, 24, 40) and out.indices.shape == (2, 6, 10)
    assert model.decode(out.indices).shape == (2, 3, 24, 40)
    assert model.encode((images * 255).to(torch.uint8)).shape == (2, 6, 10)
    with pytest.raises(ValueError, match=r"expected 24x40 images"):
        model(torch.rand(2, 3, 40, 24))  # transposed
    model.save_pretrained(tmp_path / "vqvae")
    loaded = VQVAE.from_pretrained(tmp_path / "vqvae").eval()
    assert loaded.config == model.config
    assert torch.equal(loaded.encode(images), out.indices)


def test_attention_is_a_global_block_at_the_lowest_resolution() -> None:
    plain, attending = VQVAE(tall_config()), VQVAE(tall_config(attention=True))
    extra = set(attending.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith(("encoder.attention.", "decoder.attention.")) for k in extra)
    assert set(plain.state_dict()) <= set(attending.state_dict())  # old checkpoints keep their names
    # Global: a change in one corner of the image moves the encoder's output in the opposite corner.
    # (Without residual blocks, whose GroupNorm statistics are global too, the plain encoder is local.)
    plain, attending = VQVAE(tall_config(num_res_blocks=0)), VQVAE(tall_config(num_res_blocks=0, attention=True))
    encoder = attending.encoder.eval()
    x = torch.rand(1, 3, 24, 40)
    y = x.clone()
    y[..., :4, :4] = 1 - y[..., :4, :4]
    far = (encoder(x) - encoder(y))[..., -1, -1].abs().max()
    assert far > 1e-4
    local = (plain.encoder.eval()(x) - plain.encoder(y))[..., -1, -1].abs().max()
    assert local == 0  # without it, 2x2 stride-2 patches never reach that far


@pytest.mark.parametrize("name", PRIORS.names())
def test_priors_model_and_sample_non_square_grids(name: str, tmp_path: Path) -> None:
    prior = small_prior(name, (3, 5)).eval()
    codes = torch.randint(0, 16, (2, 3, 5))
    out = prior(codes)
    assert out.logits.shape == (2, 3, 5, 16) and torch.isfinite(out.loss)
    sampled = prior.sample(2, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (2, 3, 5)
    prior.save_pretrained(tmp_path / "prior")
    loaded = type(prior).from_pretrained(tmp_path / "prior").eval()
    assert torch.equal(loaded.sample(2, generator=torch.Generator().manual_seed(0)), sampled)


def test_pipeline_generates_and_reloads_non_square_images(tmp_path: Path) -> None:
    pipe = VQVAEPipeline(vqvae=VQVAE(tall_config()), prior=small_prior("causal_transformer", (6, 10))).eval()
    images = pipe.generate(2, generator=torch.Generator().manual_seed(1))
    assert images.shape == (2, 3, 24, 40)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = VQVAEPipeline.from_pretrained(tmp_path / "pipe")
    assert torch.equal(loaded.generate(2, generator=torch.Generator().manual_seed(1)), images)
    assert "3x24x40 images -> a 6x10 grid" in (tmp_path / "pipe" / "README.md").read_text()
    with pytest.raises(ConfigError, match="grid_size"):  # a prior over the transposed grid does not fit
        VQVAEPipeline(vqvae=VQVAE(tall_config()), prior=small_prior("causal_transformer", (10, 6)))
