"""The contract every prior follows, the shared sampling loop, and the prior registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, overload

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .._checks import check_fits_in_memory, check_indices, check_labels, check_positive_int
from .._configs import Config, PriorConfig
from .._metrics import bits_per_image
from .._outputs import PriorOutput
from .._registry import Registry
from .._sampling import check_sampling_args, sample_logits
from .._saving import PretrainedModel
from ..errors import NonFiniteError, PluginLoadError, UnknownComponentError
from ._chunked_loss import chunked_cross_entropy

# Rows sampled together: bounds the sampling state (a transformer's key/value cache, 160 MB per
# 1,024 rows for the MNIST prior) whatever N is; at most this many rows draw exactly as one batch.
SAMPLE_CHUNK = 1024
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


class BasePrior(nn.Module, PretrainedModel, ABC):
    """A model of code grids (B, h, w), optionally class-conditional.

    An autoregressive prior (the default, ``raster_order = True``) implements `_logits`
    (all positions at once, for training) and `_next_logits` (one position while
    sampling); this class handles input checks, label dropout, classifier-free guidance and the
    raster sampling loop, so every prior behaves alike. A prior that draws codes in another
    order (``raster_order = False``, e.g. the masked prior) overrides `sample` and
    `fill`; one without an exact likelihood (``exact_likelihood = False``) overrides
    `nll` with a clear error and offers a named bound instead.

    Args:
        config: a subclass of `PriorConfig`.
    """

    api_version: ClassVar[int] = 1
    config_class: ClassVar[type[PriorConfig]] = PriorConfig
    card_key = "prior"
    # Draws one code at a time in raster order through _next_logits (so it can continue a prefix).
    raster_order: ClassVar[bool] = True
    # nll() is the exact negative log-likelihood (a number comparable between such priors).
    exact_likelihood: ClassVar[bool] = True

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"config: expected a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    # properties --------------------------------------------------------------------------------
    @property
    def registry_name(self) -> str:
        """The name ``PRIORS`` registered this class under first (what a saved pipeline records)."""
        return PRIORS.name_of(type(self))

    @classmethod
    def presets(cls) -> Mapping[str, Config]:
        """The prior presets built by this class (``"mnist"``, ...); see `from_preset`."""
        from .._presets import PRIOR_PRESETS

        own = {name: config for name, config in PRIOR_PRESETS.items() if type(config) is cls.config_class}
        # "mnist_pixelcnn" is also this class's "mnist": the suffix only tells the trainer's presets apart.
        return {**{name.split("_")[0]: config for name, config in own.items()}, **own}

    @property
    def codebook_size(self) -> int:
        """K; the start token's id."""
        return self.config.codebook_size

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.config.grid_size

    @property
    def num_codes(self) -> int:
        """h * w, the length of the raster-scanned sequence."""
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def null_label(self) -> int:
        """The "no label" id used for label dropout and unconditional sampling."""
        return self.config.num_classes

    # subclass hooks ----------------------------------------------------------------------------
    @abstractmethod
    def _logits(self, indices: Tensor, cond: Tensor | None) -> Tensor:
        """(B, h, w) codes and (B,) labels (``null_label`` = none) -> (B, h, w, K) logits."""

    def _next_logits(self, codes: Tensor, position: int, cond: Tensor | None, state: Any) -> Tensor:
        """Logits (B, K) of raster position ``position`` given ``codes[:, :position]`` (B, h*w).

        Every prior with ``raster_order = True`` implements it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not sample in raster order (raster_order = False)")

    def _features(self, indices: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """Split the logits of `_logits` as ``hidden @ weight.T + bias``: (B, h, w, C) hidden
        states, the output layer's (K, C) weight and (K,) bias or ``None``.

        `loss` then never forms the (B, h, w, K) logits. ``None`` (the default) where a prior
        cannot split so; `loss` then takes the cross-entropy of the full logits.
        """
        return None

    def _start_sampling(self, batch: int, cond: Tensor | None, use_cache: bool) -> Any:
        """Per-call sampling state (a key/value cache, say); ``None`` by default."""
        return None

    # labels ------------------------------------------------------------------------------------
    def draw_labels(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """(N,) classes drawn from ``config.class_frequencies`` (uniform when empty).

        Sampling a class this way and then codes given it draws from p(codes) = sum_y p(y) p(codes | y),
        which a class-conditional prior models better than its "no label" mode (trained on the
        label-dropout share of the data only).
        """
        if self.num_classes == 0:
            raise ValueError("draw_labels: this prior is unconditional (num_classes=0)")
        weights = torch.tensor(self.config.class_frequencies or (1.0,) * self.num_classes, dtype=torch.float32)
        device = next(self.parameters()).device
        drawn = torch.multinomial(weights.to(generator.device if generator is not None else device),
                                  check_positive_int(num_samples, "num_samples"), replacement=True,
                                  generator=generator)
        return drawn.to(device)

    def _condition(self, labels: object, batch: int) -> Tensor | None:
        """Validated labels (B,) with the null id for "none", or ``None`` for unconditional priors."""
        if self.num_classes == 0:
            if labels is not None:
                raise ValueError("labels: this prior is unconditional (num_classes=0); pass labels=None")
            return None
        device = next(self.parameters()).device
        if labels is None:
            if self.config.label_dropout == 0:
                raise ValueError(f"labels: this prior is conditional on {self.num_classes} classes and was built"
                                 " without label dropout, so it needs labels")
            return torch.full((batch,), self.null_label, dtype=torch.long, device=device)
        return check_labels(labels, self.num_classes, batch).to(device)

    def _drop_labels(self, cond: Tensor | None) -> Tensor | None:
        """In training, replace labels by "no label" with chance ``label_dropout``."""
        if cond is not None and self.training and self.config.label_dropout > 0:
            # Label dropout: the same model learns p(codes) and p(codes | class) (for guidance).
            dropped = torch.rand(cond.shape, device=cond.device) < self.config.label_dropout
            cond = cond.masked_fill(dropped, self.null_label)
        return cond

    # training ----------------------------------------------------------------------------------
    @overload
    def forward(self, indices: Tensor, labels: Tensor | None = None,
                return_logits: Literal[True] = True) -> PriorOutput: ...

    @overload
    def forward(self, indices: Tensor, labels: Tensor | None = None, *,
                return_logits: Literal[False]) -> Tensor: ...

    def forward(self, indices: Tensor, labels: Tensor | None = None,
                return_logits: bool = True) -> PriorOutput | Tensor:
        """Next-code logits and cross-entropy for a batch of code grids.

        Args:
            indices: (B, h, w) int64 codes in [0, K).
            labels: (B,) int64 classes, for a conditional prior; ``None`` means "no label".
            return_logits: ``False`` returns the loss alone, as `loss` does, without ever
                holding the (B, h, w, K) logits (a DDP-wrapped prior is called this way).

        Returns:
            `PriorOutput` with ``logits`` (B, h, w, K) and ``loss``, the mean negative
            log-likelihood in nats per code; with ``return_logits=False`` that loss.
        """
        indices = check_indices(indices, self.codebook_size, self.grid_size)
        cond = self._drop_labels(self._condition(labels, indices.shape[0]))
        if not return_logits:
            split = self._features(indices, cond)
            if split is not None:
                hidden, weight, bias = split
                return chunked_cross_entropy(hidden.flatten(0, 2), weight, bias, indices.flatten())
        logits = self._logits(indices, cond)
        loss = F.cross_entropy(logits.flatten(0, 2).float(), indices.flatten())
        return PriorOutput(logits=logits, loss=loss) if return_logits else loss

    def loss(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        """The training loss of `forward` alone, in memory independent of K per position.

        With K = 65,536 codes on a 16x16 grid at batch 64 the logits alone are 4 GiB in float32;
        here the cross-entropy runs over chunks of positions, each chunk's logits recomputed in
        the backward pass instead of kept (for priors that implement `_features`; others
        fall back to the full logits). Same value and gradients as ``forward(...).loss``.

        Args:
            indices: (B, h, w) int64 codes in [0, K).
            labels: (B,) int64 classes for a conditional prior, or ``None``.

        Returns:
            () float32, the mean negative log-likelihood in nats per code.

        Examples:
            >>> prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(3, 3), n_layer=1,
            ...                                       n_head=2, n_embd=16))  # doctest: +SKIP
            >>> prior.loss(torch.randint(0, 16, (2, 3, 3))).backward()  # doctest: +SKIP
        """
        return self(indices, labels, return_logits=False)

    @torch.no_grad()
    def nll(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        """Per-image negative log-likelihood in nats per code (eval mode: no dropout, no label dropout).

        Args:
            indices: (B, h, w) int64 codes in [0, K).
            labels: (B,) classes for a conditional prior; ``None`` scores unconditionally.

        Returns:
            (B,) float32; ``bits_per_image(nll)`` gives bits per image.
        """
        indices = check_indices(indices, self.codebook_size, self.grid_size)
        cond = self._condition(labels, indices.shape[0])
        was_training = self.training
        self.eval()
        try:
            logits = self._logits(indices, cond).float()
        finally:
            self.train(was_training)
        per_code = F.cross_entropy(rearrange(logits, "b h w k -> b k h w"), indices, reduction="none")  # (B, h, w)
        return per_code.flatten(1).mean(1)

    def nll_bound(self, indices: Tensor, labels: Tensor | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
        """An upper bound on the negative log-likelihood in nats per code, (B,) float32.

        A prior with an exact likelihood returns `nll` itself; one without
        (``exact_likelihood = False``, e.g. the masked prior) overrides this with its bound.
        """
        return self.nll(indices, labels)

    def bits_per_image(self, nats_per_code: Tensor | float) -> Tensor | float:
        """Convert nats per code (``loss`` or `nll`) to bits per image: x h*w / ln 2."""
        return bits_per_image(nats_per_code, self.num_codes)  # type: ignore[no-any-return]

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW parameter groups: decay matrices, embeddings and kernels, not biases or norms.

        Examples:
            >>> opt = torch.optim.AdamW(prior.param_groups(0.01), lr=2e-3)  # doctest: +SKIP
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]

    # sampling ----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, labels: Tensor | None = None, guidance_scale: float = 1.0,
               generator: torch.Generator | None = None, use_cache: bool = True) -> Tensor:
        """Generate code grids one code at a time in raster order.

        Args:
            num_samples: N >= 1.
            temperature: softmax temperature, finite and >= 0; 0 is greedy decoding (argmax,
                deterministic without a generator). Default 1.
            top_k: keep only the k most likely codes (None = all; k >= K keeps all).
            top_p: nucleus sampling mass in (0, 1] (None = all).
            labels: (N,) int64 classes in [0, num_classes) for a conditional prior. ``None``
                samples any class: a conditional prior trained with label dropout draws each
                sample's class with `draw_labels` (the training set's class frequencies),
                then its codes; one trained without it needs labels.
            guidance_scale: classifier-free guidance s, logits = u + s * (c - u); 1 is plain
                conditional sampling. 0 uses only the unconditional logits u, the "no label"
                mode learnt by label dropout (with ``labels=None``, no class is drawn at all).
            generator: a ``torch.Generator`` for reproducible draws.
            use_cache: reuse keys/values of earlier positions (same codes, faster); priors
                without a cache ignore it.

        Returns:
            (N, h, w) int64 codes in [0, K).

        Raises:
            ValueError: an argument out of range (the message starts with its name).
            NonFiniteError: the model produced NaN or infinite logits.

        Examples:
            >>> from discrete_latents import CausalPrior, CausalPriorConfig
            >>> prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(3, 3), n_layer=1,
            ...                                       n_head=2, n_embd=16))
            >>> prior.sample(2).shape
            torch.Size([2, 3, 3])
        """
        num_samples = check_positive_int(num_samples, "num_samples")
        device = next(self.parameters()).device
        check_fits_in_memory(num_samples * self.num_codes * 8, device, "num_samples",
                             f"{num_samples} code grids of {self.grid_size[0]}x{self.grid_size[1]}")
        cond, guided = self._sampling_condition(num_samples, labels, guidance_scale, generator, temperature,
                                                top_k, top_p)
        # Made outside inference mode so the result is an ordinary tensor (usable in training).
        codes = torch.zeros(num_samples, self.num_codes, dtype=torch.long, device=device)
        redraw = torch.ones(num_samples, self.num_codes, dtype=torch.bool, device=device)
        codes = self._draw_raster(codes, redraw, cond, guided, guidance_scale, temperature, top_k, top_p,
                                  generator, use_cache)
        return rearrange(codes, "n (h w) -> n h w", h=self.grid_size[0])

    @torch.no_grad()
    def fill(self, codes: Tensor, mask: Tensor, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, labels: Tensor | None = None, guidance_scale: float = 1.0,
             generator: torch.Generator | None = None, use_cache: bool = True) -> Tensor:
        """Redraw the codes where ``mask`` is true, keeping the others exactly (inpainting).

        A raster-order prior draws each masked position from p(code | the codes before it), kept
        codes forced in: exact when the masked codes are a raster suffix (the bottom rows, say);
        for other masks the kept codes after a position cannot inform it. At every position of
        an all-true mask it draws what `sample` draws for the same labels and generator.

        Args:
            codes: (B, h, w) int64 codes in [0, K); the kept ones are the context.
            mask: (B, h, w) bool, true where a code is redrawn.
            temperature, top_k, top_p, guidance_scale, generator, use_cache: as in `sample`.
            labels: (B,) classes for a conditional prior; ``None`` uses the "no label" mode (it
                never draws a class that could contradict the kept codes).

        Returns:
            (B, h, w) int64 codes, equal to ``codes`` wherever ``mask`` is false.

        Raises:
            NotImplementedError: the prior can neither sample in raster order nor fill grids.

        Examples:
            >>> from discrete_latents import CausalPrior, CausalPriorConfig
            >>> prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(3, 3), n_layer=1,
            ...                                       n_head=2, n_embd=16))
            >>> codes = torch.zeros(1, 3, 3, dtype=torch.long)
            >>> mask = torch.zeros(1, 3, 3, dtype=torch.bool)
            >>> mask[:, 2] = True  # redraw the bottom row
            >>> bool((prior.fill(codes, mask)[:, :2] == 0).all())
            True
        """
        if not self.raster_order:
            raise NotImplementedError(f"{type(self).__name__} cannot redraw part of a grid: it does not sample in"
                                      " raster order and does not override fill()")
        codes, mask = self._check_fill(codes, mask)
        cond, guided = self._fill_condition(labels, codes.shape[0], guidance_scale, temperature, top_k, top_p)
        flat = rearrange(codes, "b h w -> b (h w)").clone()
        flat = self._draw_raster(flat, rearrange(mask, "b h w -> b (h w)"), cond, guided, guidance_scale,
                                 temperature, top_k, top_p, generator, use_cache)
        return rearrange(flat, "b (h w) -> b h w", h=self.grid_size[0])

    # sampling helpers, shared by every prior ---------------------------------------------------
    def _sampling_condition(self, num_samples: int, labels: Tensor | None, guidance_scale: float,
                            generator: torch.Generator | None, temperature: float, top_k: int | None,
                            top_p: float | None) -> tuple[Tensor | None, bool]:
        """Checked arguments -> (labels for the model, doubled when guided; whether guided)."""
        check_sampling_args(temperature, top_k, top_p, guidance_scale)
        if self.num_classes == 0 and guidance_scale != 1.0:
            raise ValueError(f"guidance_scale: classifier-free guidance needs a class-conditional prior; got"
                             f" guidance_scale={guidance_scale!r} for an unconditional one (use 1.0)")
        device = next(self.parameters()).device
        check_fits_in_memory(num_samples * self.num_codes * 8, device, "num_samples",
                             f"{num_samples} code grids of {self.grid_size[0]}x{self.grid_size[1]}")
        if labels is None and self.num_classes:
            if self.config.label_dropout == 0:  # never saw "no label": the caller must say which classes
                raise ValueError(f"labels: this prior is conditional on {self.num_classes} classes and was built"
                                 " without label dropout, so it needs labels; pass labels=prior.draw_labels(n)"
                                 " to draw them by their training-set frequency")
            if guidance_scale != 0.0:
                labels = self.draw_labels(num_samples, generator)
        return self._guided_condition(labels, num_samples, guidance_scale)

    def _fill_condition(self, labels: Tensor | None, batch: int, guidance_scale: float, temperature: float,
                        top_k: int | None, top_p: float | None) -> tuple[Tensor | None, bool]:
        """As `_sampling_condition`, but no labels means the "no label" mode, never a drawn class."""
        check_sampling_args(temperature, top_k, top_p, guidance_scale)
        if self.num_classes == 0 and guidance_scale != 1.0:
            raise ValueError(f"guidance_scale: classifier-free guidance needs a class-conditional prior; got"
                             f" guidance_scale={guidance_scale!r} for an unconditional one (use 1.0)")
        return self._guided_condition(labels, batch, guidance_scale)

    def _guided_condition(self, labels: Tensor | None, batch: int,
                          guidance_scale: float) -> tuple[Tensor | None, bool]:
        cond = self._condition(labels, batch)  # None labels: the "no label" id
        if cond is not None and labels is not None and guidance_scale != 1.0:
            if self.config.label_dropout == 0:
                raise ValueError("guidance_scale: guidance needs a prior trained with label dropout > 0")
            # One batch: B conditional rows, then the same B rows with the "no label" id.
            return torch.cat([cond, torch.full_like(cond, self.null_label)]), True
        return cond, False

    def _check_fill(self, codes: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Checked (B, h, w) codes and (B, h, w) bool mask on the prior's device."""
        codes = check_indices(codes, self.codebook_size, self.grid_size, name="codes")
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask: expected a bool tensor (true = redraw), got"
                            f" {mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}")
        if tuple(mask.shape) != tuple(codes.shape):
            raise ValueError(f"mask: expected the codes' shape {tuple(codes.shape)}, got {tuple(mask.shape)}")
        device = next(self.parameters()).device
        return codes.to(device), mask.to(device)

    @staticmethod
    def _guide(logits: Tensor, guided: bool, guidance_scale: float) -> Tensor:
        """Ho & Salimans 2022 (arXiv 2207.12598): u + s * (c - u) from the doubled batch.

        On log-probabilities, some code has c >= u, so a huge s cannot send every logit to -inf;
        s is capped to a float32 number, else an infinite s times c - u = 0 would be NaN.
        """
        if not guided:
            return logits
        conditional, unconditional = logits.float().log_softmax(-1).chunk(2)
        scale = max(-FLOAT32_MAX, min(FLOAT32_MAX, guidance_scale))
        return unconditional + scale * (conditional - unconditional)

    def _draw_raster(self, codes: Tensor, redraw: Tensor, cond: Tensor | None, guided: bool, guidance_scale: float,
                     temperature: float, top_k: int | None, top_p: float | None,
                     generator: torch.Generator | None, use_cache: bool) -> Tensor:
        """Draw ``codes`` (B, h*w) in raster order where ``redraw`` (B, h*w) is true; keep the rest.

        Rows are drawn in chunks of `SAMPLE_CHUNK`, so the sampling state (a key/value cache)
        stays bounded for any B.
        """
        batch = codes.shape[0]
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():  # lighter than no_grad: less bookkeeping per operation
                for start in range(0, batch, SAMPLE_CHUNK):
                    rows = slice(start, min(start + SAMPLE_CHUNK, batch))
                    part = None if cond is None else cond[rows]
                    if guided and cond is not None:  # conditional rows, then the same rows with "no label"
                        part = torch.cat([cond[rows], cond[batch + rows.start:batch + rows.stop]])
                    codes[rows] = self._draw_chunk(codes[rows], redraw[rows], part, guided, guidance_scale,
                                                   temperature, top_k, top_p, generator, use_cache)
        finally:
            self.train(was_training)
        return codes

    def _draw_chunk(self, codes: Tensor, redraw: Tensor, cond: Tensor | None, guided: bool, guidance_scale: float,
                    temperature: float, top_k: int | None, top_p: float | None,
                    generator: torch.Generator | None, use_cache: bool) -> Tensor:
        batch = codes.shape[0]
        work = codes.repeat(2, 1) if guided else codes.clone()  # guided: conditional rows, then "no label"
        state = self._start_sampling(work.shape[0], cond, use_cache)
        # The first position with NaN or infinite logits, kept on the device and read once at the
        # end: a check per position would wait for the device at every code.
        first_bad = torch.full((), self.num_codes, dtype=torch.long, device=work.device)
        for position in range(self.num_codes):
            logits = self._next_logits(work, position, cond, state)
            # The model's own logits are checked, not the guided ones: a huge guidance scale may
            # overflow s * (c - u) to -inf for some codes, which is no fault of the weights.
            finite = torch.isfinite(logits).all(dim=-1)  # (B,), or (2B,) when guided
            first_bad = torch.minimum(first_bad, torch.where(finite.all(), self.num_codes, position))
            # A non-finite row is drawn from zeros instead, so every row has a code to draw; its
            # id becomes 0 and the call raises below, so no such code is ever returned.
            logits = self._guide(torch.where(finite[:, None], logits, 0.0), guided, guidance_scale)
            if guided:
                finite = finite[:batch] & finite[batch:]
            nxt = sample_logits(logits, temperature, top_k, top_p, generator, validate=False)  # checked below
            nxt = torch.where(finite, nxt, 0)
            nxt = torch.where(redraw[:, position], nxt, work[:batch, position])  # kept codes forced
            work[:, position] = nxt.repeat(2) if guided else nxt
        bad = int(first_bad)
        if bad < self.num_codes:  # else a NaN silently becomes some code
            raise NonFiniteError(f"sample: the prior produced NaN or infinite logits at position {bad}; check its"
                                 " weights")
        return work[:batch]

PRIORS: Registry[type[BasePrior]] = Registry("priors", BasePrior, "discrete_latents.priors")


def build_prior(config: Config) -> BasePrior:
    """Build the registered prior whose ``config_class`` is the type of ``config``.

    So a preset or a saved config alone chooses the architecture: a
    `CausalPriorConfig` gives a ``CausalPrior``, a
    `PixelCNNPriorConfig` a ``PixelCNNPrior``.

    Examples:
        >>> from discrete_latents._presets import prior_preset
        >>> type(build_prior(prior_preset("mnist_pixelcnn"))).__name__
        'PixelCNNPrior'
    """
    if not isinstance(config, PriorConfig):
        raise TypeError(f"config: expected a PriorConfig subclass, got {type(config).__name__}")
    for cls in PRIORS.as_mapping().values():  # built-ins (and plugins imported so far) first
        if cls.config_class is type(config):
            return cls(config)
    for name in PRIORS.names():
        try:
            cls = PRIORS.get(name)
        except PluginLoadError:
            continue
        if cls.config_class is type(config):
            return cls(config)
    raise UnknownComponentError(f"config: no registered prior takes a {type(config).__name__};"
                                f" known priors: {PRIORS.names()}")
