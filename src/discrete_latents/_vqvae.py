"""The VQ-VAE: encoder, quantizer and decoder, each chosen by registry name in one config."""

from __future__ import annotations

import difflib
import inspect

import torch
from torch import Tensor, nn

from ._checks import check_images, check_indices, check_positive_int
from ._configs import VQVAEConfig
from ._outputs import VQVAEOutput
from ._registry import DECODERS, ENCODERS
from ._saving import PretrainedModel
from .errors import ConfigError
from .quantizers import QUANTIZERS, BaseQuantizer


class VQVAE(nn.Module, PretrainedModel):
    """Vector-quantised variational autoencoder (van den Oord et al. 2017, arXiv 1711.00937).

    Images are float tensors in [0, 1], (B, C, H, W); they are mapped to [-1, 1] inside. H and W
    may differ (``image_size=(H, W)``); the code grid is then (H / f, W / f).

    Args:
        config: a `VQVAEConfig`; default ``VQVAEConfig()``, the seed's model as
            it describes it (the bundled one is ``VQVAE.from_preset("mnist")``).

    Examples:
        >>> import torch
        >>> from discrete_latents import VQVAE, VQVAEConfig
        >>> model = VQVAE(VQVAEConfig(channels=(8, 16)))
        >>> out = model(torch.rand(4, 1, 28, 28))
        >>> out.reconstruction.shape, out.indices.shape
        (torch.Size([4, 1, 28, 28]), torch.Size([4, 7, 7]))
    """

    config_class = VQVAEConfig
    card_key = "vqvae"
    registry_name = "vqvae"  # type: ignore[assignment]  # one class, not a registry: its name is fixed

    def __init__(self, config: VQVAEConfig | None = None) -> None:
        super().__init__()
        if config is None:
            config = VQVAEConfig()
        if not isinstance(config, VQVAEConfig):
            raise TypeError(f"config: expected a VQVAEConfig, got {type(config).__name__}")
        self.config = config
        shape = dict(in_channels=config.in_channels, channels=config.channels, latent_dim=config.latent_dim,
                     num_res_blocks=config.num_res_blocks, norm_groups=config.norm_groups)
        if config.attention:  # passed only when on, so encoders of plugins without the option still build
            shape["attention"] = True
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
        from ._presets import vqvae_preset

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
        # Images of another float precision are converted to the weights' (convolutions refuse a mix).
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), None)
        return check_images(images, self.config.in_channels, self.config.image_shape, dtype=dtype)

    def forward(self, images: Tensor) -> VQVAEOutput:
        """Reconstruct images through the codes.

        Args:
            images: (B, C, H, W) floats in [0, 1].

        Returns:
            `VQVAEOutput` with ``reconstruction`` (B, C, H, W) and the
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
    def encode(self, images: Tensor, batch_size: int | None = None) -> Tensor:
        """Images (B, C, H, W) -> (B, h, w) int64 code ids; never updates statistics.

        Args:
            images: floats in [0, 1], or uint8 in [0, 255] (read as x / 255), on any device;
                each batch is moved to the model's device.
            batch_size: encode this many images at a time (bounded memory for a whole dataset);
                ``None`` encodes all at once.

        Returns:
            The codes, on the model's device.
        """
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size")
            if isinstance(images, Tensor) and images.ndim >= 1 and len(images) > batch_size:
                return torch.cat([self.encode(part) for part in images.split(batch_size)])
        if isinstance(images, Tensor) and images.dtype == torch.uint8:
            images = images.float() / 255
        device = next(self.parameters()).device
        z = self.encoder(self._check(images.to(device) if isinstance(images, Tensor) else images) * 2 - 1)
        was_training = self.quantizer.training
        self.quantizer.eval()  # encoding is pure: no EMA update, no restarts
        try:
            return self.quantizer(z).indices
        finally:
            self.quantizer.train(was_training)

    @torch.no_grad()
    def decode(self, indices: Tensor, batch_size: int | None = None) -> Tensor:
        """(B, h, w) code ids -> (B, C, H, W) images clamped to [0, 1].

        Args:
            indices: (B, h, w) int64 code ids in [0, K), on any device.
            batch_size: decode this many grids at a time (bounded memory for many images);
                ``None`` decodes all at once.
        """
        indices = check_indices(indices, self.codebook_size, self.grid_size, trailing=self.quantizer.index_shape)
        if batch_size is not None:
            batch_size = check_positive_int(batch_size, "batch_size")
            if len(indices) > batch_size:
                return torch.cat([self.decode(part) for part in indices.split(batch_size)])
        codes = self.quantizer.indices_to_codes(indices.to(next(self.parameters()).device))
        return self._to_images(self.decoder(codes))

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        """Encode then decode: (B, C, H, W) in [0, 1] -> the same shape, clamped to [0, 1]."""
        return self.decode(self.encode(images))


def _suggest_kwargs(config: VQVAEConfig) -> str:
    """A "did you mean" for misspelled quantizer_kwargs, from the quantizer's signature."""
    accepted = sorted(set(inspect.signature(QUANTIZERS.get(config.quantizer)).parameters) - {"self", "dim"})
    hints = [f"{key!r} -> {close[0]!r}" for key in config.quantizer_kwargs if key not in accepted
             for close in [difflib.get_close_matches(key, accepted, n=1)] if close]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""
