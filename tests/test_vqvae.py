"""The VQ-VAE assembled from its parts: shapes, gradients, presets and the seed's own bug."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from discrete_latents import VQVAE, Decoder, Encoder, VQVAEConfig
from discrete_latents._layers import ResBlock
from discrete_latents.errors import ConfigError


@pytest.mark.parametrize("preset, shape, grid", [("mnist", (1, 28, 28), (7, 7)), ("cifar10", (3, 32, 32), (8, 8))])
def test_presets_map_images_to_their_code_grids(preset: str, shape: tuple[int, ...], grid: tuple[int, int]) -> None:
    model = VQVAE.from_preset(preset, channels=(8, 16), num_res_blocks=1)
    out = model(torch.rand(2, *shape))
    assert out.reconstruction.shape == (2, *shape)
    assert out.indices.shape == (2, *grid) and out.indices.dtype == torch.int64
    assert model.grid_size == grid


def test_mnist_preset_is_the_seeds_model() -> None:
    model = VQVAE.from_preset("mnist")
    assert model.codebook_size == 100 and model.config.latent_dim == 32 and model.grid_size == (7, 7)
    assert [type(m).__name__ for m in model.encoder.down] == ["Downsample", "Downsample"]
    assert all(d.conv.kernel_size == (2, 2) and d.conv.stride == (2, 2) for d in model.encoder.down)
    assert len(model.encoder.res) == 1 and isinstance(model.encoder.res[0], ResBlock)
    assert all(u.conv.kernel_size == (2, 2) for u in model.decoder.up)


def test_resblock_normalises_after_the_addition() -> None:
    block = ResBlock(8, groups=2)
    x = torch.randn(3, 8, 5, 5) * 10 + 4
    expected = F.silu(block.norm(x + block.conv2(F.silu(block.conv1(x)))))
    assert torch.allclose(block(x), expected)


def test_every_encoder_parameter_gets_a_gradient_through_the_codes(tiny_vqvae_config: VQVAEConfig) -> None:
    """The seed's code wrote the codes into z_e in place, so its encoder never learned."""
    model = VQVAE(tiny_vqvae_config)
    images = torch.rand(4, 1, 28, 28)
    out = model(images)
    (F.mse_loss(out.reconstruction, images) + out.loss).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert out.quantizer.codebook_loss > 0 and out.quantizer.commitment_loss > 0


def test_reconstruction_gradient_alone_reaches_the_encoder(tiny_vqvae_config: VQVAEConfig) -> None:
    model = VQVAE(tiny_vqvae_config)
    images = torch.rand(4, 1, 28, 28)
    F.mse_loss(model(images).reconstruction, images).backward()  # no quantizer loss at all
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_beta_weighs_the_encoder_side_term_only(tiny_vqvae_config: VQVAEConfig) -> None:
    grads = {}
    for beta in (0.25, 1.0):
        torch.manual_seed(0)
        config = tiny_vqvae_config.replace(quantizer_kwargs={"codebook_size": 16, "beta": beta})
        model = VQVAE(config)
        model(torch.rand(4, 1, 28, 28)).loss.backward()
        grads[beta] = (model.encoder.proj.weight.grad.clone(), model.quantizer.weight.grad.clone())
    assert torch.allclose(grads[1.0][0], grads[0.25][0] * 4, rtol=1e-4, atol=1e-9)  # encoder: scales with beta
    assert torch.allclose(grads[1.0][1], grads[0.25][1])  # codebook: independent of beta


def test_reconstructions_are_images_in_the_unit_range(tiny_vqvae_config: VQVAEConfig) -> None:
    model = VQVAE(tiny_vqvae_config)
    with torch.no_grad():
        model.decoder.up[-1].conv.bias.fill_(5.0)  # push the raw output far above 1
    out = model(torch.rand(2, 1, 28, 28))
    assert out.reconstruction.max() <= 1 and out.reconstruction.min() >= 0
    assert model.reconstruct(torch.rand(2, 1, 28, 28)).max() <= 1


def test_clamped_pixels_still_pass_gradients_toward_the_target(tiny_vqvae_config: VQVAEConfig) -> None:
    model = VQVAE(tiny_vqvae_config)
    with torch.no_grad():
        model.decoder.up[-1].conv.bias.fill_(-5.0)  # every pixel clamps to 0
    images = torch.ones(2, 1, 28, 28)  # white targets: the loss must pull the output up
    F.mse_loss(model(images).reconstruction, images).backward()
    assert model.decoder.up[-1].conv.bias.grad.item() < 0


def test_encode_then_decode_equals_eval_forward(tiny_vqvae_config: VQVAEConfig) -> None:
    model = VQVAE(tiny_vqvae_config.replace(quantizer="vq_ema")).eval()
    images = torch.rand(3, 1, 28, 28)
    codes = model.encode(images)
    assert torch.equal(codes, model(images).indices)
    assert torch.allclose(model.decode(codes), model(images).reconstruction)


def test_encode_is_pure_even_in_training_mode(tiny_vqvae_config: VQVAEConfig) -> None:
    model = VQVAE(tiny_vqvae_config.replace(quantizer="vq_ema")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.encode(torch.rand(3, 1, 28, 28))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and model.quantizer.training


def test_seeded_construction_is_reproducible() -> None:
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16})).eval()
    images = torch.linspace(0, 1, 2 * 28 * 28).reshape(2, 1, 28, 28)
    first = model(images)
    torch.manual_seed(0)
    again = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16})).eval()
    assert torch.equal(again(images).indices, first.indices)
    assert torch.equal(again(images).reconstruction, first.reconstruction)


def test_components_are_chosen_by_registry_name(tiny_vqvae_config: VQVAEConfig) -> None:
    model = VQVAE(tiny_vqvae_config.replace(quantizer="vq_cosine"))
    assert type(model.quantizer).__name__ == "CosineVectorQuantizer"
    assert isinstance(model.encoder, Encoder) and isinstance(model.decoder, Decoder)


def test_quantizer_kwargs_typos_get_a_suggestion(tiny_vqvae_config: VQVAEConfig) -> None:
    with pytest.raises(ConfigError, match="did you mean.*'decay'"):
        VQVAE(tiny_vqvae_config.replace(quantizer="vq_ema", quantizer_kwargs={"codebook_size": 16, "decya": 0.9}))


def test_config_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="VQVAEConfig"):
        VQVAE({"channels": [8, 16]})  # type: ignore[arg-type]


@pytest.mark.parametrize("scale, shift, hint", [(255.0, 0.0, "divide uint8-range pixels by 255"),
                                                (2.0, -1.0, r"got values in \[-1")])
def test_images_outside_the_unit_range_are_refused(tiny_vqvae_config: VQVAEConfig, scale: float, shift: float,
                                                   hint: str) -> None:
    model = VQVAE(tiny_vqvae_config)
    images = torch.rand(2, 1, 28, 28) * scale + shift
    images[0, 0, 0, 0], images[0, 0, 0, 1] = shift, scale + shift  # make both extremes present
    with pytest.raises(ValueError, match=hint):
        model(images)
