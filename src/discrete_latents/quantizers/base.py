"""The contract every quantizer follows, and the registry that names them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from .._checks import check_finite, check_indices
from .._metrics import perplexity
from .._outputs import QuantizerOutput
from .._registry import Registry


class BaseQuantizer(nn.Module, ABC):
    """A module mapping continuous latents (B, D, h, w) to discrete codes.

    Subclasses set ``dim`` and ``codebook_size`` and implement `forward` and
    `indices_to_codes`. In eval mode a quantizer is pure: no statistics change.

    Attributes:
        dim: D, the width of the latents it accepts.
        codebook_size: K, the number of distinct ids per index.
        index_shape: trailing axes of ``indices`` after (B, h, w); ``()`` for one code per
            cell, ``(Q,)`` for a quantizer with Q codebooks. A prior models quantizers with ``()``.
    """

    api_version: ClassVar[int] = 1  # plugins built against another contract version are refused
    index_shape: tuple[int, ...] = ()
    dim: int
    codebook_size: int

    @abstractmethod
    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize (B, D, h, w) latents; see `QuantizerOutput`."""

    @abstractmethod
    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Map (B, h, w, *index_shape) ids to (B, D, h, w) code vectors."""

    def check_latents(self, z: object) -> Tensor:
        """Validate the input of `forward`; a clear error names the expected shape."""
        if not isinstance(z, Tensor):
            raise TypeError(f"latents: expected a torch.Tensor of shape (B, {self.dim}, h, w), got {type(z).__name__}")
        if not z.is_floating_point():
            raise TypeError(f"latents: expected a float tensor, got dtype {z.dtype}")
        if z.ndim != 4 or z.shape[1] != self.dim or z.shape[0] == 0:
            raise ValueError(f"latents: expected shape (B, {self.dim}, h, w) with B >= 1, got {tuple(z.shape)}")
        if values_are_cheap(z):
            check_finite(z, "latents")
        return z

    def check_indices(self, indices: object) -> Tensor:
        """Validate the input of `indices_to_codes`: ints (B, h, w, *index_shape) in [0, K)."""
        if isinstance(indices, Tensor) and self.index_shape and tuple(indices.shape[3:]) != self.index_shape:
            axes = ", ".join(str(n) for n in self.index_shape)
            raise ValueError(f"indices: expected shape (B, h, w, {axes}), one id per codebook,"
                             f" got {tuple(indices.shape)}")
        return check_indices(indices, self.codebook_size, trailing=self.index_shape)

    def usage_stats(self) -> dict[str, float]:
        """Code-usage metrics tracked over a window of training batches; empty where none are tracked.

        Codebook quantizers report ``active_codes``, ``perplexity`` and ``restarts``; FSQ, whose
        implicit codebook cannot die, tracks nothing. A training loop logs whatever is returned.
        """
        return {}

    @staticmethod
    def histogram(indices: Tensor, codebook_size: int) -> Tensor:
        """(K,) float32 count of each id in ``indices``.

        ``torch.bincount`` would do, but on CUDA it reads the largest id back to the host first;
        ``index_add_`` into K zeros needs no synchronisation (counts are exact below 2**24).
        """
        flat = indices.flatten()
        ones = torch.ones(flat.shape, dtype=torch.float32, device=flat.device)
        return torch.zeros(codebook_size, dtype=torch.float32, device=flat.device).index_add_(0, flat, ones)

    perplexity_of = staticmethod(perplexity)  # exp(entropy) of a code histogram, for subclasses


def values_are_cheap(tensor: Tensor) -> bool:
    """Whether reading ``tensor``'s values on the host costs nothing: a CPU tensor in eager mode.

    On an accelerator, ``bool(tensor)`` or ``.item()`` waits for every queued kernel, once per
    call; inside ``torch.compile`` it splits the graph. Value checks (NaN inputs, say) run only
    where they are cheap; elsewhere the quantizers mask their state updates on the device instead.
    """
    return tensor.device.type == "cpu" and not is_compiling()


def is_compiling() -> bool:
    """True while ``torch.compile`` traces the code (always False before torch 2.3)."""
    check = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(check()) if check is not None else False


def straight_through(inputs: Tensor, codes: Tensor) -> Tensor:
    """``codes`` in value, identity gradient to ``inputs`` (paper §3.1: z_e + sg[z_q - z_e]).

    Written as sg[z_q] + (z_e - sg[z_e]) so the value is exactly ``codes`` (x - x is exactly 0),
    which keeps eval-mode ``indices_to_codes(indices) == quantized`` bit-for-bit.
    """
    return codes.detach() + (inputs - inputs.detach())


def rotation_trick(inputs: Tensor, codes: Tensor) -> Tensor:
    """``codes`` in value; the gradient reaches ``inputs`` rotated and scaled (arXiv 2410.06424).

    Each (N, D) row z_e is carried onto its code z_q by the rotation R that takes the direction
    of z_e to that of z_q, and scaled by ||z_q|| / ||z_e||; R and the scale are constants for
    autograd. The gradient reaching z_e thus depends on the angle and the length ratio between
    z_e and its code, which the straight-through copy ignores.
    """
    with torch.no_grad():
        input_norm = inputs.norm(dim=1, keepdim=True).clamp_min(1e-12)
        code_norm = codes.norm(dim=1, keepdim=True)
        input_dir = inputs / input_norm
        code_dir = codes / code_norm.clamp_min(1e-12)
        # R = I - 2 r r^T + 2 q e^T with r the unit bisector of the two directions e and q.
        bisector = torch.nn.functional.normalize(input_dir + code_dir, dim=1, eps=1e-12)
        scale = code_norm / input_norm
    rotated = (inputs - 2.0 * bisector * (bisector * inputs).sum(1, keepdim=True)
               + 2.0 * code_dir * (input_dir * inputs).sum(1, keepdim=True))
    # As in straight_through: the value is exactly `codes`, only the gradient path differs.
    return codes.detach() + scale * (rotated - rotated.detach())


GRADIENT_ESTIMATORS = {"ste": straight_through, "rotation": rotation_trick}


QUANTIZERS: Registry[type[BaseQuantizer]] = Registry("quantizers", BaseQuantizer, "discrete_latents.quantizers")
