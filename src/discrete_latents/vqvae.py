"""The VQ-VAE: encoder, quantizer and decoder, each chosen by registry name in one config."""

from __future__ import annotations

import difflib
import inspect

import torch
from torch import Tensor, nn

from .configs import VQVAEConfig
from .errors import ConfigError
from .hub import HubMixin
from .outputs import VQVAEOutput
from .quantizers import QUANTIZERS, BaseQuantizer
from .registry import DECODERS, ENCODERS
from .validation import check_images, check_indices


class VQVAE(nn.Module, HubMixin):
    """Vector-quantised variational autoencoder (van den Oord et al. 2017, arXiv 1711.00937).

    Images are float tensors in [0, 1], (B, C, H, W); they are mapped to [-1, 1] inside.

    Args:
        config: a :class:`~discrete_latents.VQVAEConfig`; default the seed's MNIST model.

    Example:
        >>> import torch
        >>> from discrete_latents import VQVAE, VQVAEConfig
        >>> model = VQVAE(VQVAEConfig(channels=(8, 16)))
        >>> out = model(torch.rand(4, 1, 28, 28))
        >>> out.reconstruction.shape, out.indices.shape
        (torch.Size([4, 1, 28, 28]), torch.Size([4, 7, 7]))
    """

    config_class = VQVAEConfig

    def __init__(self, config: VQVAEConfig | None = None) -> None:
        super().__init__()
        if config is None:
            config = VQVAEConfig()
        if not isinstance(config, VQVAEConfig):
            raise TypeError(f"config: expected a VQVAEConfig, got {type(config).__name__}")
        self.config = config
        shape = dict(in_channels=config.in_channels, channels=config.channels, latent_dim=config.latent_dim,
                     num_res_blocks=config.num_res_blocks, norm_groups=config.norm_groups)
        self.encoder = ENCODERS.create(config.encoder, **shape)
        self.decoder = DECODERS.create(config.decoder, **shape)
        try:
            quantizer = QUANTIZERS.create(config.quantizer, dim=config.latent_dim, **config.quantizer_kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"VQVAEConfig.quantizer_kwargs {config.quantizer_kwargs} do not fit quantizer"
                              f" {config.quantizer!r}: {err}{_suggest_kwargs(config)}") from None
        self.quantizer: BaseQuantizer = quantizer

    @classmethod
    def from_preset(cls, name: str, **overrides: object) -> VQVAE:
        """Build an untrained model from a named preset (``"mnist"``, ``"cifar10"``), fields overridable."""
        from .presets import vqvae_preset

        return cls(vqvae_preset(name).replace(**overrides))

    @property
    def grid_size(self) -> tuple[int, int]:
        """(h, w) of the code grid."""
        return self.config.grid_size

    @property
    def codebook_size(self) -> int:
        """K, the number of ids per grid cell."""
        return self.quantizer.codebook_size

    def _check(self, images: object) -> Tensor:
        return check_images(images, self.config.in_channels, self.config.image_size)

    def forward(self, images: Tensor) -> VQVAEOutput:
        """Reconstruct images through the codes.

        Args:
            images: (B, C, H, W) floats in [0, 1].

        Returns:
            :class:`~discrete_latents.VQVAEOutput` with ``reconstruction`` (B, C, H, W) and the
            quantizer's ``indices`` (B, h, w) and ``loss``.
        """
        z = self.encoder(self._check(images) * 2 - 1)
        quantized = self.quantizer(z)
        return VQVAEOutput(self._to_images(self.decoder(quantized.quantized)), quantized.indices, quantized.loss,
                           quantized)

    @staticmethod
    def _to_images(decoded: Tensor) -> Tensor:
        """Decoder output on the [-1, 1] scale -> images clamped to [0, 1].

        The clamp passes gradients straight through, so the loss sees exactly the error of the
        returned images: a background pixel predicted at -0.1 costs nothing (it shows as 0), while
        a stroke predicted too dark is still pulled up. Plain MSE on the unclamped output would
        spend capacity on landing exactly on 0 and 1, where most MNIST pixels sit.
        """
        images = decoded * 0.5 + 0.5
        return images + (images.clamp(0, 1) - images).detach()

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images in [0, 1] -> (B, h, w) int64 code ids; never updates statistics."""
        z = self.encoder(self._check(images) * 2 - 1)
        was_training = self.quantizer.training
        self.quantizer.eval()  # encoding is pure: no EMA update, no restarts
        try:
            return self.quantizer(z).indices
        finally:
            self.quantizer.train(was_training)

    @torch.no_grad()
    def decode_indices(self, indices: Tensor) -> Tensor:
        """(B, h, w) code ids -> (B, C, H, W) images clamped to [0, 1]."""
        indices = check_indices(indices, self.codebook_size, self.grid_size, trailing=self.quantizer.index_shape)
        codes = self.quantizer.indices_to_codes(indices)
        return self._to_images(self.decoder(codes))

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        """Encode then decode: (B, C, H, W) in [0, 1] -> the same shape, clamped to [0, 1]."""
        return self.decode_indices(self.encode(images))


def _suggest_kwargs(config: VQVAEConfig) -> str:
    """A "did you mean" for misspelled quantizer_kwargs, from the quantizer's signature."""
    accepted: set[str] = set()
    for cls in QUANTIZERS.get(config.quantizer).__mro__:
        if "__init__" in vars(cls):
            init = vars(cls)["__init__"]
            accepted |= set(inspect.signature(init).parameters) - {"self", "dim", "args", "kwargs", "health"}
    hints = [f"{key!r} -> {close[0]!r}" for key in config.quantizer_kwargs if key not in accepted
             for close in [difflib.get_close_matches(key, sorted(accepted), n=1)] if close]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""
