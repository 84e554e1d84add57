"""Named model presets. ``mnist`` is the seed's model; ``cifar10`` scales it to 3x32x32 images."""

from __future__ import annotations

from ._configs import CausalPriorConfig, Config, MaskedPriorConfig, PixelCNNPriorConfig, VQVAEConfig
from .errors import ConfigError

# Codebook health for the seed's K = 100: k-means start, EMA codes, and restarts of codes used
# less than half as often as uniform use would give; this keeps all codes busy (perplexity > 80)
# where the paper's plain quantizer leaves most of them dead.
_MNIST_QUANTIZER = {"codebook_size": 100, "beta": 0.25, "decay": 0.99, "kmeans_init": True,
                    "restart_dead_codes": True, "dead_code_threshold": 0.5}

VQVAE_PRESETS: dict[str, VQVAEConfig] = {
    "mnist": VQVAEConfig(in_channels=1, image_size=28, channels=(128, 192), num_res_blocks=1, latent_dim=32,
                         quantizer="vq_ema", quantizer_kwargs=_MNIST_QUANTIZER),
    "cifar10": VQVAEConfig(in_channels=3, image_size=32, channels=(128, 256), num_res_blocks=2, latent_dim=64,
                           quantizer="vq_ema",
                           quantizer_kwargs={**_MNIST_QUANTIZER, "codebook_size": 512, "dead_code_threshold": 0.1}),
}

PRIOR_PRESETS: dict[str, Config] = {
    # The seed's prior (width 128, 8 heads, 3 blocks) made class-conditional. Sampling without
    # labels draws a class first, so the conditional model does all the work: a tenth of the
    # labels dropped is enough for guidance, and dropping half made conditional samples worse
    # (docs/results.md, sample quality).
    "mnist": CausalPriorConfig(codebook_size=100, grid_size=(7, 7), n_layer=3, n_head=8, n_embd=128,
                               num_classes=10, label_dropout=0.1),
    "mnist_pixelcnn": PixelCNNPriorConfig(codebook_size=100, grid_size=(7, 7), num_classes=10, label_dropout=0.1),
    # MaskGIT's bidirectional transformer at the causal prior's size, trained on the paper's
    # scattered masks (box masks traded sample quality for a point of inpainting: docs/masked_prior.md).
    # Inpainting without labels uses the "no label" mode, so it sees more dropped labels than the
    # causal prior.
    "mnist_masked": MaskedPriorConfig(codebook_size=100, grid_size=(7, 7), n_layer=3, n_head=8, n_embd=128,
                                      num_classes=10, label_dropout=0.2),
    "cifar10": CausalPriorConfig(codebook_size=512, grid_size=(8, 8), n_layer=6, n_head=8, n_embd=256,
                                 num_classes=10, label_dropout=0.1, dropout=0.1),
}


def _check_name(presets: dict[str, VQVAEConfig] | dict[str, Config], name: object, kind: str) -> None:
    if name not in presets:
        raise ConfigError(f"unknown {kind} preset {name!r}; available: {sorted(presets)}")


def vqvae_preset(name: str) -> VQVAEConfig:
    """The `VQVAEConfig` of preset ``name``."""
    _check_name(VQVAE_PRESETS, name, "VQ-VAE")
    return VQVAE_PRESETS[name]


def prior_preset(name: str) -> Config:
    """The prior config of preset ``name``."""
    _check_name(PRIOR_PRESETS, name, "prior")
    return PRIOR_PRESETS[name]
