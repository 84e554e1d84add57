"""An exponential moving average of a model's weights, for evaluation and saving.

After every optimizer step, ``ema = decay_t * ema + (1 - decay_t) * weights``. The decay warms
up as ``decay_t = min(decay, (1 + t) / (10 + t))`` after ``t`` updates (as diffusers' EMAModel
does), so a short run is not dominated by its random initialisation. Buffers (batch statistics,
the EMA quantizer's codebook, which is itself an average) are not averaged: the live values are
used with the averaged weights, as timm's ModelEmaV3 does by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class WeightEMA:
    """The averaged copy of ``model``'s floating-point parameters.

    Args:
        model: the model being trained (not a DDP wrapper).
        decay: the target decay in (0, 1); 0.999 averages over about the last 1,000 steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters() if p.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the current weights (call after each optimizer step)."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        params = dict(model.named_parameters())
        names = list(self.shadow)
        torch._foreach_lerp_([self.shadow[n] for n in names], [params[n].detach() for n in names], 1 - decay)
        self.updates += 1

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights and the update count, as tensors (for a safetensors checkpoint)."""
        return {**{f"shadow.{name}": t for name, t in self.shadow.items()},
                "updates": torch.tensor(self.updates, dtype=torch.int64)}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        for name, value in self.shadow.items():
            value.copy_(tensors[f"shadow.{name}"])  # copy_ keeps the weight's memory layout
        self.updates = int(tensors["updates"])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s weights with the average (at the end of training)."""
        params = dict(model.named_parameters())
        for name, value in self.shadow.items():
            params[name].copy_(value)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Evaluate with the averaged weights inside the block; the live ones come back after it."""
        live = {name: p.detach().clone() for name, p in model.named_parameters() if name in self.shadow}
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                params = dict(model.named_parameters())
                for name, value in live.items():
                    params[name].copy_(value)
